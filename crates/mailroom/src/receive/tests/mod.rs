//! SMTP sessions driven over in-memory I/O against a real (temporary) store.

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::extensions::Registry;
use super::session::{Mode, Session};
use super::Context;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::ingest::QueueHandle;
use crate::model::QueuedMessage;
use crate::store::prelude::*;
use crate::store::Store;
use crate::testutil::{config, peer, Client, TempStore};

mod auth;

struct Harness {
    c: Client,
    ts: TempStore,
    queued: mpsc::UnboundedReceiver<i64>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn seed(store: &dyn Store) {
    store
        .user_add("alice@example.com", None, None)
        .await
        .unwrap();
    store
        .user_add("bob@example.com", None, Some(1_000_000))
        .await
        .unwrap();
    store
        .alias_add(
            "team@example.com",
            vec!["alice@example.com".into(), "bob@example.com".into()],
        )
        .await
        .unwrap();
    store
        .list_add(
            "all@example.com",
            vec!["team@example.com".into(), "alice@example.com".into()],
        )
        .await
        .unwrap();
    store
        .list_add("loop1@example.com", vec!["loop2@example.com".into()])
        .await
        .unwrap();
    store
        .list_add("loop2@example.com", vec!["loop1@example.com".into()])
        .await
        .unwrap();
}

async fn start_with(cfg: Config, registry: Registry) -> Harness {
    start_io(cfg, registry, 1 << 20).await
}

/// A session whose connection buffers `buffer` octets in each direction.
async fn start_io(cfg: Config, registry: Registry, buffer: usize) -> Harness {
    start_full(cfg, registry, buffer, Mode::Mx, None).await
}

/// A session on a listener of `mode`, with this TLS set-up.
async fn start_full(
    cfg: Config,
    registry: Registry,
    buffer: usize,
    mode: Mode,
    tls: Option<Arc<crate::tls::Tls>>,
) -> Harness {
    let ts = TempStore::new();
    seed(ts.store.as_ref()).await;
    let (handle, queued) = QueueHandle::channel();
    let cfg = Arc::new(cfg);
    let ctx = Arc::new(Context {
        config: cfg.clone(),
        registry: Arc::new(registry),
        ingest: Arc::new(Ingest::new(ts.dyn_store(), cfg, handle)),
        store: ts.dyn_store(),
        org: crate::org::view::OrgView::new(None),
        tls,
        auth: Arc::new(crate::limits::AuthGuard::new(crate::limits::AuthLimits {
            max_per_ip: 5,
            max_per_account: 8,
            lockout: std::time::Duration::from_secs(600),
            delay: std::time::Duration::from_millis(100),
            max_delay: std::time::Duration::from_millis(400),
        })),
        verifier: None,
        data: ts.dir().to_path_buf(),
        rates: Default::default(),
    });
    let (client, server) = tokio::io::duplex(buffer);
    let (shutdown, sd) = watch::channel(false);
    let stream = crate::tls::Stream::Plain(server);
    let task = tokio::spawn(Session::new(stream, peer(), ctx, sd, mode).run());
    let mut c = Client::new(client);
    let greeting = c.reply().await;
    assert_eq!(greeting, "220 mx.example.com ESMTP mailroom");
    Harness {
        c,
        ts,
        queued,
        shutdown,
        task,
    }
}

async fn start() -> Harness {
    start_with(config(), Registry::standard()).await
}

impl Harness {
    async fn queued_messages(&self) -> Vec<QueuedMessage> {
        self.ts
            .store
            .queue_messages(Default::default())
            .await
            .unwrap()
    }

    /// The messages in a user's mailbox (local recipients are delivered with the submission).
    async fn mailbox(&self, address: &str) -> Vec<String> {
        let s = self.ts.store.as_ref();
        let Some(crate::store::DirEntry::User(u)) = s.lookup(address).await.unwrap() else {
            panic!("{address} is not a user")
        };
        let mut out = Vec::new();
        for m in s.mailbox_list(u.id).await.unwrap() {
            out.push(String::from_utf8(s.mail_read(u.id, m.id).await.unwrap()).unwrap());
        }
        out
    }

