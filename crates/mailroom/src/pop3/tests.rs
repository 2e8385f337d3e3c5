//! POP3 sessions over in-memory I/O.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::watch;

use super::{Context, Session};
use crate::directory::password;
use crate::ids::QueueId;
use crate::model::{
    EnvelopeParams, MailboxDrop, MessageKind, NewMessage, NewRecipient, Route, Settle,
};
use crate::store::prelude::*;
use crate::testutil::{config, Client, TempStore};
use crate::track::EventBase;

struct Harness {
    ts: TempStore,
    ctx: Arc<Context>,
    user: i64,
}

async fn harness(messages: &[&str]) -> Harness {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let user = s
        .user_add(
            "alice@example.com",
            Some(password::hash("pw").unwrap()),
            None,
        )
        .await
        .unwrap();
    for body in messages {
        let qid = QueueId::generate();
        let row = s
            .submit(NewMessage {
                org_meta: None,
                queue_id: qid,
                sender: "b@x.test".into(),
                params: EnvelopeParams::default(),
                message_id: None,
                arrival: chrono::Utc::now(),
                client_ip: None,
                kind: MessageKind::Normal,
                content: body.as_bytes().to_vec().into(),
                recipients: vec![NewRecipient {
                    address: "alice@example.com".into(),
                    original: "alice@example.com".into(),
                    orcpt: None,
                    notify: None,
                    route: Route::Local { user_id: user },
                    queue: crate::model::QueueKind::Local,
                    deliver_now: None,
                }],
                events: vec![],
            })
            .await
            .unwrap()
            .rowid;
        let r = s.queued(row).await.unwrap().unwrap().recipients[0].id;
        let base = EventBase {
            server: "mx".into(),
            queue_id: qid.to_string(),
            message_id: None,
            sender: "b@x.test".into(),
            client_ip: None,
            size: None,
        };
        s.settle(
            row,
            base,
            vec![(
                r,
                Settle::local(MailboxDrop {
                    user_id: user,
                    prefix: vec![],
                }),
            )],
        )
        .await
        .unwrap();
    }
    let mut cfg = config();
    cfg.pop3.auth_failure_delay = Duration::from_millis(300);
    harness_with(ts, user, cfg)
}

fn harness_with(ts: TempStore, user: i64, cfg: crate::config::Config) -> Harness {
    let ctx = Context::new(Arc::new(cfg), ts.dyn_store(), None);
    Harness { ts, ctx, user }
}

/// A session from a loopback client (where passwords in clear are taken by default).
fn connect(ctx: &Arc<Context>) -> Client {
    connect_from(ctx, "127.0.0.1:40000".parse().unwrap())
}

fn connect_from(ctx: &Arc<Context>, from: std::net::SocketAddr) -> Client {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (_tx, rx) = watch::channel(false);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _keep = _tx;
        Session::new(crate::tls::Stream::Plain(server), from, ctx, rx)
            .run()
            .await
    });
    Client::new(client)
}

async fn cmd(c: &mut Client, line: &str, expect: &str) -> String {
    c.send(format!("{line}\r\n").as_bytes()).await;
    let r = c.status().await;
    assert!(
        r.starts_with(expect),
        "{line:?}: expected {expect:?}, got {r:?}"
    );
    r
}

