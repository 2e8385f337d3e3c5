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
    cfg.imap.command_burst = 10;
    let h = harness(cfg).await;
    let mut c = logged_in(&h.ctx).await;
    let start = tokio::time::Instant::now();
    for i in 0..9 {
        run(&mut c, &format!("n{i}"), "NOOP").await;
    }
    // The login and nine commands: the burst, at once.
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    for i in 0..15 {
        run(&mut c, &format!("m{i}"), "NOOP").await;
    }
    // Fifteen more at 5 a second: three seconds.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A pause refills it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = tokio::time::Instant::now();
    for i in 0..10 {
        run(&mut c, &format!("r{i}"), "NOOP").await;
    }
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "{:?}",
        again.elapsed()
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

/// Issue 21: LIST and LSUB of a non-ASCII name (modified UTF-7, RFC 3501 §5.1.3) ended the
/// session with a panic (a name cut inside a character), and imapsync then skipped the folder.
#[tokio::test]
async fn list_of_a_non_ascii_name_does_not_end_the_session() {
    let h = harness(config()).await;
    let mut c = logged_in(&h.ctx).await;
    for create in ["Entw&APw-rfe", "&BBAEQARFBDgEMg-/2025"] {
        let r = run(&mut c, "c", &format!("CREATE \"{create}\"")).await;
        assert_eq!(r, ["c OK CREATE completed"]);
    }
    let r = run(&mut c, "a", "LIST \"\" \"Entw&APw-rfe\"").await;
    assert_eq!(
        r,
        [
            "* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe",
            "a OK LIST completed"
        ]
    );
    let r = run(&mut c, "b", "LIST \"\" \"&BBAEQARFBDgEMg-/%\"").await;
    assert_eq!(
        r,
        [
            "* LIST (\\HasNoChildren) \"/\" &BBAEQARFBDgEMg-/2025",
            "b OK LIST completed"
        ]
    );
    run(&mut c, "s", "SUBSCRIBE \"&BBAEQARFBDgEMg-/2025\"").await;
    let r = run(&mut c, "d", "LSUB \"\" \"&BBAEQARFBDgEMg-/%\"").await;
    assert_eq!(
        r,
        [
            "* LSUB () \"/\" &BBAEQARFBDgEMg-/2025",
            "d OK LSUB completed"
        ]
    );
    // The implied parent Архив, subscribed to by no one, for `%` (RFC 3501 §6.3.9).
    let r = run(&mut c, "e", "LSUB \"\" \"&BBAEQARFBDgEMg-\"").await;
    assert_eq!(
        r,
        [
            "* LSUB (\\Noselect) \"/\" &BBAEQARFBDgEMg-",
            "e OK LSUB completed"
        ]
    );
    // A name shorter than INBOX and cut in a character of its own.
    let r = run(&mut c, "f", "LIST \"\" \"inbo&APw-\"").await;
    assert_eq!(r, ["f OK LIST completed"]);
}