    /// Mail in any of the test users' mailboxes.
    async fn delivered(&self) -> usize {
        self.mailbox("alice@example.com").await.len() + self.mailbox("bob@example.com").await.len()
    }
}

#[tokio::test]
async fn ehlo_advertises_the_registry_and_helo_does_not() {
    let mut h = start().await;
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert_eq!(
        r,
        "250-mx.example.com Hello [192.0.2.10]\n250-SIZE 26214400\n250-PIPELINING\n250-8BITMIME\n\
         250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n250-DSN\n250 CHUNKING"
    );
    h.c.cmd("NOOP", "250 2.0.0 OK").await;
    let r = h.c.cmd("HELO client.test", "250").await;
    assert!(!r.contains("SIZE"));
    // After HELO, no enhanced status codes (RFC 2034) and no ESMTP parameters.
    h.c.cmd("NOOP", "250 OK").await;
    h.c.cmd(
        "MAIL FROM:<a@b.test> SIZE=10",
        "555 Unsupported parameter SIZE",
    )
    .await;
    h.c.cmd("QUIT", "221").await;
    assert!(h.c.closed().await);
}

#[tokio::test]
async fn unregistered_extension_is_neither_advertised_nor_accepted() {
    let mut reg = Registry::standard();
    reg.unregister("DSN");
    reg.unregister("CHUNKING");
    let mut h = start_with(config(), reg).await;
    let r = h.c.cmd("EHLO c", "250").await;
    assert!(!r.contains("DSN") && !r.contains("CHUNKING"));
    h.c.cmd("MAIL FROM:<a@b.test> RET=HDRS", "555 5.5.4").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0").await;
    h.c.cmd("RCPT TO:<alice@example.com> NOTIFY=NEVER", "555 5.5.4")
        .await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250 2.1.5").await;
    h.c.send(b"BDAT 5 LAST\r\nhello").await;
    assert!(h.c.reply().await.starts_with("502 5.5.1"));
    h.c.cmd("NOOP", "250").await;
}

#[tokio::test]
async fn sequence_errors() {
    let mut cfg = config();
    cfg.smtp.max_errors = 100;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("MAIL FROM:<a@b.test>", "503 Send EHLO").await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "503 5.5.1 Need MAIL")
        .await;
    h.c.cmd("DATA", "503 5.5.1 Need MAIL").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Nested").await;
    h.c.cmd("DATA", "554 5.5.1 No valid recipients").await;
    h.c.cmd("RSET", "250 2.0.0").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "503 5.5.1").await;
    h.c.cmd("FOO", "500 5.5.2").await;
    h.c.cmd("MAIL FROM:<a@b", "501 5.1.7").await;
    h.c.cmd("EXPN team", "502 5.5.1").await;
    h.c.cmd("VRFY alice", "252 2.1.5").await;
    h.c.cmd("HELP", "214").await;
    h.c.cmd("ETRN example.com", "502 5.5.1").await;
    h.c.cmd("STARTTLS", "454 4.7.0 TLS not available").await;
}

#[tokio::test]
async fn address_and_parameter_errors() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b", "501 5.1.7").await;
    h.c.cmd("MAIL FROM:<a@b.test> FOO=1", "555 5.5.4").await;
    h.c.cmd("MAIL FROM:<a@b.test> SIZE=x", "501 5.5.4").await;
    h.c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME", "555 5.5.4")
        .await;
    h.c.cmd("MAIL FROM:<a@b.test> SIZE=26214401", "552 5.3.4")
        .await;
    h.c.cmd("MAIL FROM:<ü@b.test>", "553 5.6.7").await;
    h.c.cmd(
        "MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME RET=FULL ENVID=x+2By",
        "250 2.1.0",
    )
    .await;
    h.c.cmd("RCPT TO:<alice@example.com", "501 5.1.3").await;
    h.c.cmd("RCPT TO:<alice@example.com> NOTIFY=SOMETIMES", "501 5.5.4")
        .await;
    h.c.cmd("RCPT TO:<üser@example.com>", "553 5.6.7").await;
}