#[tokio::test]
async fn read_and_delete_at_quit() {
    let h = harness(&[
        "Subject: one\r\n\r\n.dotted\r\nline2\r\n",
        "Subject: two\r\n\r\nb\r\n",
    ])
    .await;
    let mut c = connect(&h.ctx);
    assert!(c.status().await.starts_with("+OK"));
    cmd(&mut c, "STAT", "-ERR").await;
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(&mut c, "PASS pw", "+OK maildrop has 2 message(s)").await;
    cmd(&mut c, "STAT", "+OK 2 51").await;
    cmd(&mut c, "LIST", "+OK 2").await;
    assert_eq!(c.multiline().await, "1 32\r\n2 19\r\n");
    cmd(&mut c, "UIDL", "+OK").await;
    let uidl = c.multiline().await;
    cmd(&mut c, "RETR 1", "+OK 32 octets").await;
    assert_eq!(
        c.multiline().await,
        "Subject: one\r\n\r\n.dotted\r\nline2\r\n"
    );
    cmd(&mut c, "TOP 1 0", "+OK").await;
    assert_eq!(c.multiline().await, "Subject: one\r\n\r\n");
    cmd(&mut c, "RETR 3", "-ERR no such message").await;
    cmd(&mut c, "DELE 1", "+OK").await;
    cmd(&mut c, "RETR 1", "-ERR message is deleted").await;
    cmd(&mut c, "STAT", "+OK 1 19").await;
    cmd(&mut c, "RSET", "+OK").await;
    cmd(&mut c, "DELE 2", "+OK").await;
    // A second session cannot open the maildrop meanwhile.
    let mut c2 = connect(&h.ctx);
    c2.status().await;
    cmd(&mut c2, "USER alice@example.com", "+OK").await;
    cmd(&mut c2, "PASS pw", "-ERR [IN-USE]").await;
    cmd(&mut c, "QUIT", "+OK").await;
    assert!(c.closed().await);
    let left = h.ts.store.mailbox_list(h.user).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(uidl.starts_with(&format!("1 {}\r\n", left[0].uidl)));
}

#[tokio::test]
async fn dropped_connection_deletes_nothing() {
    let h = harness(&["Subject: keep\r\n\r\nx\r\n"]).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice@example.com\0pw");
    cmd(&mut c, &format!("AUTH PLAIN {plain}"), "+OK").await;
    cmd(&mut c, "DELE 1", "+OK").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.ts.store.mailbox_list(h.user).await.unwrap().len(), 1);
    // The lock was released with the session.
    let mut c = connect(&h.ctx);
    c.status().await;
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(&mut c, "PASS pw", "+OK").await;
}

#[tokio::test]
async fn failed_login_is_slow_and_says_nothing_about_the_user() {
    let h = harness(&[]).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    let t = std::time::Instant::now();
    cmd(&mut c, "USER alice", "+OK").await;
    let wrong_pw = cmd(&mut c, "PASS nope", "-ERR").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    cmd(&mut c, "USER nobody", "+OK").await;
    let no_user = cmd(&mut c, "PASS nope", "-ERR").await;
    assert_eq!(wrong_pw, no_user);
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(&mut c, "PASS nope", "-ERR").await;
    // Three failures (the default limit) close the session.
    assert!(c.status().await.starts_with("-ERR too many"));
    assert!(c.closed().await);
}

#[tokio::test]
async fn capa_and_auth_continuation() {
    let h = harness(&[]).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    cmd(&mut c, "CAPA", "+OK").await;
    let caps = c.multiline().await;
    for cap in [
        "USER",
        "SASL SCRAM-SHA-256 PLAIN",
        "TOP",
        "UIDL",
        "RESP-CODES",
    ] {
        assert!(caps.contains(cap), "{caps}");
    }
    cmd(&mut c, "AUTH PLAIN", "+").await;
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0pw");
    cmd(&mut c, &plain, "+OK maildrop has 0").await;
    cmd(&mut c, "LIST", "+OK 0").await;
    assert_eq!(c.multiline().await, "");
}

/// A wrong user name costs the same as a wrong password: a password is verified against a dummy
/// hash, so the time taken says nothing about whether the user exists.
#[tokio::test]
async fn an_unknown_user_costs_a_verification_too() {
    let h = harness(&[]).await;
    let mut cfg = config();
    cfg.pop3.auth_failure_delay = Duration::ZERO;
    let h = harness_with(h.ts, h.user, cfg);
    let mut c = connect(&h.ctx);
    c.status().await;
    let before = password::verifications();
    cmd(&mut c, "USER nobody", "+OK").await;
    cmd(&mut c, "PASS nope", "-ERR [AUTH]").await;
    assert!(
        password::verifications() > before,
        "no password was verified for an unknown user"
    );
}

