//! IMAP sessions over in-memory I/O, with paused time where the test is about time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Context, Session};
use crate::directory::password;
use crate::store::prelude::*;
use crate::testutil::{config, Client, TempStore};

struct Harness {
    _ts: TempStore,
    ctx: Arc<Context>,
}

async fn harness(cfg: crate::config::Config) -> Harness {
    let ts = TempStore::new();
    ts.store
        .user_add(
            "alice@example.com",
            Some(password::hash("pw").unwrap()),
            None,
        )
        .await
        .unwrap();
    let ctx = Context::new(Arc::new(cfg), ts.dyn_store(), None);
    Harness { _ts: ts, ctx }
}

fn connect(ctx: &Arc<Context>) -> Client {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (tx, rx) = watch::channel(false);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _keep = tx;
        Session::new(
            crate::tls::Stream::Plain(server),
            "127.0.0.1:40000".parse().unwrap(),
            ctx,
            rx,
        )
        .run()
        .await
    });
    Client::new(client)
}

/// Sends a command and reads up to its tagged reply; returns every line.
async fn run(c: &mut Client, tag: &str, line: &str) -> Vec<String> {
    c.send(format!("{tag} {line}\r\n").as_bytes()).await;
    let mut out = Vec::new();
    loop {
        let l = c.status().await;
        assert!(!l.is_empty(), "{line}: connection closed after {out:?}");
        let done = l.starts_with(&format!("{tag} "));
        out.push(l);
        if done {
            return out;
        }
    }
}

async fn logged_in(ctx: &Arc<Context>) -> Client {
    let mut c = connect(ctx);
    assert!(c.status().await.starts_with("* OK [CAPABILITY IMAP4rev1"));
    let r = run(&mut c, "l", "LOGIN alice pw").await;
    assert!(r[0].starts_with("l OK [CAPABILITY"), "{r:?}");
    c
}

