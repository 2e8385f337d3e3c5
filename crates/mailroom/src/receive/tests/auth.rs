//! STARTTLS, AUTH and the submission rules, over in-memory connections with real TLS.

use base64::Engine;

use super::*;
use crate::testutil::tls_pair;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A submission session with TLS available, and carol (password `secret`), her alias
/// `carol.c@example.com`, and the list `team` (alice and bob) in the directory.
async fn submission() -> (Harness, Arc<rustls::ClientConfig>, tempfile::TempDir) {
    let (tls, client, dir) = tls_pair();
    let mut cfg = config();
    cfg.smtp.max_errors = 50;
    let h = start_full(
        cfg,
        Registry::standard(),
        1 << 20,
        Mode::Submission,
        Some(tls),
    )
    .await;
    let s = h.ts.store.as_ref();
    let hash = crate::directory::password::hash("secret").unwrap();
    s.user_add("carol@example.com", Some(hash), None)
        .await
        .unwrap();
    s.alias_add("carol.c@example.com", vec!["carol@example.com".into()])
        .await
        .unwrap();
    (h, client, dir)
}

async fn under_tls(h: &mut Harness, client: Arc<rustls::ClientConfig>) {
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS").await;
    h.c.start_tls(client).await.unwrap();
}

#[tokio::test]
async fn submission_needs_tls_then_auth_then_sends_as_the_user_only() {
    let (mut h, client, _dir) = submission().await;
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert!(r.contains("250 STARTTLS") && !r.contains("AUTH"), "{r}");
    h.c.cmd(
        &format!("AUTH PLAIN {}", b64(b"\0carol@example.com\0secret")),
        "538 5.7.11 Encryption required",
    )
    .await;
    h.c.cmd(
        "MAIL FROM:<carol@example.com>",
        "530 5.7.0 Must issue a STARTTLS command first",
    )
    .await;
    h.c.cmd("STARTTLS", "220").await;
    h.c.start_tls(client).await.unwrap();
    // RFC 3207 §4.2: the session starts again; EHLO now offers AUTH and no STARTTLS.
    h.c.cmd("MAIL FROM:<carol@example.com>", "503 5.5.1 Send EHLO")
        .await;
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert!(
        r.contains("250 AUTH SCRAM-SHA-256 PLAIN LOGIN") && !r.contains("STARTTLS"),
        "{r}"
    );
    h.c.cmd("STARTTLS", "503 5.5.1 TLS is already active").await;
    h.c.cmd(
        "MAIL FROM:<carol@example.com>",
        "530 5.7.0 Authentication required",
    )
    .await;
    h.c.cmd(
        &format!("AUTH PLAIN {}", b64(b"\0carol@example.com\0wrong")),
        "535 5.7.8",
    )
    .await;
    h.c.cmd(
        &format!(
            "AUTH PLAIN {}",
            b64(b"bob@example.com\0carol@example.com\0secret")
        ),
        "535 5.7.8 Authentication credentials invalid: acting for another user",
    )
    .await;
    // LOGIN, with its two challenges; the local part alone means the primary domain.
    h.c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    h.c.cmd(&b64(b"carol"), "334 UGFzc3dvcmQ6").await;
    h.c.cmd(&b64(b"secret"), "235 2.7.0 Authentication successful")
        .await;
    h.c.cmd("AUTH PLAIN", "503 5.5.1 Already authenticated")
        .await;

    h.c.cmd(
        "MAIL FROM:<alice@example.com>",
        "553 5.7.1 Sender address <alice@example.com> rejected",
    )
    .await;
    h.c.cmd("MAIL FROM:<team@example.com>", "553 5.7.1").await;
    h.c.cmd("MAIL FROM:<carol.c@example.com>", "250").await;
    h.c.cmd("RSET", "250").await;
    h.c.cmd("MAIL FROM:<carol@example.com>", "250").await;
    // An authenticated user relays; the classic tricks are still refused.
    h.c.cmd("RCPT TO:<someone@elsewhere.test>", "250").await;
    h.c.cmd("RCPT TO:<x%elsewhere.test@example.com>", "554 5.7.1")
        .await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd(
        "From: Alice <alice@example.com>\r\nSubject: spoof\r\n\r\nhi\r\n.",
        "553 5.7.1 From: address <alice@example.com> rejected",
    )
    .await;
    assert_eq!(
        h.delivered().await,
        0,
        "the spoofed message is not delivered"
    );
    h.c.cmd("MAIL FROM:<carol@example.com>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd(
        "From: Carol <Carol.C@example.com>\r\nSubject: hi\r\n\r\nhello\r\n.",
        "250 2.0.0",
    )
    .await;
    let got = h.mailbox("alice@example.com").await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("with ESMTPSA\r\n\t(TLSv1.3 with cipher TLS13_"),
        "{}",
        got[0]
    );
}