/// Issue 21: DELETE of a folder with children was refused; RFC 3501 §6.3.4 allows it (the
/// messages go, the name stays `\Noselect` while it has children, and CREATE makes it again).
/// A parent made implicitly by `CREATE a/b` is `\Noselect` too, until someone creates it.
#[tokio::test]
async fn delete_of_a_folder_with_children_leaves_a_noselect_parent() {
    let h = harness(config()).await;
    let mut c = logged_in(&h.ctx).await;
    run(&mut c, "c", "CREATE a/b").await;
    let list = |r: Vec<String>| -> Vec<String> {
        r.into_iter().filter(|l| l.contains("\"/\" a")).collect()
    };
    let r = list(run(&mut c, "l", "LIST \"\" a*").await);
    assert_eq!(
        r,
        [
            "* LIST (\\Noselect \\HasChildren) \"/\" a",
            "* LIST (\\HasNoChildren) \"/\" a/b"
        ]
    );
    let r = run(&mut c, "s", "SELECT a").await;
    assert_eq!(r, ["s NO [NONEXISTENT] Mailbox doesn't exist"]);
    let r = run(&mut c, "d", "DELETE a").await;
    assert_eq!(r, ["d NO [NONEXISTENT] Mailbox doesn't exist"]);
    // Made, filled, deleted with its child in place.
    assert_eq!(
        run(&mut c, "c", "CREATE a").await,
        ["c OK CREATE completed"]
    );
    let r = run(&mut c, "p", "APPEND a {3+}\r\nhi\n").await;
    assert!(r[0].starts_with("p OK [APPENDUID "), "{r:?}");
    let r = run(&mut c, "l", "LIST \"\" a").await;
    assert_eq!(r[0], "* LIST (\\HasChildren) \"/\" a");
    assert_eq!(
        run(&mut c, "d", "DELETE a").await,
        ["d OK DELETE completed"]
    );
    let r = list(run(&mut c, "l", "LIST \"\" a*").await);
    assert_eq!(
        r,
        [
            "* LIST (\\Noselect \\HasChildren) \"/\" a",
            "* LIST (\\HasNoChildren) \"/\" a/b"
        ]
    );
    // The extended form names it \NonExistent (RFC 5258 §3.4).
    let r = run(&mut c, "x", "LIST \"\" a RETURN (CHILDREN)").await;
    assert_eq!(r[0], "* LIST (\\NonExistent \\HasChildren) \"/\" a");
    // Made again: empty, with a new UIDVALIDITY.
    assert_eq!(
        run(&mut c, "c", "CREATE a").await,
        ["c OK CREATE completed"]
    );
    let r = run(&mut c, "t", "STATUS a (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS a (MESSAGES 0)");
    // With the last child gone, a parent never made goes too.
    run(&mut c, "c", "CREATE x/y").await;
    run(&mut c, "d", "DELETE x/y").await;
    let r = run(&mut c, "l", "LIST \"\" x*").await;
    assert_eq!(r, ["l OK LIST completed"]);
}

/// A parent that was never made is renamed with the folders under it (RFC 9051 §6.3.6).
#[tokio::test]
async fn rename_of_an_implied_parent_renames_its_children() {
    let h = harness(config()).await;
    let mut c = logged_in(&h.ctx).await;
    run(&mut c, "c", "CREATE \"&BBAEQARFBDgEMg-/x\"").await;
    let r = run(&mut c, "r", "RENAME \"&BBAEQARFBDgEMg-\" \"Entw&APw-rfe\"").await;
    assert_eq!(r, ["r OK RENAME completed"]);
    let r = run(&mut c, "l", "LIST \"\" \"Entw*\"").await;
    assert_eq!(
        r,
        [
            "* LIST (\\Noselect \\HasChildren) \"/\" Entw&APw-rfe",
            "* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe/x",
            "l OK LIST completed"
        ]
    );
    let r = run(&mut c, "r", "RENAME nothing else").await;
    assert_eq!(r, ["r NO [NONEXISTENT] Mailbox doesn't exist"]);
}

/// Issue 21: a keyword a session has not seen is announced (FLAGS, PERMANENTFLAGS) before a
/// FETCH carries it (RFC 3501 §7.2.6, RFC 9051 §7.3.5), in the session that set it and in the
/// others; a folder keeps the keywords it defined.
#[tokio::test]
async fn a_new_keyword_is_announced_before_a_fetch_uses_it() {
    let h = harness(config()).await;
    let mut a = logged_in(&h.ctx).await;
    let mut b = logged_in(&h.ctx).await;
    run(&mut a, "p", "APPEND INBOX {3+}\r\nhi\n").await;
    run(&mut b, "s", "SELECT INBOX").await; // (b is told of it first: \Recent there)
    run(&mut a, "s", "SELECT INBOX").await;
    let r = run(&mut a, "t", "STORE 1 +FLAGS ($Work)").await;
    assert_eq!(
        r,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
            "* 1 FETCH (FLAGS ($Work))",
            "t OK STORE completed"
        ]
    );
    let r = run(&mut b, "n", "NOOP").await;
    assert_eq!(
        r[0],
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"
    );
    assert!(
        r[2].starts_with("* 1 FETCH (FLAGS (") && r[2].contains("$Work"),
        "{r:?}"
    );
    // Known now: said once.
    let r = run(&mut a, "t", "STORE 1 -FLAGS ($work)").await;
    assert_eq!(r, ["* 1 FETCH (FLAGS ())", "t OK STORE completed"]);
    // Still defined after its last use (as Dovecot keeps them).
    let r = run(&mut b, "s", "SELECT INBOX").await;
    assert!(
        r.iter()
            .any(|l| l == "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"),
        "{r:?}"
    );
}