#[tokio::test(start_paused = true)]
async fn a_failed_login_waits_and_the_third_closes_the_session() {
    let mut cfg = config();
    cfg.imap.auth_failure_delay = Duration::from_secs(2);
    let h = harness(cfg).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    let start = tokio::time::Instant::now();
    let r = run(&mut c, "a", "LOGIN alice wrong").await;
    assert_eq!(r, ["a NO [AUTHENTICATIONFAILED] Invalid credentials"]);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    run(&mut c, "b", "LOGIN nobody wrong").await;
    c.send(b"c LOGIN alice wrong\r\n").await;
    assert_eq!(
        c.status().await,
        "c NO [AUTHENTICATIONFAILED] Invalid credentials"
    );
    assert_eq!(c.status().await, "* BYE Too many failed logins");
    assert!(c.closed().await);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_are_logged_out_after_the_idle_timeout() {
    let mut cfg = config();
    cfg.imap.idle_timeout = Duration::from_secs(1800);
    cfg.imap.login_timeout = Duration::from_secs(60);
    let h = harness(cfg).await;
    // Before login, the shorter timer.
    let mut c = connect(&h.ctx);
    c.status().await;
    let start = tokio::time::Instant::now();
    assert_eq!(c.status().await, "* BYE Autologout; idle for too long");
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert!(start.elapsed() < Duration::from_secs(1800));
    // After login, the longer one, also while IDLE.
    let mut c = logged_in(&h.ctx).await;
    run(&mut c, "s", "SELECT INBOX").await;
    c.send(b"i IDLE\r\n").await;
    assert_eq!(c.status().await, "+ idling");
    let start = tokio::time::Instant::now();
    assert_eq!(c.status().await, "* BYE Autologout; idle for too long");
    assert!(start.elapsed() >= Duration::from_secs(1800));
}

#[tokio::test]
async fn idle_hears_an_append_from_another_session() {
    let h = harness(config()).await;
    let mut a = logged_in(&h.ctx).await;
    let mut b = logged_in(&h.ctx).await;
    run(&mut a, "s", "SELECT INBOX").await;
    a.send(b"i IDLE\r\n").await;
    assert_eq!(a.status().await, "+ idling");
    let r = run(&mut b, "p", "APPEND INBOX {7+}\r\nSub: x").await;
    assert!(r[0].starts_with("p OK [APPENDUID "), "{r:?}");
    assert_eq!(a.status().await, "* 1 EXISTS");
    assert_eq!(a.status().await, "* 1 RECENT");
    a.send(b"DONE\r\n").await;
    assert_eq!(a.status().await, "i OK IDLE terminated");
}

#[tokio::test(start_paused = true)]
async fn too_many_commands_a_second_are_slowed_down() {
    let mut cfg = config();
    cfg.imap.max_commands_per_second = 5;
    let h = harness(cfg).await;
    let mut c = logged_in(&h.ctx).await;
    let start = tokio::time::Instant::now();
    for i in 0..16 {
        run(&mut c, &format!("n{i}"), "NOOP").await;
    }
    // 17 commands (the login too) at 5 a second take at least three seconds.
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_literal_waits_for_the_continuation_and_limits_hold_before_login() {
    let h = harness(config()).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    c.send(b"a LOGIN {5}\r\n").await;
    assert_eq!(c.status().await, "+ Ready for literal data");
    c.send(b"alice pw\r\n").await;
    assert!(c.status().await.starts_with("a OK [CAPABILITY"));
    // Before login, literals are small (RFC 7888 §4).
    let mut c = connect(&h.ctx);
    c.status().await;
    c.send(b"b LOGIN {100000}\r\n").await;
    assert_eq!(
        c.status().await,
        "b NO [TOOBIG] literal of 100000 octets is over the limit of 8192"
    );
    let r = run(&mut c, "c", "NOOP").await;
    assert_eq!(r, ["c OK NOOP completed"]);
}

#[tokio::test]
async fn starttls_is_refused_with_pipelined_commands_and_without_a_certificate() {
    let h = harness(config()).await;
    let mut c = connect(&h.ctx);
    let greeting = c.status().await;
    // No certificate in this context: neither offered nor started.
    assert!(!greeting.contains("STARTTLS"), "{greeting}");
    let r = run(&mut c, "t", "STARTTLS").await;
    assert_eq!(r, ["t NO STARTTLS is not available: no usable certificate"]);
}

/// Where passwords may not travel in clear (`imap.plaintext_login = "never"`), the greeting says
/// LOGINDISABLED and both LOGIN and AUTHENTICATE are refused with PRIVACYREQUIRED (RFC 9051
/// §6.2.3); once logged in, a second login is a BAD command (RFC 9051 §6.2).
#[tokio::test]
async fn logins_in_clear_are_refused_where_the_policy_says_so() {
    let mut cfg = config();
    cfg.imap.plaintext_login = crate::config::PlaintextLogin::Never;
    let h = harness(cfg).await;
    let mut c = connect(&h.ctx);
    let greeting = c.status().await;
    assert!(greeting.contains(" LOGINDISABLED"), "{greeting}");
    let r = run(&mut c, "a", "LOGIN alice@example.com pw").await;
    assert_eq!(
        r,
        ["a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections; use STARTTLS first"]
    );
    let r = run(
        &mut c,
        "b",
        "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHB3",
    )
    .await;
    assert_eq!(
        r,
        ["b NO [PRIVACYREQUIRED] Authentication disallowed on non-secure connections; use STARTTLS first"]
    );
    let h = harness(config()).await;
    let mut c = logged_in(&h.ctx).await;
    for (tag, line) in [
        ("c", "LOGIN alice@example.com pw"),
        ("d", "AUTHENTICATE PLAIN"),
    ] {
        let r = run(&mut c, tag, line).await;
        assert_eq!(r, [format!("{tag} BAD Already logged in")]);
    }
}