#[tokio::test]
async fn bad_passwords_slow_down_then_close_the_session() {
    let (mut h, client, _dir) = submission().await;
    under_tls(&mut h, client).await;
    h.c.cmd("EHLO client.test", "250").await;
    let t = tokio::time::Instant::now();
    for _ in 0..2 {
        h.c.cmd(
            &format!("AUTH PLAIN {}", b64(b"\0carol@example.com\0nope")),
            "535 5.7.8",
        )
        .await;
    }
    // 100 ms, then 200 ms (the harness's guard doubles its pause).
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    h.c.send(format!("AUTH PLAIN {}\r\n", b64(b"\0carol@example.com\0nope")).as_bytes())
        .await;
    assert!(h.c.reply().await.starts_with("535"));
    assert!(
        h.c.reply().await.starts_with("421 4.7.0"),
        "max_auth_failures = 3"
    );
    assert!(h.c.closed().await);
}

#[tokio::test]
async fn sasl_exchanges_cancelled_or_malformed_get_clear_replies() {
    let (mut h, client, _dir) = submission().await;
    under_tls(&mut h, client).await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd(
        "AUTH CRAM-MD5",
        "504 5.5.4 Unrecognized authentication mechanism",
    )
    .await;
    h.c.cmd("AUTH PLAIN", "334").await;
    h.c.cmd("*", "501 5.7.0 Authentication cancelled").await;
    h.c.cmd("AUTH PLAIN !!!", "501 5.5.2 Cannot decode").await;
    h.c.cmd(
        &format!("AUTH PLAIN {}", b64(b"no-nuls")),
        "501 5.5.2 Malformed PLAIN",
    )
    .await;
    // RFC 4954 §4: an AUTH line of up to 12,288 octets is read whole (here: a long password).
    let long = format!("\0carol@example.com\0{}", "p".repeat(8000));
    h.c.cmd(&format!("AUTH PLAIN {}", b64(long.as_bytes())), "535 5.7.8")
        .await;
    h.c.cmd(
        "MAIL FROM:<carol@example.com>",
        "530 5.7.0 Authentication required",
    )
    .await;
}

#[tokio::test]
async fn pipelined_starttls_injection_is_refused_and_discarded() {
    let (mut h, _client, _dir) = submission().await;
    h.c.cmd("EHLO client.test", "250").await;
    // CVE-2011-0411: the MAIL after STARTTLS must not run as if it had come under TLS.
    h.c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<carol@example.com>\r\n")
        .await;
    let r = h.c.reply().await;
    assert!(
        r.starts_with("554 5.5.0 Commands sent after STARTTLS were discarded"),
        "{r}"
    );
    // The injected commands got no reply: the next one answered is NOOP's.
    h.c.cmd("NOOP", "250 2.0.0 OK").await;
}

#[tokio::test]
async fn the_mx_listener_offers_starttls_and_no_auth() {
    let (tls, client, _dir) = tls_pair();
    let mut h = start_full(config(), Registry::standard(), 1 << 20, Mode::Mx, Some(tls)).await;
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert!(r.contains("250 STARTTLS") && !r.contains("AUTH"), "{r}");
    h.c.cmd("STARTTLS", "220").await;
    h.c.start_tls(client).await.unwrap();
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert!(!r.contains("AUTH") && !r.contains("STARTTLS"), "{r}");
    h.c.cmd(
        "AUTH PLAIN",
        "502 5.5.1 AUTH is offered on the submission service only",
    )
    .await;
    // Unauthenticated mail from outside, as before, for local users only.
    h.c.cmd("MAIL FROM:<x@elsewhere.test>", "250").await;
    h.c.cmd("RCPT TO:<y@elsewhere.test>", "554 5.7.1").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd("Subject: t\r\n\r\nx\r\n.", "250").await;
    let got = h.mailbox("alice@example.com").await;
    assert!(
        got[0].contains("with ESMTPS\r\n\t(TLSv1.3 with cipher"),
        "{}",
        got[0]
    );

    // Without a usable certificate there is no STARTTLS, and the verb says why.
    let mut cfg = config();
    cfg.smtp.starttls = false;
    let (tls, _, _d) = tls_pair();
    let mut h = start_full(cfg, Registry::standard(), 1 << 20, Mode::Mx, Some(tls)).await;
    let r = h.c.cmd("EHLO client.test", "250").await;
    assert!(!r.contains("STARTTLS"), "smtp.starttls = false: {r}");
    h.c.cmd("STARTTLS", "454 4.7.0").await;
}

