//! The outbound client against scripted peers on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use mailroom_proto::smtp::client::parse_response;
use mailroom_proto::smtp::{DsnRet, Notify};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::model::{EnvelopeParams, MessageKind, RcptState, ReportState, Route};
use crate::route::dns::StaticResolver;
use crate::testutil::{config, TempStore};

/// What a scripted peer says and what it saw.
#[derive(Default)]
struct Script {
    extensions: Vec<&'static str>,
    ehlo_refused: bool,
    mail_reply: Option<&'static str>,
    rcpt_replies: HashMap<&'static str, &'static str>,
    end_reply: Option<&'static str>,
    hang_up_after_data: bool,
    /// Closes the connection when RSET comes.
    hang_up_on_rset: bool,
    /// Answers DATA with 354 even when no recipient was accepted (RFC 2920 says 554), and hangs
    /// up after the empty text.
    data_without_recipients: bool,
    /// Recipients taken per transaction; beyond it, `452 4.5.3` (RFC 5321 §4.5.3.1.10).
    max_rcpts: Option<usize>,
    /// Reads message text at about this many octets per second.
    read_rate: Option<usize>,
    /// After this many messages on a connection, answers the next MAIL with 421 and closes.
    close_after: Option<usize>,
}

#[derive(Default, Debug)]
struct Seen {
    connections: usize,
    commands: Vec<String>,
    messages: Vec<Vec<u8>>,
}

async fn peer(script: Script) -> (u16, Arc<Mutex<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let script = Arc::new(script);
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            s2.lock().unwrap().connections += 1;
            let seen = s2.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 peer.test ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                let mut taken = 0usize;
                let mut carried = 0usize;
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    seen.lock().unwrap().commands.push(cmd.clone());
                    let verb = cmd
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply: String = match verb.as_str() {
                        "EHLO" if script.ehlo_refused => "502 5.5.1 no EHLO here\r\n".into(),
                        "EHLO" => {
                            let mut s = String::from("250-peer.test\r\n");
                            for e in &script.extensions {
                                s.push_str(&format!("250-{e}\r\n"));
                            }
                            s.push_str("250 HELP\r\n");
                            s
                        }
                        "HELO" => "250 peer.test\r\n".into(),
                        "MAIL" if script.close_after.is_some_and(|n| carried >= n) => {
                            let _ = w.write_all(b"421 4.4.2 peer.test idle too long\r\n").await;
                            return;
                        }
                        "MAIL" => {
                            taken = 0;
                            format!("{}\r\n", script.mail_reply.unwrap_or("250 2.1.0 ok"))
                        }
                        "RCPT" => {
                            let to = cmd
                                .split('<')
                                .nth(1)
                                .and_then(|x| x.split('>').next())
                                .unwrap_or("");
                            match script.rcpt_replies.get(to) {
                                Some(r) => format!("{r}\r\n"),
                                None if script.max_rcpts.is_some_and(|m| taken >= m) => {
                                    "452 4.5.3 Too many recipients\r\n".into()
                                }
                                None => {
                                    taken += 1;
                                    "250 2.1.5 ok\r\n".into()
                                }
                            }
                        }
                        "DATA" => {
                            if taken == 0 && !script.data_without_recipients {
                                w.write_all(b"554 5.5.1 no valid recipients\r\n")
                                    .await
                                    .unwrap();
                                continue;
                            }
                            w.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = Vec::new();
                            let mut since_pause = 0usize;
                            loop {
                                let mut l = Vec::new();
                                r.read_until(b'\n', &mut l).await.unwrap();
                                if let Some(rate) = script.read_rate {
                                    since_pause += l.len();
                                    if since_pause >= rate / 20 {
                                        since_pause = 0;
                                        tokio::time::sleep(std::time::Duration::from_millis(50))
                                            .await;
                                    }
                                }
                                if l == b".\r\n" {
                                    break;
                                }
                                let l = if l.starts_with(b"..") {
                                    l[1..].to_vec()
                                } else {
                                    l
                                };
                                data.extend_from_slice(&l);
                            }
                            if taken == 0 {
                                // The empty text after a DATA without recipients.
                                return;
                            }
                            seen.lock().unwrap().messages.push(data);
                            carried += 1;
                            if script.hang_up_after_data {
                                return;
                            }
                            format!(
                                "{}\r\n",
                                script.end_reply.unwrap_or("250 2.0.0 queued as X1")
                            )
                        }
                        "RSET" if script.hang_up_on_rset => return,
                        "RSET" => {
                            taken = 0;
                            "250 2.0.0 ok\r\n".into()
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
                            return;
                        }
                        _ => "500 5.5.2 what\r\n".into(),
                    };
                    w.write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, seen)
}

