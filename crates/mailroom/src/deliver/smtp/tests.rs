//! The outbound client against scripted peers on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use mailroom_proto::smtp::client::parse_response;
use mailroom_proto::smtp::{DsnRet, Notify};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::queue::{EnvelopeParams, MessageKind, RcptState, ReportState, Route};
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
                        "MAIL" => format!("{}\r\n", script.mail_reply.unwrap_or("250 2.1.0 ok")),
                        "RCPT" => {
                            let to = cmd
                                .split('<')
                                .nth(1)
                                .and_then(|x| x.split('>').next())
                                .unwrap_or("");
                            format!(
                                "{}\r\n",
                                script
                                    .rcpt_replies
                                    .get(to)
                                    .copied()
                                    .unwrap_or("250 2.1.5 ok")
                            )
                        }
                        "DATA" => {
                            let accepted = seen
                                .lock()
                                .unwrap()
                                .commands
                                .iter()
                                .rev()
                                .take_while(|c| !c.starts_with("MAIL"))
                                .any(|c| {
                                    c.starts_with("RCPT") && {
                                        let to = c
                                            .split('<')
                                            .nth(1)
                                            .and_then(|x| x.split('>').next())
                                            .unwrap_or("");
                                        !script.rcpt_replies.contains_key(to)
                                    }
                                });
                            if !accepted {
                                w.write_all(b"554 5.5.1 no valid recipients\r\n")
                                    .await
                                    .unwrap();
                                continue;
                            }
                            w.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = Vec::new();
                            loop {
                                let mut l = Vec::new();
                                r.read_until(b'\n', &mut l).await.unwrap();
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
                            seen.lock().unwrap().messages.push(data);
                            if script.hang_up_after_data {
                                return;
                            }
                            format!(
                                "{}\r\n",
                                script.end_reply.unwrap_or("250 2.0.0 queued as X1")
                            )
                        }
                        "RSET" => "250 2.0.0 ok\r\n".into(),
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
        Arc::new(cfg),
        Arc::new(StaticResolver::default()),
        ts.dyn_store(),
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
    assert_eq!(statuses(&out), vec!["failed 5.3.4", "failed 5.3.4"]);

    let (port, _) = peer(Script {
        end_reply: Some("451 4.3.0 disk trouble"),
        extensions: vec!["PIPELINING"],
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
            "Subject: é\r\n\r\nx\r\n".as_bytes(),
            "far.test",
            &m.recipients,
        )
        .await;
    assert_eq!(statuses(&out), vec!["failed 5.6.3"]);
    let mut utf8 = message(&[("a@far.test", None)]);
    utf8.params.smtputf8 = true;
    let out = r
        .target
        .deliver(&utf8, b"x\r\n", "far.test", &utf8.recipients)
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
        let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
    assert_eq!(statuses(&out), vec!["deferred 4.4.1"]);

    let (port, seen) = peer(Script {
        hang_up_after_data: true,
        ..Default::default()
    })
    .await;
    let r = rig(port, |_| {});
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
    let out = r.target.deliver(&m, BODY, "far.test", &m.recipients).await;
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