#[tokio::test]
async fn relay_policy_table() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    for rcpt in [
        "<user@other.test>",
        "<user%other.test@example.com>",
        "<\"user@other.test\"@example.com>",
        "<user@other.test@example.com>",
        "<other.test!user@example.com>",
        "<@example.com:user@other.test>",
        "<alice%other.test@example.com>",
    ] {
        h.c.cmd(&format!("RCPT TO:{rcpt}"), "554 5.7.1").await;
    }
    h.c.cmd("RCPT TO:<nobody@example.com>", "550 5.1.1").await;
    h.c.cmd("RCPT TO:<loop1@example.com>", "550 5.4.6").await;
    h.c.cmd("RCPT TO:<ALICE@Example.COM>", "250 2.1.5").await;
    h.c.cmd("RCPT TO:<Postmaster>", "550 5.1.1").await;
}

#[tokio::test]
async fn trusted_networks_may_relay_but_never_by_trick() {
    let mut cfg = config();
    cfg.smtp.trusted_networks = vec!["192.0.2.0/24".parse().unwrap()];
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@example.com>", "250").await;
    h.c.cmd("RCPT TO:<user@other.test>", "250 2.1.5").await;
    h.c.cmd("RCPT TO:<user%other.test@example.com>", "554 5.7.1")
        .await;
}

#[tokio::test]
async fn data_is_stored_with_trace_headers_and_resolved_recipients() {
    let mut h = start().await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd("MAIL FROM:<carol@other.test> RET=HDRS ENVID=e1", "250")
        .await;
    h.c.cmd(
        "RCPT TO:<team@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;team@example.com",
        "250",
    )
    .await;
    h.c.cmd("RCPT TO:<all@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n")
        .await;
    let r = h.c.reply().await;
    assert!(r.starts_with("250 2.0.0 OK: queued as "), "{r}");
    let qid = r.rsplit(' ').next().unwrap().to_string();
    // alice and bob get one copy each, though both RCPTs reach them; local copies are made in
    // the transaction that stores the message, before the 250.
    let alice = h.mailbox("alice@example.com").await;
    let bob = h.mailbox("bob@example.com").await;
    assert_eq!((alice.len(), bob.len()), (1, 1));
    let copy = &alice[0];
    assert!(copy.starts_with(
        "Return-Path: <carol@other.test>\r\nDelivered-To: alice@example.com\r\n\
         Received: from client.test ([192.0.2.10])\r\n\tby mx.example.com (mailroom) with ESMTP id "
    ), "{copy}");
    assert!(copy.contains(&format!("Message-ID: <{qid}@mx.example.com>\r\n")));
    assert!(copy.ends_with("Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"));
    // What is left in the queue: an "expanded" report, since team is an alias to two addresses
    // and its RCPT asked for NOTIFY=SUCCESS (RFC 3461 §6.2.7.3). The members were passed NOTIFY
    // without SUCCESS, so they owe no report of their own.
    assert!(h.queued.try_recv().is_ok());
    let msgs = h.queued_messages().await;
    assert_eq!(msgs.len(), 1);
    let report = &msgs[0];
    assert_eq!(report.sender, "");
    assert_eq!(report.recipients[0].address, "carol@other.test");
    let text = String::from_utf8(h.ts.store.content(report.content_id).await.unwrap()).unwrap();
    use crate::testutil::{dsn_field, dsn_message_field};
    let team = "team@example.com";
    assert_eq!(
        dsn_field(text.as_bytes(), team, "Action").as_deref(),
        Some("expanded")
    );
    assert_eq!(
        dsn_field(text.as_bytes(), team, "Original-Recipient").as_deref(),
        Some("rfc822; team@example.com")
    );
    assert_eq!(
        dsn_message_field(text.as_bytes(), "Original-Envelope-Id").as_deref(),
        Some("e1")
    );
    let events: Vec<(u16, Option<String>)> =
        h.ts.store
            .track_query(crate::store::TrackFilter {
                message_id: Some(qid.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event.number(), e.recipient))
            .collect();
    let delivered: Vec<_> = events
        .iter()
        .filter(|(n, _)| *n == 1028)
        .map(|(_, r)| r.clone().unwrap())
        .collect();
    assert_eq!(delivered, vec!["alice@example.com", "bob@example.com"]);
    assert!(events
        .iter()
        .any(|(n, r)| *n == 2004 && r.as_deref() == Some("team@example.com")));
    // The transaction ended; a new one can start.
    h.c.cmd("MAIL FROM:<>", "250").await;
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    let mut h = start().await;
    h.c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n").await;
    assert!(h.c.reply().await.starts_with("250-"));
    assert!(h.c.reply().await.starts_with("250 2.1.0"));
    assert!(h.c.reply().await.starts_with("250 2.1.5"));
    assert!(h.c.reply().await.starts_with("550 5.1.1"));
    assert!(h.c.reply().await.starts_with("250 2.1.5"));
    assert!(h.c.reply().await.starts_with("354"));
    h.c.send(b"x\r\n.\r\nQUIT\r\n").await;
    assert!(h.c.reply().await.starts_with("250 2.0.0"));
    assert!(h.c.reply().await.starts_with("221"));
    assert_eq!(h.mailbox("alice@example.com").await.len(), 1);
    assert_eq!(h.mailbox("bob@example.com").await.len(), 1);
}

#[tokio::test]
async fn smuggling_patterns_are_refused_and_nothing_is_stored() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    let smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nsmuggled\r\n";
    for sep in ["\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", ".\n"] {
        h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
        h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
        h.c.cmd("DATA", "354").await;
        h.c.send(format!("Subject: x\r\n\r\nbody{sep}{smuggled}\r\n.\r\n").as_bytes())
            .await;
        let r = h.c.reply().await;
        assert!(r.starts_with("554 5.6.0"), "{sep:?}: {r}");
        h.c.cmd("NOOP", "250").await;
    }
    assert!(h.queued_messages().await.is_empty());
    assert_eq!(h.delivered().await, 0);
}