#[tokio::test]
async fn outside_clients_may_not_send_as_a_local_domain_nor_flood() {
    let mut cfg = config();
    cfg.smtp.max_message_rate = 3;
    let mut h = start_full(cfg.clone(), Registry::standard(), 1 << 20, Mode::Mx, None).await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd(
        "MAIL FROM:<alice@example.com>",
        "550 5.7.1 Sender <alice@example.com> refused",
    )
    .await;
    for _ in 0..2 {
        h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
        h.c.cmd("RSET", "250").await;
    }
    h.c.cmd("MAIL FROM:<a@b.test>", "450 4.7.1 Too many messages")
        .await;

    // From inside, both are allowed.
    cfg.smtp.inside_networks = vec!["192.0.2.0/24".parse().unwrap()];
    let mut h = start_full(cfg, Registry::standard(), 1 << 20, Mode::Mx, None).await;
    h.c.cmd("EHLO client.test", "250").await;
    for _ in 0..4 {
        h.c.cmd("MAIL FROM:<alice@example.com>", "250").await;
        h.c.cmd("RSET", "250").await;
    }
}

#[tokio::test]
async fn a_list_says_who_may_post_to_it() {
    use crate::model::{ListPolicy, Posting};
    let mut cfg = config();
    cfg.smtp.local_senders_from_outside = crate::config::LocalSenders::Accept;
    let mut h = start_full(cfg, Registry::standard(), 1 << 20, Mode::Mx, None).await;
    let s = h.ts.store.as_ref();
    let members = ListPolicy {
        post: Posting::Members,
        outside_members: true,
    };
    s.list_set_policy("all@example.com", members).await.unwrap();
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd(
        "RCPT TO:<all@example.com>",
        "550 5.7.1 <all@example.com>: only the list's members",
    )
    .await;
    h.c.cmd("RSET", "250").await;
    // bob is a member through the nested alias team.
    h.c.cmd("MAIL FROM:<bob@example.com>", "250").await;
    h.c.cmd("RCPT TO:<all@example.com>", "250").await;
    h.c.cmd("RSET", "250").await;
    let local = ListPolicy {
        post: Posting::Local,
        ..members
    };
    h.ts.store
        .list_set_policy("all@example.com", local)
        .await
        .unwrap();
    h.c.cmd("MAIL FROM:<bob@example.com>", "250").await;
    h.c.cmd(
        "RCPT TO:<all@example.com>",
        "550 5.7.1 <all@example.com>: only senders of this organization",
    )
    .await;
    assert_eq!(
        h.ts.store.list_policy("alice@example.com").await.unwrap(),
        None,
        "not a list"
    );
    h.ts.store
        .list_del("all@example.com", vec![])
        .await
        .unwrap();
    h.ts.store
        .list_add("all@example.com", vec!["alice@example.com".into()])
        .await
        .unwrap();
    assert_eq!(
        h.ts.store.list_policy("all@example.com").await.unwrap(),
        Some(ListPolicy::default()),
        "a new list of the name starts open"
    );
}

