//! The queue manager end to end in one process: ingest → delivery → reports, on a real store.

use std::sync::Arc;

use mailroom_proto::smtp::{Notify, RcptParams};
use tokio::sync::{mpsc, watch};

use super::manager::{Manager, QueueHandle};
use crate::config::Config;
use crate::directory::{self, Resolution};
use crate::ids::QueueId;
use crate::ingest::{AcceptedRcpt, Envelope, Ingest};
use crate::queue::EnvelopeParams;
use crate::store::{Store, TrackFilter};
use crate::testutil::{config, TempStore};

struct World {
    ts: TempStore,
    cfg: Arc<Config>,
    ingest: Ingest,
    manager: Arc<Manager>,
    rx: mpsc::UnboundedReceiver<i64>,
    alice: i64,
    bob: i64,
}

async fn world() -> World {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let alice = s.user_add("alice@example.com", None, None).await.unwrap();
    let bob = s
        .user_add("bob@example.com", None, Some(400))
        .await
        .unwrap();
    s.list_add(
        "staff@example.com",
        vec!["alice@example.com".into(), "ghost@example.com".into()],
    )
    .await
    .unwrap();
    let cfg = Arc::new(config());
    let (handle, rx) = QueueHandle::channel();
    let ingest = Ingest::new(ts.dyn_store(), cfg.clone(), handle.clone());
    let manager = Manager::new(ts.dyn_store(), cfg.clone(), handle);
    World {
        ts,
        cfg,
        ingest,
        manager,
        rx,
        alice,
        bob,
    }
}

impl World {
    /// Sends a message as an SMTP session would, returning its queue ID.
    async fn send(&self, from: &str, to: &[(&str, Option<Notify>)], body: &str) -> String {
        let mut rcpts = Vec::new();
        for (addr, notify) in to {
            let Resolution::Targets {
                targets, redirects, ..
            } = directory::resolve(self.ts.store.as_ref(), &self.cfg, addr)
                .await
                .unwrap()
            else {
                panic!("{addr} does not resolve")
            };
            rcpts.push(AcceptedRcpt {
                given: addr.to_string(),
                params: RcptParams {
                    notify: *notify,
                    orcpt: None,
                },
                targets,
                redirects,
            });
        }
        let env = Envelope {
            queue_id: QueueId::generate(),
            sender: from.into(),
            params: EnvelopeParams::default(),
            rcpts,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "client.test".into(),
            protocol: "ESMTP",
        };
        self.ingest
            .accept(env, body.as_bytes().to_vec())
            .await
            .unwrap()
            .to_string()
    }

    /// Processes every announced message until the queue is quiet.
    async fn drain(&mut self) {
        while let Ok(id) = self.rx.try_recv() {
            self.manager.process(id).await.unwrap();
        }
    }

    async fn mailbox(&self, user: i64) -> Vec<String> {
        let s = self.ts.store.as_ref();
        let mut out = Vec::new();
        for m in s.mailbox_list(user).await.unwrap() {
            out.push(String::from_utf8(s.mail_read(user, m.id).await.unwrap()).unwrap());
        }
        out
    }

    async fn events(&self, qid: &str) -> Vec<u16> {
        let f = TrackFilter {
            message_id: Some(qid.into()),
            ..Default::default()
        };
        self.ts
            .store
            .track_query(f)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event.number())
            .collect()
    }
}

#[tokio::test]
async fn local_delivery_adds_return_path_and_delivered_to() {
    let mut w = world().await;
    let qid = w
        .send(
            "carol@other.test",
            &[("alice@example.com", None)],
            "Subject: hi\r\n\r\nhello\r\n",
        )
        .await;
    w.drain().await;
    let mail = w.mailbox(w.alice).await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].starts_with("Return-Path: <carol@other.test>\r\nDelivered-To: alice@example.com\r\nReceived: from client.test"));
    assert!(mail[0].ends_with("Subject: hi\r\n\r\nhello\r\n"));
    assert_eq!(w.events(&qid).await, vec![1019, 1033, 1036, 1028]);
    // Processing again delivers nothing more.
    w.manager.process(1).await.unwrap();
    assert_eq!(w.mailbox(w.alice).await.len(), 1);
}

#[tokio::test]
async fn quota_failure_sends_one_ndr_to_a_local_sender() {
    let mut w = world().await;
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(500));
    let qid = w
        .send(
            "alice@example.com",
            &[("bob@example.com", None), ("staff@example.com", None)],
            &big,
        )
        .await;
    w.drain().await;
    assert!(w.mailbox(w.bob).await.is_empty());
    let mail = w.mailbox(w.alice).await;
    // alice got the message through the list, and one report about bob and ghost.
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let ndr = mail
        .iter()
        .find(|m| m.contains("multipart/report"))
        .expect("an NDR");
    assert!(ndr.starts_with("Return-Path: <>\r\nDelivered-To: alice@example.com\r\n"));
    assert!(ndr.contains("Final-Recipient: rfc822; bob@example.com"));
    assert!(ndr.contains("Status: 5.2.2"));
    assert!(ndr.contains("Final-Recipient: rfc822; ghost@example.com"));
    assert!(ndr.contains("Status: 5.1.1"));
    assert!(ndr.contains("Reporting-MTA: dns; mx.example.com"));
    let ev = w.events(&qid).await;
    assert!(ev.contains(&2001) && ev.contains(&1030), "{ev:?}");
    assert!(w.ts.store.unreported(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn null_sender_failures_are_absorbed() {
    let mut w = world().await;
    let big = format!("Subject: report\r\n\r\n{}\r\n", "x".repeat(500));
    let qid = w.send("", &[("bob@example.com", None)], &big).await;
    w.drain().await;
    assert!(w.mailbox(w.alice).await.is_empty());
    assert_eq!(w.events(&qid).await, vec![1019, 1033, 1036, 2001, 1018]);
    assert!(w.ts.store.ready(0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn notify_never_suppresses_the_report() {
    let mut w = world().await;
    let big = format!("Subject: quiet\r\n\r\n{}\r\n", "x".repeat(500));
    let qid = w
        .send(
            "alice@example.com",
            &[("bob@example.com", Some(Notify::NEVER))],
            &big,
        )
        .await;
    w.drain().await;
    assert!(w.mailbox(w.alice).await.is_empty());
    assert_eq!(w.events(&qid).await, vec![1019, 1033, 1036, 2001, 2002]);
}

#[tokio::test]
async fn a_restarted_manager_resumes_the_queue() {
    let mut w = world().await;
    w.send(
        "carol@other.test",
        &[("alice@example.com", None)],
        "Subject: 1\r\n\r\n1\r\n",
    )
    .await;
    w.send(
        "carol@other.test",
        &[("alice@example.com", None)],
        "Subject: 2\r\n\r\n2\r\n",
    )
    .await;
    while w.rx.try_recv().is_ok() {} // the notifications are lost, as in a crash
    let (handle, rx) = QueueHandle::channel();
    let fresh = Manager::new(w.ts.dyn_store(), w.cfg.clone(), handle);
    let (stop, sd) = watch::channel(false);
    let run = tokio::spawn(fresh.run(rx, sd));
    for _ in 0..200 {
        if w.mailbox(w.alice).await.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    run.await.unwrap();
    assert_eq!(w.mailbox(w.alice).await.len(), 2);
    let _ = w.bob;
}