#[tokio::test]
async fn long_lines_and_oversize_are_refused() {
    let mut cfg = config();
    cfg.smtp.max_message_size = 2000;
    cfg.smtp.max_errors = 100;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(format!("{}\r\n.\r\n", "a".repeat(999)).as_bytes())
        .await;
    assert!(h.c.reply().await.starts_with("554 5.6.0"));
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(format!("{}.\r\n", "line of text\r\n".repeat(200)).as_bytes())
        .await;
    assert!(h.c.reply().await.starts_with("552 5.3.4"));
    h.c.cmd(
        &format!("NOOP {}", "x".repeat(3000)),
        "500 5.5.2 Line too long",
    )
    .await;
    h.c.cmd("NOOP", "250").await;
    assert!(h.queued_messages().await.is_empty());
    assert_eq!(h.delivered().await, 0);
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    h.c.send(b"BDAT 3\r\nabc").await;
    assert!(
        h.c.reply().await.starts_with("503 5.5.1"),
        "BDAT outside a transaction"
    );
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    let body = b"Subject: chunks\r\n\r\n.not stuffed\r\nend\r\n";
    let (a, b) = body.split_at(20);
    h.c.send(format!("BDAT {}\r\n", a.len()).as_bytes()).await;
    h.c.send(a).await;
    assert!(h.c.reply().await.starts_with("250 2.0.0 20 octets"));
    h.c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes())
        .await;
    h.c.send(b).await;
    assert!(h.c.reply().await.starts_with("250 2.0.0 OK: queued as"));
    h.c.cmd("DATA", "503 5.5.1").await;
    let copy = &h.mailbox("alice@example.com").await[0];
    assert!(copy.as_bytes().ends_with(body));
}

#[tokio::test]
async fn bdat_oversize_and_bare_lf() {
    let mut cfg = config();
    cfg.smtp.max_message_size = 1024;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.send(format!("BDAT 2000 LAST\r\n{}", "x".repeat(2000)).as_bytes())
        .await;
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), h.c.reply()).await;
    assert!(
        r.as_ref().is_ok_and(|r| r.starts_with("552 5.3.4")),
        "{r:?}"
    );
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.send(b"BDAT 5 LAST\r\na\nb\r\n").await;
    assert!(h.c.reply().await.starts_with("554 5.6.0"));
    h.c.cmd("NOOP", "250").await;
    assert!(h.queued_messages().await.is_empty());
    assert_eq!(h.delivered().await, 0);
}

#[tokio::test]
async fn too_many_recipients_and_hops() {
    let mut cfg = config();
    cfg.smtp.max_recipients = 2;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("RCPT TO:<bob@example.com>", "250").await;
    h.c.cmd("RCPT TO:<team@example.com>", "452 4.5.3").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(
        format!(
            "{}Subject: loop\r\n\r\nx\r\n.\r\n",
            "Received: from x by y\r\n".repeat(16)
        )
        .as_bytes(),
    )
    .await;
    assert!(h.c.reply().await.starts_with("554 5.4.6"));
    assert!(h.queued_messages().await.is_empty());
    assert_eq!(h.delivered().await, 0);
}