/// Issue 21: a submitted message without `Date:` gets one, as it gets a Message-ID (RFC 6409
/// §8.3); one with its own keeps it alone; mail from outside is not dated by this server.
#[tokio::test]
async fn a_submission_without_a_date_gets_one() {
    let (mut h, client, _dir) = submission().await;
    under_tls(&mut h, client).await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd(
        &format!("AUTH PLAIN {}", b64(b"\0carol@example.com\0secret")),
        "235",
    )
    .await;
    for text in [
        "From: carol@example.com\r\nSubject: undated\r\n\r\nhi\r\n.",
        "From: carol@example.com\r\ndate: Tue, 01 Dec 2026 10:00:00 +0100\r\nSubject: dated\r\n\r\nhi\r\n.",
    ] {
        h.c.cmd("MAIL FROM:<carol@example.com>", "250").await;
        h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
        h.c.cmd("DATA", "354").await;
        h.c.cmd(text, "250 2.0.0").await;
    }
    let got = h.mailbox("alice@example.com").await;
    let dates = |m: &str| {
        m.split("\r\n\r\n")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("date:"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let undated = got.iter().find(|m| m.contains("Subject: undated")).unwrap();
    let added = dates(undated);
    assert_eq!(added.len(), 1, "{undated}");
    assert!(
        chrono::DateTime::parse_from_rfc2822(added[0].trim_start_matches("Date: ")).is_ok(),
        "{added:?}"
    );
    let dated = got.iter().find(|m| m.contains("Subject: dated")).unwrap();
    assert_eq!(dates(dated), ["date: Tue, 01 Dec 2026 10:00:00 +0100"]);

    let mut h = start().await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd("MAIL FROM:<bob@other.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd("Subject: from outside\r\n\r\nhi\r\n.", "250 2.0.0")
        .await;
    let got = h.mailbox("alice@example.com").await;
    assert!(dates(&got[0]).is_empty(), "{}", got[0]);
}

/// Issue 21: a From: without a mailbox bypassed the sender rules (and left DMARC nothing to
/// judge): from outside, an empty group or an encoded word for a local address was accepted;
/// a logged-in user could show another local user in a display name, or name them in Sender:
/// or Resent-From:.
#[tokio::test]
async fn an_author_that_is_no_mailbox_or_not_the_user_is_refused() {
    let mut h = start_full(config(), Registry::standard(), 1 << 20, Mode::Mx, None).await;
    h.c.cmd("EHLO client.test", "250").await;
    for from in [
        "From: \"alice@example.com\" :;",
        "From: =?utf-8?q?alice=40example=2Ecom?=",
        "From: Alice",
    ] {
        h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
        h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
        h.c.cmd("DATA", "354").await;
        h.c.cmd(
            &format!("{from}\r\nSubject: s\r\n\r\nhi\r\n."),
            "550 5.7.1 The From: field names no mailbox",
        )
        .await;
    }
    h.c.cmd("MAIL FROM:<a@b.test>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd("From: a@b.test\r\nSubject: fine\r\n\r\nhi\r\n.", "250")
        .await;

    let (mut h, client, _dir) = submission().await;
    under_tls(&mut h, client).await;
    h.c.cmd("EHLO client.test", "250").await;
    h.c.cmd(
        &format!("AUTH PLAIN {}", b64(b"\0carol@example.com\0secret")),
        "235",
    )
    .await;
    for (head, want) in [
        (
            "From: \"Bob <bob@example.com>\":;",
            "550 5.7.1 The From: field names no mailbox",
        ),
        (
            "From: \"Bob <bob@example.com>\" <carol@example.com>",
            "553 5.7.1 The name shown with the author carries <bob@example.com> rejected",
        ),
        (
            "From: carol@example.com\r\nSender: bob@example.com",
            "553 5.7.1 Sender: address <bob@example.com> rejected",
        ),
        (
            "From: carol@example.com\r\nResent-From: Bob <bob@example.com>",
            "553 5.7.1 Resent-From: address <bob@example.com> rejected",
        ),
    ] {
        h.c.cmd("MAIL FROM:<carol@example.com>", "250").await;
        h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
        h.c.cmd("DATA", "354").await;
        h.c.cmd(&format!("{head}\r\nSubject: s\r\n\r\nhi\r\n."), want)
            .await;
    }
    // Her own address in her display name, and an outside one, are fine.
    h.c.cmd("MAIL FROM:<carol@example.com>", "250").await;
    h.c.cmd("RCPT TO:<alice@example.com>", "250").await;
    h.c.cmd("DATA", "354").await;
    h.c.cmd(
        "From: \"carol@example.com (via x@elsewhere.org)\" <carol@example.com>\r\n\r\nhi\r\n.",
        "250",
    )
    .await;
}