fn message(rcpts: &[(&str, Option<Notify>)]) -> QueuedMessage {
    QueuedMessage {
        org_meta: None,
        rowid: 1,
        queue_id: "06H2537EKEP6K1ZQ".into(),
        sender: "alice@example.com".into(),
        params: EnvelopeParams {
            envid: Some("env 1".into()),
            ret: Some(DsnRet::Hdrs),
            body: None,
            smtputf8: false,
        },
        message_id: Some("m@example.com".into()),
        arrival: Utc::now(),
        client_ip: None,
        kind: MessageKind::Normal,
        content_id: 0,
        size: 0,
        frozen: false,
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(i, (a, n))| QueuedRecipient {
                id: i as i64 + 1,
                address: a.to_string(),
                original: a.to_string(),
                orcpt: Some(format!("rfc822;{a}")),
                notify: *n,
                route: Route::Remote,
                state: RcptState::Ready,
                attempts: 0,
                report: ReportState::None,
                delay_reported: false,
                queue: None,
                held: None,
                active_since: None,
            })
            .collect(),
    }
}

struct Rig {
    target: SmtpTarget,
    _ts: TempStore,
}

fn rig(port: u16, f: impl FnOnce(&mut Config)) -> Rig {
    let ts = TempStore::new();
    let mut cfg = config();
    cfg.outbound.smart_host = Some(format!("127.0.0.1:{port}"));
    f(&mut cfg);
    let target = SmtpTarget::new(
        crate::model::LiveConfig::fixed(Arc::new(cfg)),
        Arc::new(StaticResolver::default()),
        ts.dyn_store(),
        crate::org::view::OrgView::new(None),
    );
    Rig { target, _ts: ts }
}

const BODY: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\nend\r\n";

fn statuses(out: &[(i64, Outcome)]) -> Vec<String> {
    out.iter()
        .map(|(_, o)| match o {
            Outcome::Relayed { dsn, .. } => format!("relayed dsn={dsn}"),
            Outcome::Deferred(f) => format!("deferred {}", f.status),
            Outcome::Failed(f) => format!("failed {}", f.status),
            Outcome::Delivered(_) => "delivered".into(),
        })
        .collect()
}

#[tokio::test]
async fn pipelined_delivery_passes_dsn_parameters_on() {
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING", "DSN", "SIZE 100000", "8BITMIME"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[
        ("bob@far.test", Notify::parse("SUCCESS,FAILURE")),
        ("carol@far.test", None),
    ]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["relayed dsn=true", "relayed dsn=true"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages, vec![BODY.to_vec()]);
    let cmds = &seen.commands;
    assert!(
        cmds.contains(&format!(
            "MAIL FROM:<alice@example.com> SIZE={} RET=HDRS ENVID=env+201",
            BODY.len()
        )),
        "{cmds:?}"
    );
    assert!(cmds.contains(
        &"RCPT TO:<bob@far.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@far.test".to_string()
    ));
    assert!(cmds.contains(&"RCPT TO:<carol@far.test> ORCPT=rfc822;carol@far.test".to_string()));
}