#[tokio::test]
async fn too_many_errors_closes_the_session() {
    let mut cfg = config();
    cfg.smtp.max_errors = 3;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("FOO", "500").await;
    h.c.cmd("BAR", "500").await;
    h.c.send(b"BAZ\r\n").await;
    let r = h.c.reply().await;
    assert!(r.starts_with("500"), "{r}");
    let r = h.c.reply().await;
    assert!(r.starts_with("421 mx.example.com Too many errors"), "{r}");
    assert!(h.c.closed().await);
}

#[tokio::test]
async fn shutdown_says_421() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    h.shutdown.send(true).unwrap();
    assert!(h.c.reply().await.starts_with("421 4.3.2"));
    assert!(h.c.closed().await);
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_client_times_out() {
    let mut h = start().await;
    h.c.cmd("EHLO c", "250").await;
    // Time is paused: the runtime jumps straight to the command timeout.
    let r = h.c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(h.c.closed().await);
}

/// Backscatter: mail to a mailbox that is already full is refused at RCPT, so no report goes to
/// a sender who may be forged. Without room for the declared SIZE (RFC 1870 §6) likewise; a list
/// with a full member is still accepted.
#[tokio::test]
async fn backscatter_a_full_mailbox_is_refused_at_rcpt() {
    let mut h = start().await;
    let s = h.ts.store.as_ref();
    s.user_add("full@example.com", None, Some(0)).await.unwrap();
    s.list_add(
        "mixed@example.com",
        vec!["full@example.com".into(), "alice@example.com".into()],
    )
    .await
    .unwrap();
    s.alias_add("tofull@example.com", vec!["full@example.com".into()])
        .await
        .unwrap();
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<forged@victim.test>", "250").await;
    h.c.cmd(
        "RCPT TO:<full@example.com>",
        "452 4.2.2 <full@example.com>: Mailbox full",
    )
    .await;
    h.c.cmd("RCPT TO:<tofull@example.com>", "452 4.2.2").await;
    h.c.cmd("RCPT TO:<mixed@example.com>", "250 2.1.5").await;
    h.c.cmd("RSET", "250").await;
    // bob has 1,000,000 octets of quota and none used: a larger message never fits, and is
    // refused for good (issue 21: 452 made the sender retry for days).
    h.c.cmd("MAIL FROM:<a@b.test> SIZE=2000000", "250").await;
    h.c.cmd(
        "RCPT TO:<bob@example.com>",
        "552 5.2.3 <bob@example.com>: Message too large for this mailbox",
    )
    .await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("RSET", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test> SIZE=2000", "250").await;
    h.c.cmd("RCPT TO:<bob@example.com>", "250").await;
}

#[tokio::test]
async fn backscatter_the_permanent_choice() {
    let mut cfg = config();
    cfg.smtp.full_mailbox = crate::config::FullMailbox::Permanent;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.ts.store
        .user_add("full@example.com", None, Some(0))
        .await
        .unwrap();
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<full@example.com>", "552 5.2.2").await;
}

/// A message to a list of 10,000 members: one RCPT, one copy for each member.
#[tokio::test]
async fn a_ten_thousand_member_list() {
    let mut h = start().await;
    let members: Vec<String> = (0..10_000).map(|i| format!("m{i}@example.com")).collect();
    // Added all at once: they share the store's commits.
    let mut adds = tokio::task::JoinSet::new();
    for a in members.clone() {
        let s = h.ts.dyn_store();
        adds.spawn(async move { s.user_add(&a, None, None).await.unwrap() });
    }
    while adds.join_next().await.is_some() {}
    h.ts.store
        .list_add("everyone@example.com", members)
        .await
        .unwrap();
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<everyone@example.com>", "250 2.1.5").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd("Subject: all hands\r\n\r\nhi\r\n.", "250 2.0.0")
        .await;
    for a in ["m0@example.com", "m9999@example.com"] {
        assert_eq!(h.mailbox(a).await.len(), 1, "{a}");
    }
}

fn spool_files(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.ts.store.spool().dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn big_text(octets: usize) -> String {
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    let mut t = String::from("Subject: big\r\n\r\n");
    while t.len() < octets {
        t.push_str(line);
    }
    t
}

/// A text past `smtp.spool_threshold` is written to a spool file as it arrives, never held
/// whole; once acknowledged it is delivered byte for byte, and the file goes when the last copy
/// is deleted.
#[tokio::test]
async fn message_data_is_streamed_to_the_spool() {
    let mut cfg = config();
    cfg.smtp.spool_threshold = 4096;
    let mut h = start_with(cfg, Registry::standard()).await;
    let text = big_text(1 << 20);
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    // Half of it: the file exists while the text is still arriving.
    let (first, second) = text.split_at(text.len() / 2);
    h.c.send(first.as_bytes()).await;
    let spool = h.ts.store.spool().dir().to_path_buf();
    let mut waited = 0;
    while std::fs::read_dir(&spool).unwrap().count() == 0 && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    let files = spool_files(&h);
    assert_eq!(files.len(), 1, "one spool file while receiving");
    h.c.send(second.as_bytes()).await;
    h.c.cmd(".", "250 2.0.0").await;
    let [copy] = h.mailbox("alice@example.com").await.try_into().unwrap();
    assert!(copy.ends_with(&text), "delivered byte for byte");
    assert!(copy.contains("Received: from c"), "with its trace fields");
    // Read and deleted: the file is garbage, and is collected.
    let s = h.ts.store.as_ref();
    let Some(crate::store::DirEntry::User(u)) = s.lookup("alice@example.com").await.unwrap() else {
        panic!()
    };
    let ids = s
        .mailbox_list(u.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    s.mail_delete(u.id, ids).await.unwrap();
    assert_eq!(spool_files(&h), files, "kept until collected");
    assert_eq!(s.collect_spool().await.unwrap(), 1);
    assert!(spool_files(&h).is_empty());
}

/// A text that is refused (too big, smuggled line ends) or never finished (the client goes
/// away) leaves no spool file behind.
#[tokio::test]
async fn refused_or_unfinished_texts_leave_no_spool_file() {
    let mut cfg = config();
    cfg.smtp.spool_threshold = 4096;
    cfg.smtp.max_message_size = 200_000;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(big_text(300_000).as_bytes()).await;
    h.c.cmd(".", "552 5.3.4").await;
    assert!(spool_files(&h).is_empty(), "oversize");
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    let mut bad = big_text(100_000);
    bad.push_str("bare\nLF\r\n");
    h.c.send(bad.as_bytes()).await;
    h.c.cmd(".", "554 5.6.0").await;
    assert!(spool_files(&h).is_empty(), "bare LF");
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.send(b"BDAT 100000\r\n").await;
    h.c.send(&big_text(100_000).as_bytes()[..100_000]).await;
    assert!(h.c.reply().await.starts_with("250"));
    h.c.cmd("DATA", "503").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "503").await;
    h.c.cmd("RSET", "250").await;
    assert!(spool_files(&h).is_empty(), "BDAT chunks given up by RSET");
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.send(big_text(100_000).as_bytes()).await;
    drop(h.c);
    let _ = h.task.await;
    assert!(spool_files_of(&h.ts).is_empty(), "client gone mid-text");
    assert_eq!(
        h.ts.store
            .as_ref()
            .queue_messages(Default::default())
            .await
            .unwrap()
            .len(),
        0
    );
}

fn spool_files_of(ts: &TempStore) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(ts.store.spool().dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

/// A client that pipelines commands and never reads the replies: once they fill the
/// connection's buffers, the session waits `smtp.write_timeout` for it, then gives up.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_dropped() {
    let h = start_io(config(), Registry::standard(), 4096).await;
    let Harness { c, task, .. } = h;
    let writer = tokio::spawn(async move {
        let mut c = c;
        c.send(b"EHLO c\r\n").await;
        for _ in 0..20_000 {
            c.send(b"NOOP\r\n").await;
        }
        c
    });
    // Well past the write timeout (2 minutes), in paused time.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(600), task).await;
    assert!(
        ended.is_ok(),
        "the session still waits for a client that never reads"
    );
    writer.abort();
}

/// A spooled text keeps its first octets for the header scan, even when the first read alone
/// passes the threshold: its Message-ID is kept (not doubled) and a looping message is refused.
#[tokio::test]
async fn the_headers_of_a_spooled_text_are_scanned() {
    let mut cfg = config();
    cfg.smtp.spool_threshold = 4096;
    let mut h = start_with(cfg, Registry::standard()).await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    let text = format!("Message-ID: <big.1@b.test>\r\n{}", big_text(1 << 20));
    h.c.send(text.as_bytes()).await;
    h.c.cmd(".", "250 2.0.0").await;
    let [copy] = h.mailbox("alice@example.com").await.try_into().unwrap();
    assert_eq!(
        copy.matches("Message-ID:").count(),
        1,
        "its own Message-ID, once"
    );
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    let hops = "Received: from a by b; Tue, 1 Dec 2026 00:00:00 +0000\r\n".repeat(30);
    h.c.send(format!("{hops}{}", big_text(1 << 20)).as_bytes())
        .await;
    h.c.cmd(".", "554 5.4.6").await;
    assert!(spool_files(&h).len() == 1, "only the first message's file");
}

/// The expansion limits are the configuration's: a list past `smtp.max_expansion` members, or
/// nested deeper than `smtp.max_expansion_depth`, is refused with 550 5.5.3.
#[tokio::test]
async fn expansion_limits_are_configurable() {
    let mut cfg = config();
    cfg.smtp.max_expansion = 2;
    cfg.smtp.max_expansion_depth = 1;
    let mut h = start_with(cfg, Registry::standard()).await;
    let s = h.ts.store.as_ref();
    s.list_add(
        "three@example.com",
        vec![
            "alice@example.com".into(),
            "bob@example.com".into(),
            "far@other.test".into(),
        ],
    )
    .await
    .unwrap();
    s.list_add("outer@example.com", vec!["inner@example.com".into()])
        .await
        .unwrap();
    s.list_add("inner@example.com", vec!["deepest@example.com".into()])
        .await
        .unwrap();
    s.list_add("deepest@example.com", vec!["alice@example.com".into()])
        .await
        .unwrap();
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<three@example.com>", "550 5.5.3").await;
    h.c.cmd("RCPT TO:<outer@example.com>", "550 5.5.3").await;
    h.c.cmd("RCPT TO:<team@example.com>", "250").await;
}

/// Issue 21: the timeouts began again at every byte, so a client sending a byte a second held
/// a command line or a DATA stream, and its connection slot, for ever. A command line must come
/// whole within `smtp.command_timeout`; message text within `smtp.data_timeout` plus a second
/// per `smtp.min_data_rate` octets.
#[tokio::test(start_paused = true)]
async fn a_client_that_trickles_is_cut_off() {
    let mut cfg = config();
    cfg.smtp.command_timeout = Duration::from_secs(60);
    cfg.smtp.data_timeout = Duration::from_secs(30);
    cfg.smtp.min_data_rate = 100;
    let mut h = start_with(cfg, Registry::standard()).await;
    let start = tokio::time::Instant::now();
    // A command line, a byte a second: 59 of them, then the server's answer.
    for b in b"EHLO a-very-long-name-that-comes-slowly.example.org"
        .iter()
        .cycle()
        .take(59)
    {
        h.c.send(&[*b]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let r = h.c.reply().await;
    assert!(
        r.starts_with("421 ") && r.contains("timeout exceeded"),
        "{r}"
    );
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(61), "cut off after {took:?}");
    assert!(h.c.closed().await);

    // Message text: fast enough goes on however long it takes; a trickle is cut.
    let mut h = start_with(
        {
            let mut c = config();
            c.smtp.data_timeout = Duration::from_secs(30);
            c.smtp.min_data_rate = 100;
            c
        },
        Registry::standard(),
    )
    .await;
    h.c.cmd("EHLO c", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    let start = tokio::time::Instant::now();
    h.c.send(b"Subject: slow\r\n\r\n").await;
    // 200 octets every second: above the rate, 60 s is fine.
    for _ in 0..60 {
        h.c.send(&[b'x'; 198]).await;
        h.c.send(b"\r\n").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    h.c.send(b".\r\n").await;
    assert!(
        h.c.reply().await.starts_with("250"),
        "{:?}",
        start.elapsed()
    );
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    let start = tokio::time::Instant::now();
    for _ in 0..28 {
        h.c.send(b"x").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let r = h.c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(
        start.elapsed() <= Duration::from_secs(31),
        "{:?}",
        start.elapsed()
    );
}