/// Failed logins are counted per client address across sessions: past the limit, the address is
/// locked out (even with the right password) and no password is verified at all.
#[tokio::test]
async fn failed_logins_lock_the_address_out_across_sessions() {
    let h = harness(&[]).await;
    let mut cfg = config();
    cfg.pop3.auth_failure_delay = Duration::ZERO;
    cfg.pop3.max_auth_failures_per_ip = 4;
    let h = harness_with(h.ts, h.user, cfg);
    for _ in 0..2 {
        let mut c = connect(&h.ctx);
        c.status().await;
        cmd(&mut c, "USER alice", "+OK").await;
        cmd(&mut c, "PASS wrong1", "-ERR [AUTH]").await;
        cmd(&mut c, "USER alice", "+OK").await;
        cmd(&mut c, "PASS wrong2", "-ERR [AUTH]").await;
        cmd(&mut c, "QUIT", "+OK").await;
    }
    let mut c = connect(&h.ctx);
    c.status().await;
    let before = password::verifications();
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(
        &mut c,
        "PASS pw",
        "-ERR [AUTH] too many failed logins from your address",
    )
    .await;
    assert_eq!(
        password::verifications(),
        before,
        "no verification once locked out"
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn passwords_wait_for_stls_off_loopback_and_injection_after_stls_is_refused() {
    let h = harness(&["Subject: one\r\n\r\nbody\r\n"]).await;
    let (tls, client, _dir) = crate::testutil::tls_pair();
    let ctx = Context::new(Arc::new(config()), h.ts.dyn_store(), Some(tls));
    let outside = "192.0.2.10:40000".parse().unwrap();
    let mut c = connect_from(&ctx, outside);
    assert!(c.status().await.starts_with("+OK"));
    c.send(b"CAPA\r\n").await;
    assert!(c.status().await.starts_with("+OK"));
    let caps = c.multiline().await;
    assert!(
        caps.contains("STLS\r\n") && !caps.contains("USER"),
        "{caps}"
    );
    cmd(
        &mut c,
        "USER alice",
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    cmd(
        &mut c,
        "AUTH PLAIN",
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    // CVE-2011-0411: what follows STLS in the same write is not read as if under TLS.
    c.send(b"STLS\r\nUSER alice\r\nPASS pw\r\n").await;
    let r = c.status().await;
    assert!(
        r.starts_with("-ERR commands sent after STLS were discarded"),
        "{r}"
    );
    cmd(&mut c, "NOOP", "+OK").await;
    cmd(&mut c, "STLS", "+OK Begin TLS negotiation").await;
    c.start_tls(client).await.unwrap();
    c.send(b"CAPA\r\n").await;
    assert!(c.status().await.starts_with("+OK"));
    let caps = c.multiline().await;
    assert!(
        !caps.contains("STLS") && caps.contains("USER\r\n"),
        "{caps}"
    );
    cmd(&mut c, "STLS", "-ERR TLS is already active").await;
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(&mut c, "PASS pw", "+OK maildrop has 1 message(s)").await;
    cmd(&mut c, "STLS", "-ERR STLS is only allowed before login").await;
    cmd(&mut c, "QUIT", "+OK").await;

    // From loopback, a password in clear is taken (the default), unless configured "never".
    let mut c = connect(&ctx);
    assert!(c.status().await.starts_with("+OK"));
    cmd(&mut c, "USER alice", "+OK").await;
    cmd(&mut c, "PASS pw", "+OK").await;
    let mut cfg = config();
    cfg.pop3.plaintext_login = crate::config::PlaintextLogin::Never;
    let strict = Context::new(Arc::new(cfg), h.ts.dyn_store(), None);
    let mut c = connect(&strict);
    assert!(c.status().await.starts_with("+OK"));
    cmd(&mut c, "USER alice", "-ERR [AUTH] Plaintext").await;
    cmd(&mut c, "STLS", "-ERR STLS is not available").await;
}