#[tokio::test]
async fn without_dsn_or_pipelining_parameters_are_dropped() {
    let (port, seen) = peer(Script::default()).await;
    let r = rig(port, |_| {});
    let m = message(&[("bob@far.test", Notify::parse("SUCCESS"))]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    let seen = seen.lock().unwrap();
    assert!(
        seen.commands
            .contains(&"MAIL FROM:<alice@example.com>".to_string()),
        "{:?}",
        seen.commands
    );
    assert!(seen
        .commands
        .contains(&"RCPT TO:<bob@far.test>".to_string()));
}

#[tokio::test]
async fn each_recipient_gets_its_own_reply() {
    let mut replies = HashMap::new();
    replies.insert("gone@far.test", "550 5.1.1 no such user here");
    replies.insert("busy@far.test", "451 4.2.1 mailbox busy, later");
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING"],
        rcpt_replies: replies,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[
        ("gone@far.test", None),
        ("busy@far.test", None),
        ("ok@far.test", None),
    ]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(
        statuses(&out),
        vec!["failed 5.1.1", "deferred 4.2.1", "relayed dsn=false"]
    );
    let Outcome::Failed(f) = &out[0].1 else {
        panic!()
    };
    assert_eq!(f.diagnostic.as_deref(), Some("550 5.1.1 no such user here"));
    assert_eq!(f.remote_mta.as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.lock().unwrap().messages.len(), 1);
}

#[tokio::test]
async fn refusals_before_and_after_the_text() {
    let (port, _) = peer(Script {
        mail_reply: Some("552 5.3.4 too big for us"),
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[("a@far.test", None), ("b@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.3.4", "failed 5.3.4"]);

    let (port, _) = peer(Script {
        end_reply: Some("451 4.3.0 disk trouble"),
        extensions: vec!["PIPELINING"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["deferred 4.3.0", "deferred 4.3.0"]);
}

#[tokio::test]
async fn what_the_peer_lacks_is_refused_without_sending() {
    let (port, _) = peer(Script {
        extensions: vec!["SIZE 10"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[("a@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.3.4"]);
    let (port, seen) = peer(Script {
        extensions: vec!["SIZE 100000"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let out = r
        .target
        .deliver(
            &m,
            &"Subject: é\r\n\r\nx\r\n".as_bytes(),
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.6.3"]);
    let mut utf8 = message(&[("a@far.test", None)]);
    utf8.params.smtputf8 = true;
    let out = r
        .target
        .deliver(
            &utf8,
            &&b"x\r\n"[..],
            &NextHop::Remote("far.test".into()),
            &utf8.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.6.7"]);
    assert!(!seen
        .lock()
        .unwrap()
        .commands
        .iter()
        .any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn connections_are_reused_up_to_the_limit() {
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |c| c.outbound.max_messages_per_connection = 2);
    let m = message(&[("a@far.test", None)]);
    for _ in 0..3 {
        let out = r
            .target
            .deliver(
                &m,
                &BODY,
                &NextHop::Remote("far.test".into()),
                &m.recipients,
            )
            .await;
        assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 3);
    assert_eq!(
        seen.connections, 2,
        "two messages on the first connection, then a new one"
    );
}

#[tokio::test]
async fn connection_failures_are_transient() {
    // A port nobody listens on.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let r = rig(port, |_| {});
    let m = message(&[("a@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["deferred 4.4.1"]);

    let (port, seen) = peer(Script {
        hang_up_after_data: true,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["deferred 4.4.2"]);
    assert_eq!(seen.lock().unwrap().messages.len(), 1);
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let (port, seen) = peer(Script {
        ehlo_refused: true,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[("a@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    assert!(seen
        .lock()
        .unwrap()
        .commands
        .iter()
        .any(|c| c == "HELO mx.example.com"));
}

#[test]
fn classify_table() {
    let cases = [
        ("250 2.1.5 ok\r\n", "relayed dsn=false"),
        ("550 5.1.1 no\r\n", "failed 5.1.1"),
        ("451 4.3.0 later\r\n", "deferred 4.3.0"),
        // The basic code decides; a mismatched enhanced code is replaced by X.0.0.
        ("450 5.2.2 confused\r\n", "deferred 4.0.0"),
        ("554 transaction failed\r\n", "failed 5.0.0"),
        ("421 4.7.0 go away\r\n", "deferred 4.7.0"),
    ];
    for (reply, want) in cases {
        let (r, _) = parse_response(reply.as_bytes()).unwrap().unwrap();
        let got = statuses(&[(1, classify(&r, "peer.test", "recipient"))]);
        assert_eq!(got, vec![want.to_string()], "{reply:?}");
    }
}

/// Once the peer has answered the end of data, the outcomes stand: a connection that breaks at
/// the RSET after a partly refused transaction must not make the message go out again, neither
/// at once on a fresh connection (the cached one) nor at the next attempt (a fresh one).
#[tokio::test]
async fn duplicate_outbound_delivery_after_a_failed_rset() {
    let mut replies = HashMap::new();
    replies.insert("gone@far.test", "550 5.1.1 no such user here");
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING"],
        rcpt_replies: replies,
        hang_up_on_rset: true,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    // A first message leaves a cached connection behind.
    let warm = message(&[("ok@far.test", None)]);
    let out = r
        .target
        .deliver(
            &warm,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &warm.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    for round in 0..2 {
        let m = message(&[("gone@far.test", None), ("ok@far.test", None)]);
        let out = r
            .target
            .deliver(
                &m,
                &BODY,
                &NextHop::Remote("far.test".into()),
                &m.recipients,
            )
            .await;
        assert_eq!(
            statuses(&out),
            vec!["failed 5.1.1", "relayed dsn=false"],
            "round {round}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().messages.len(),
        3,
        "each message sent exactly once"
    );
}

/// The pipelined sequence: every recipient refused, the peer still says 354 to DATA and hangs
/// up after the empty text. The refusals stand; they are not turned into a retry.
#[tokio::test]
async fn duplicate_outbound_delivery_pipelined_refusals_stand() {
    let mut replies = HashMap::new();
    replies.insert("gone@far.test", "550 5.1.1 no such user here");
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING"],
        rcpt_replies: replies,
        data_without_recipients: true,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[("gone@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.1.1"]);
    assert!(seen.lock().unwrap().messages.is_empty());
}

/// RFC 5321 §4.5.3.2.5 times each block of text: a 16 MB message to a peer that reads 4 MB/s
/// takes four seconds, and must not fail on a block timeout of one and a half.
#[tokio::test]
async fn big_messages_reach_slow_peers() {
    let (port, seen) = peer(Script {
        read_rate: Some(4 << 20),
        ..Default::default()
    })
    .await;
    let r = rig(port, |c| {
        c.outbound.block_timeout = std::time::Duration::from_millis(1500)
    });
    let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n";
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 16 << 20 {
        big.extend_from_slice(line);
    }
    let m = message(&[("a@far.test", None)]);
    let started = std::time::Instant::now();
    let out = r
        .target
        .deliver(
            &m,
            &big.as_slice(),
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    assert!(started.elapsed() > std::time::Duration::from_millis(1500));
    assert_eq!(seen.lock().unwrap().messages, vec![big]);
}

/// A peer that takes two recipients per transaction and answers `452 4.5.3` beyond: the rest go
/// in further transactions at once (RFC 5321 §4.5.3.1.10), not at the next retry.
#[tokio::test]
async fn excess_recipients_go_in_further_transactions_at_once() {
    let (port, seen) = peer(Script {
        extensions: vec!["PIPELINING"],
        max_rcpts: Some(2),
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let addrs = [
        "a@far.test",
        "b@far.test",
        "c@far.test",
        "d@far.test",
        "e@far.test",
    ];
    let rcpts: Vec<_> = addrs.iter().map(|a| (*a, None)).collect();
    let m = message(&rcpts);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    let mut ids: Vec<i64> = out.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "one outcome per recipient");
    assert!(
        statuses(&out).iter().all(|s| s == "relayed dsn=false"),
        "{out:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 3, "2 + 2 + 1 recipients");
    assert_eq!(seen.connections, 1, "all on one connection");
}

/// A peer that puts off every recipient with 452 makes no progress: they wait for the next
/// attempt, deferred with its reply.
#[tokio::test]
async fn excess_recipients_without_progress_are_deferred() {
    let (port, seen) = peer(Script {
        max_rcpts: Some(0),
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let m = message(&[("a@far.test", None), ("b@far.test", None)]);
    let out = r
        .target
        .deliver(
            &m,
            &BODY,
            &NextHop::Remote("far.test".into()),
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["deferred 4.5.3", "deferred 4.5.3"]);
    assert!(seen.lock().unwrap().messages.is_empty());
}

/// A peer that closes a connection it kept idle answers the next MAIL with 421: nothing was
/// sent, so the message goes at once on a fresh connection instead of waiting for a retry.
#[tokio::test]
async fn a_421_on_a_cached_connection_goes_on_a_fresh_one() {
    let (port, seen) = peer(Script {
        close_after: Some(1),
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    for _ in 0..2 {
        let m = message(&[("a@far.test", None)]);
        let out = r
            .target
            .deliver(
                &m,
                &BODY,
                &NextHop::Remote("far.test".into()),
                &m.recipients,
            )
            .await;
        assert_eq!(statuses(&out), vec!["relayed dsn=false"]);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.messages.len(), 2);
    assert_eq!(seen.connections, 2);
}