/// Issue 21: keywords are bounded per folder and per message (NO [LIMIT], RFC 5530), and
/// PERMANENTFLAGS drops `\*` once a folder has all it may define (RFC 9051 §7.1).
#[tokio::test]
async fn keywords_past_the_bounds_are_refused() {
    let mut cfg = config();
    cfg.imap.max_keywords_per_folder = 3;
    cfg.imap.max_keywords_per_message = 2;
    let h = harness(cfg).await;
    h._ts
        .store
        .set_keyword_limits(crate::store::sqlite::KeywordLimits {
            per_folder: 3,
            per_message: 2,
        });
    let mut c = logged_in(&h.ctx).await;
    run(&mut c, "p", "APPEND INBOX {3+}\r\nhi\n").await;
    run(&mut c, "s", "SELECT INBOX").await;
    let r = run(&mut c, "t", "STORE 1 +FLAGS (a b c)").await;
    assert!(
        r[0].starts_with("t NO [LIMIT] a message may carry at most 2 keywords"),
        "{r:?}"
    );
    run(&mut c, "t", "STORE 1 +FLAGS (a b)").await;
    let r = run(&mut c, "t", "STORE 1 FLAGS (c)").await;
    assert_eq!(r[1], "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft a b c)] Flags permitted");
    let r = run(&mut c, "t", "STORE 1 +FLAGS (d)").await;
    assert!(
        r[0].starts_with("t NO [LIMIT] this mailbox has its 3 keywords already"),
        "{r:?}"
    );
    let r = run(&mut c, "p", "APPEND INBOX (e) {3+}\r\nhi\n").await;
    assert!(r[0].starts_with("p NO [LIMIT]"), "{r:?}");
}

/// Issue 21: a new message is `\Recent` in exactly one session, the first told of it; STATUS
/// RECENT elsewhere then counts 0, as Dovecot does.
#[tokio::test]
async fn a_new_message_is_recent_in_one_session() {
    let h = harness(config()).await;
    let mut a = logged_in(&h.ctx).await;
    let mut b = logged_in(&h.ctx).await;
    run(&mut a, "s", "SELECT INBOX").await;
    run(&mut b, "s", "SELECT INBOX").await;
    let r = run(&mut a, "p", "APPEND INBOX {3+}\r\nhi\n").await;
    assert_eq!(&r[..2], ["* 1 EXISTS", "* 1 RECENT"]);
    let r = run(&mut b, "n", "NOOP").await;
    assert_eq!(r, ["* 1 EXISTS", "n OK NOOP completed"]);
    let r = run(&mut b, "f", "FETCH 1 FLAGS").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS ())");
    let mut c = logged_in(&h.ctx).await;
    let r = run(&mut c, "t", "STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS INBOX (RECENT 0)");
    let r = run(&mut a, "f", "FETCH 1 FLAGS").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Recent))");
}

/// Issue 21: a client that never logs in but sends a byte now and then kept its session (and
/// slot) for ever: the login timeout began again at every byte. It counts from the connection.
#[tokio::test(start_paused = true)]
async fn the_login_timeout_counts_from_the_connection() {
    let mut cfg = config();
    cfg.imap.login_timeout = Duration::from_secs(60);
    let h = harness(cfg).await;
    let mut c = connect(&h.ctx);
    c.status().await;
    let start = tokio::time::Instant::now();
    for b in b"a NOOP\r\nb NOOP\r\nc NOOP\r\nd CAPA"
        .iter()
        .cycle()
        .take(59)
    {
        c.send(&[*b]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        let l = c.status().await;
        if l.starts_with("* BYE") {
            assert_eq!(l, "* BYE Autologout; idle for too long");
            break;
        }
        assert!(!l.is_empty(), "closed without BYE");
    }
    assert!(
        start.elapsed() <= Duration::from_secs(61),
        "{:?}",
        start.elapsed()
    );
}

/// Issue 21: APPEND literals were held in memory (six sessions sending 20 MB each took 369
/// MB), and a MULTIAPPEND of messages that together passed the command limit ended the session
/// with `BYE [TOOBIG]`. Large messages are streamed to the spool as they arrive; each message
/// of a MULTIAPPEND is limited on its own; the text is stored byte for byte.
#[tokio::test]
async fn large_appends_are_streamed_and_limited_per_message() {
    let mut cfg = config();
    cfg.imap.max_line = 8192;
    cfg.imap.max_literal = 4096;
    cfg.smtp.spool_threshold = 1024;
    let h = harness(cfg).await;
    let mut c = logged_in(&h.ctx).await;
    let msg = |i: usize| -> Vec<u8> {
        let mut m = format!("Subject: m{i}\r\n\r\n").into_bytes();
        while m.len() < 4000 {
            m.extend_from_slice(format!("line {i} {}\r\n", m.len()).as_bytes());
        }
        m
    };
    // Four messages of 4,000 octets in one command (16,000 > 4,096 + 8,192), synchronizing
    // and not.
    c.send(format!("a APPEND INBOX {{{}}}\r\n", msg(0).len()).as_bytes())
        .await;
    assert_eq!(c.status().await, "+ Ready for literal data");
    let mut rest = msg(0);
    for i in 1..4 {
        rest.extend_from_slice(format!(" (\\Seen) {{{}+}}\r\n", msg(i).len()).as_bytes());
        rest.extend_from_slice(&msg(i));
    }
    rest.extend_from_slice(b"\r\n");
    // Sent in small pieces, as a network delivers it.
    for piece in rest.chunks(700) {
        c.send(piece).await;
    }
    let r = c.status().await;
    assert!(
        r.starts_with("a OK [APPENDUID ") && r.ends_with(" 1:4] APPEND completed"),
        "{r}"
    );
    run(&mut c, "s", "SELECT INBOX").await;
    for i in 0..4 {
        let m = msg(i);
        let r = run(&mut c, "f", &format!("FETCH {} RFC822.SIZE", i + 1)).await;
        assert_eq!(r[0], format!("* {} FETCH (RFC822.SIZE {})", i + 1, m.len()));
        // Its last line, from the end of what was streamed, is found in it.
        let text = String::from_utf8(m).unwrap();
        let last = text.trim_end().rsplit("\r\n").next().unwrap();
        let r = run(&mut c, "t", &format!("SEARCH BODY \"{last}\"")).await;
        assert_eq!(
            r[0],
            format!("* SEARCH {}", i + 1),
            "message {i} is not whole"
        );
    }
    // A message over max_literal is refused before it is sent; the session goes on.
    let r = run(&mut c, "b", "APPEND INBOX {4097}").await;
    assert_eq!(
        r,
        ["b NO [TOOBIG] literal of 4097 octets is over the limit of 4096"]
    );
    assert_eq!(run(&mut c, "n", "NOOP").await, ["n OK NOOP completed"]);
}

/// RFC 4978: after `OK` to COMPRESS DEFLATE both ways are deflated; a second COMPRESS is
/// refused with `[COMPRESSIONACTIVE]`; COMPRESS with a command pipelined after it is refused
/// (was the next command meant compressed or not?); and a small input that inflates to a huge
/// line is cut at the line limit, not held.
#[tokio::test]
async fn compress_deflate_carries_the_session_both_ways() {
    let mut cfg = config();
    cfg.imap.max_line = 8192;
    let h = harness(cfg).await;
    let mut c = logged_in(&h.ctx).await;
    let caps = run(&mut c, "c", "CAPABILITY").await;
    assert!(caps[0].contains(" COMPRESS=DEFLATE"), "{caps:?}");
    let r = run(&mut c, "z", "COMPRESS DEFLATE\r\nn NOOP").await;
    assert_eq!(r, ["z BAD Commands pipelined after COMPRESS"]);
    // Compression did not start, so the pipelined command is read in clear.
    assert_eq!(c.status().await, "n OK NOOP completed");
    let r = run(&mut c, "z", "COMPRESS LZW").await;
    assert_eq!(r, ["z BAD Unknown compression mechanism LZW"]);
    assert_eq!(
        run(&mut c, "z", "COMPRESS DEFLATE").await,
        ["z OK DEFLATE active"]
    );
    c.start_deflate();
    let body = format!(
        "Subject: squeezed\r\n\r\n{}",
        "The same line, again and again.\r\n".repeat(50)
    );
    let r = run(
        &mut c,
        "a",
        &format!("APPEND INBOX {{{}+}}\r\n{body}", body.len()),
    )
    .await;
    assert!(r[0].starts_with("a OK [APPENDUID "), "{r:?}");
    run(&mut c, "s", "SELECT INBOX").await;
    let r = run(&mut c, "f", "FETCH 1 BODY[TEXT]").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[TEXT] {1650}");
    assert_eq!(r[1..51], ["The same line, again and again."; 50]);
    assert_eq!(
        r[51..],
        [" FLAGS (\\Seen \\Recent))", "f OK FETCH completed"]
    );
    let r = run(&mut c, "y", "COMPRESS DEFLATE").await;
    assert_eq!(r, ["y NO [COMPRESSIONACTIVE] DEFLATE is already active"]);
    // 10 MB of one line, about 10 KB compressed.
    c.send(&vec![b'a'; 10 << 20]).await;
    assert_eq!(c.status().await, "* BYE line over 8192 octets");
    assert!(c.closed().await);
}

/// Pipelined FETCH commands (as mbsync sends them) are answered from texts read ahead in one
/// store call: each answer must still be its own message's text, in order, a message fetched
/// twice read twice, and one too large to read ahead read by its own command.
#[tokio::test]
async fn pipelined_fetches_read_ahead_and_answer_each_its_own_message() {
    let mut cfg = config();
    cfg.imap.max_literal = 4 << 20;
    let h = harness(cfg).await;
    let mut c = logged_in(&h.ctx).await;
    let body = |i: usize| -> String {
        let fill = if i == 7 { 1_100_000 } else { 10 + i };
        format!("Subject: m{i}\r\n\r\n{}\r\n", "x".repeat(fill))
    };
    for i in 1..=40 {
        let b = body(i);
        let r = run(
            &mut c,
            "a",
            &format!("APPEND INBOX {{{}+}}\r\n{b}", b.len()),
        )
        .await;
        assert!(r[0].starts_with("a OK"), "{r:?}");
    }
    run(&mut c, "s", "SELECT INBOX").await;
    let mut pipelined = String::new();
    let order: Vec<usize> = (1..=40).chain([3, 7]).collect();
    for (n, uid) in order.iter().enumerate() {
        pipelined.push_str(&format!("f{n} UID FETCH {uid} (BODY.PEEK[])\r\n"));
    }
    c.send(pipelined.as_bytes()).await;
    for (n, &uid) in order.iter().enumerate() {
        let b = body(uid);
        let head = c.status().await;
        assert_eq!(
            head,
            format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}", b.len()),
            "answer {n}"
        );
        let subject = c.status().await;
        assert_eq!(subject, format!("Subject: m{uid}"));
        assert_eq!(c.status().await, "");
        assert_eq!(c.status().await, "x".repeat(b.len() - subject.len() - 6));
        assert_eq!(c.status().await, ")");
        assert_eq!(c.status().await, format!("f{n} OK UID FETCH completed"));
    }
}
