//! The queue manager end to end in one process: ingest → delivery → reports, on a real store.

use std::sync::Arc;

use mailroom_proto::smtp::{Notify, RcptParams};
use tokio::sync::{mpsc, watch};

use super::clock::SystemClock;
use super::manager::{Manager, QueueHandle};
use crate::config::Config;
use crate::directory::{self, Resolution};
use crate::ids::QueueId;
use crate::ingest::{AcceptedRcpt, Envelope, Ingest};
use crate::queue::EnvelopeParams;
use crate::route::dns::StaticResolver;
use crate::store::prelude::*;
use crate::store::TrackFilter;
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
    world_with(Arc::new(crate::services::Services::unsupervised())).await
}

async fn world_with(services: Arc<crate::services::Services>) -> World {
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
    let ingest =
        Ingest::new(ts.dyn_store(), cfg.clone(), handle.clone()).with_services(services.clone());
    let manager = Manager::new(
        ts.dyn_store(),
        crate::model::LiveConfig::fixed(cfg.clone()),
        handle,
        Arc::new(SystemClock),
        Arc::new(StaticResolver::default()),
        crate::org::view::OrgView::new(None),
        services,
    );
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
            tls: None,
            user: None,
            headers: Vec::new(),
            checks: None,
            org_meta: None,
        };
        self.ingest
            .accept(
                env,
                crate::store::spool::Received::Memory(body.as_bytes().to_vec()),
            )
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
}

/// A local recipient that takes the queue's path (not delivered with its submission) is
/// delivered once, however often its message is processed.
#[tokio::test]
async fn processing_a_queued_message_again_delivers_nothing_more() {
    let w = world().await;
    let queue_id = QueueId::generate();
    let row =
        w.ts.store
            .submit(crate::queue::NewMessage {
                org_meta: None,
                queue_id,
                sender: "carol@other.test".into(),
                params: EnvelopeParams::default(),
                message_id: None,
                arrival: chrono::Utc::now(),
                client_ip: None,
                kind: crate::queue::MessageKind::Normal,
                content: b"Subject: once\r\n\r\nonce\r\n".to_vec().into(),
                recipients: vec![crate::queue::NewRecipient {
                    address: "alice@example.com".into(),
                    original: "alice@example.com".into(),
                    orcpt: None,
                    notify: None,
                    route: crate::queue::Route::Local { user_id: w.alice },
                    queue: crate::queue::QueueKind::Local,
                    deliver_now: None,
                }],
                events: vec![],
            })
            .await
            .unwrap()
            .rowid;
    let msg =
        w.ts.store
            .queued(row)
            .await
            .unwrap()
            .expect("it waits in the queue");
    // Two attempts from the same (by then stale) state, as two passes over it would make: the
    // store settles the recipient once and skips it the second time.
    let now = chrono::Utc::now();
    w.manager.attempt(&msg, now).await.unwrap();
    w.manager.attempt(&msg, now).await.unwrap();
    w.manager.process(row).await.unwrap();
    assert_eq!(w.mailbox(w.alice).await.len(), 1);
    assert!(
        w.ts.store.queued(row).await.unwrap().is_none(),
        "and has left it"
    );
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
    let (bob, ghost) = ("bob@example.com", "ghost@example.com");
    use crate::testutil::{dsn_field, dsn_message_field};
    assert_eq!(
        dsn_field(ndr.as_bytes(), bob, "Status").as_deref(),
        Some("5.2.2")
    );
    assert_eq!(
        dsn_field(ndr.as_bytes(), bob, "Action").as_deref(),
        Some("failed")
    );
    assert_eq!(
        dsn_field(ndr.as_bytes(), ghost, "Status").as_deref(),
        Some("5.1.1")
    );
    assert_eq!(
        dsn_message_field(ndr.as_bytes(), "Reporting-MTA").as_deref(),
        Some("dns; mx.example.com")
    );
    let ev = w.events(&qid).await;
    assert!(ev.contains(&2001) && ev.contains(&1030), "{ev:?}");
    assert!(w
        .ts
        .store
        .queue_messages(Default::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn null_sender_failures_are_absorbed() {
    let mut w = world().await;
    let big = format!("Subject: report\r\n\r\n{}\r\n", "x".repeat(500));
    let qid = w.send("", &[("bob@example.com", None)], &big).await;
    w.drain().await;
    assert!(w.mailbox(w.alice).await.is_empty());
    assert_eq!(w.events(&qid).await, vec![1019, 1033, 1036, 2001, 1018]);
    assert!(w
        .ts
        .store
        .queue_messages(Default::default())
        .await
        .unwrap()
        .is_empty());
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
    let fresh = Manager::new(
        w.ts.dyn_store(),
        crate::model::LiveConfig::fixed(w.cfg.clone()),
        handle,
        Arc::new(SystemClock),
        Arc::new(StaticResolver::default()),
        crate::org::view::OrgView::new(None),
        Arc::new(crate::services::Services::unsupervised()),
    );
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

mod timers {
    //! Retries, delay reports and expiry, with a clock the test moves.

    use std::sync::Arc;

    use chrono::Duration;
    use mailroom_proto::smtp::{Notify, RcptParams};

    use crate::directory::Target;
    use crate::ids::QueueId;
    use crate::ingest::{AcceptedRcpt, Envelope, Ingest};
    use crate::queue::clock::{Clock, ManualClock};
    use crate::queue::manager::{Manager, QueueHandle};
    use crate::queue::{EnvelopeParams, RcptState};
    use crate::route::dns::StaticResolver;
    use crate::store::prelude::*;
    use crate::store::{QueueFilter, TrackFilter};
    use crate::testutil::{config, TempStore};

    struct Rig {
        ts: TempStore,
        clock: Arc<ManualClock>,
        ingest: Ingest,
        manager: Arc<Manager>,
        rx: tokio::sync::mpsc::UnboundedReceiver<i64>,
        alice: i64,
    }

    async fn rig() -> Rig {
        let ts = TempStore::new();
        let alice = ts
            .store
            .user_add("alice@example.com", None, None)
            .await
            .unwrap();
        // A smart host nobody listens on: every attempt fails to connect.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut cfg = config();
        cfg.outbound.smart_host = Some(format!("127.0.0.1:{port}"));
        cfg.queue.retry_jitter = 0.0;
        let cfg = Arc::new(cfg);
        let clock = Arc::new(ManualClock::new(chrono::SubsecRound::trunc_subsecs(
            chrono::Utc::now(),
            3,
        )));
        let (handle, rx) = QueueHandle::channel();
        let ingest = Ingest::new(ts.dyn_store(), cfg.clone(), handle.clone());
        let manager = Manager::new(
            ts.dyn_store(),
            crate::model::LiveConfig::fixed(cfg),
            handle,
            clock.clone(),
            Arc::new(StaticResolver::default()),
            crate::org::view::OrgView::new(None),
            Arc::new(crate::services::Services::unsupervised()),
        );
        Rig {
            ts,
            clock,
            ingest,
            manager,
            rx,
            alice,
        }
    }

    impl Rig {
        async fn send(&self, notify: Option<Notify>) -> (String, i64) {
            let env = Envelope {
                queue_id: QueueId::generate(),
                sender: "alice@example.com".into(),
                params: EnvelopeParams::default(),
                rcpts: vec![AcceptedRcpt {
                    given: "bob@far.test".into(),
                    params: RcptParams {
                        notify,
                        orcpt: None,
                    },
                    targets: vec![Target::remote("bob@far.test")],
                    redirects: vec![],
                }],
                client_ip: "127.0.0.1".parse().unwrap(),
                helo: "c".into(),
                protocol: "ESMTP",
                tls: None,
                user: None,
                headers: Vec::new(),
                checks: None,
                org_meta: None,
            };
            let qid = self
                .ingest
                .accept(
                    env,
                    crate::store::spool::Received::Memory(
                        b"Subject: far away\r\n\r\nhi\r\n".to_vec(),
                    ),
                )
                .await
                .unwrap();
            let msgs = self
                .ts
                .store
                .queue_messages(QueueFilter {
                    queue_id: Some(qid.to_string()),
                    ..Default::default()
                })
                .await
                .unwrap();
            (qid.to_string(), msgs[0].rowid)
        }

        /// Processes the message and any report it produced.
        async fn run(&mut self, rowid: i64) {
            self.manager.process(rowid).await.unwrap();
            while let Ok(id) = self.rx.try_recv() {
                self.manager.process(id).await.unwrap();
            }
        }

        async fn state(&self, rowid: i64) -> Option<(RcptState, u32)> {
            let m = self.ts.store.queued(rowid).await.unwrap()?;
            Some((m.recipients[0].state.clone(), m.recipients[0].attempts))
        }

        async fn alice_mail(&self) -> Vec<String> {
            let s = self.ts.store.as_ref();
            let mut out = Vec::new();
            for m in s.mailbox_list(self.alice).await.unwrap() {
                out.push(String::from_utf8(s.mail_read(self.alice, m.id).await.unwrap()).unwrap());
            }
            out
        }
    }

    #[tokio::test]
    async fn glitch_retries_then_schedule_then_delay_report_then_expiry() {
        let mut r = rig().await;
        let (qid, row) = r.send(None).await;
        while r.rx.try_recv().is_ok() {}
        let t0 = r.clock.now();
        r.run(row).await;
        let (state, attempts) = r.state(row).await.unwrap();
        let RcptState::Deferred {
            next_attempt,
            last_error,
        } = state
        else {
            panic!("{state:?}")
        };
        assert_eq!(attempts, 1);
        assert_eq!(last_error.status.to_string(), "4.4.1");
        assert_eq!(
            next_attempt - t0,
            Duration::seconds(60),
            "a connection failure is retried after the glitch interval"
        );
        let queues = r.ts.store.queues(r.clock.now()).await.unwrap();
        let link = queues
            .iter()
            .find(|q| q.kind.key().starts_with("link:127.0.0.1"))
            .unwrap();
        assert_eq!((link.state.as_str(), link.messages), ("Retry", 1));
        assert!(link.last_error.as_deref().unwrap().starts_with("4.4.1"));

        // Not due yet: nothing happens.
        r.clock.advance(Duration::seconds(30));
        r.run(row).await;
        assert_eq!(r.state(row).await.unwrap().1, 1);
        // Three glitch retries a minute apart, then the schedule's 10 minutes.
        let mut waits = Vec::new();
        for _ in 0..4 {
            let RcptState::Deferred { next_attempt, .. } = r.state(row).await.unwrap().0 else {
                panic!()
            };
            let now = r.clock.now();
            r.clock.advance(next_attempt - now);
            r.run(row).await;
            let RcptState::Deferred {
                next_attempt: n2, ..
            } = r.state(row).await.unwrap().0
            else {
                panic!()
            };
            waits.push((n2 - r.clock.now()).num_seconds());
        }
        assert_eq!(waits, vec![60, 60, 600, 600]);
        assert!(
            r.alice_mail().await.is_empty(),
            "no report before the delay notification time"
        );

        // After 12 hours: one delay report.
        r.clock.advance(Duration::hours(12));
        r.run(row).await;
        r.clock.advance(Duration::hours(1));
        r.run(row).await;
        let mail = r.alice_mail().await;
        assert_eq!(mail.len(), 1, "exactly one delay report");
        assert!(mail[0].contains("Subject: Delivery delayed: far away"));
        let far = crate::testutil::dsn_blocks(mail[0].as_bytes());
        let rcpt = &far[1];
        let get = |k: &str| rcpt.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("delayed"));
        assert!(get("Will-Retry-Until").is_some(), "{rcpt:?}");

        // After two days: the expiry NDR, which says how long, where, and the last error.
        r.clock.advance(Duration::days(2));
        r.run(row).await;
        assert!(
            r.state(row).await.is_none(),
            "the message has left the queue"
        );
        let mail = r.alice_mail().await;
        assert_eq!(mail.len(), 2);
        let ndr = &mail[1];
        assert!(ndr.contains("Subject: Undeliverable: far away"), "{ndr}");
        let blocks = crate::testutil::dsn_blocks(ndr.as_bytes());
        assert_eq!(blocks.len(), 2, "one recipient: {blocks:?}");
        assert!(
            blocks[1].contains(&("Status".to_string(), "5.4.7".to_string())),
            "{blocks:?}"
        );
        assert!(
            ndr.contains("tried to deliver the message for 2 days"),
            "{ndr}"
        );
        assert!(
            ndr.contains("no mail server for far.test answered"),
            "{ndr}"
        );
        let ev: Vec<u16> =
            r.ts.store
                .track_query(TrackFilter {
                    message_id: Some(qid),
                    ..Default::default()
                })
                .await
                .unwrap()
                .iter()
                .map(|e| e.event.number())
                .collect();
        assert!(ev.starts_with(&[1019, 1033, 1034, 1035]), "{ev:?}");
        assert!(ev.contains(&2003) && ev.ends_with(&[2001, 1030]), "{ev:?}");
    }

    #[tokio::test]
    async fn notify_failure_only_gets_no_delay_report() {
        let mut r = rig().await;
        let (_, row) = r.send(Notify::parse("FAILURE")).await;
        r.run(row).await;
        r.clock.advance(Duration::hours(13));
        r.run(row).await;
        assert!(r.alice_mail().await.is_empty());
        r.clock.advance(Duration::days(2));
        r.run(row).await;
        let mail = r.alice_mail().await;
        let ev =
            r.ts.store
                .track_query(TrackFilter {
                    sender: Some("alice@example.com".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
        assert_eq!(mail.len(), 1, "{ev:#?}");
        let blocks = crate::testutil::dsn_blocks(mail[0].as_bytes());
        assert!(
            blocks[1].contains(&("Status".to_string(), "5.4.7".to_string())),
            "{blocks:?}"
        );
    }

    #[tokio::test]
    async fn frozen_messages_wait_and_retry_brings_them_back() {
        let mut r = rig().await;
        let (qid, row) = r.send(None).await;
        let f = QueueFilter {
            queue_id: Some(qid.clone()),
            ..Default::default()
        };
        let n =
            r.ts.store
                .queue_admin(f.clone(), crate::store::AdminAction::Freeze, "mx".into())
                .await
                .unwrap();
        assert_eq!(n, 1);
        r.run(row).await;
        assert_eq!(
            r.state(row).await.unwrap(),
            (RcptState::Ready, 0),
            "a frozen message is not attempted"
        );
        r.ts.store
            .queue_admin(f.clone(), crate::store::AdminAction::Thaw, "mx".into())
            .await
            .unwrap();
        r.run(row).await;
        assert_eq!(r.state(row).await.unwrap().1, 1);
        r.ts.store
            .queue_admin(f.clone(), crate::store::AdminAction::Retry, "mx".into())
            .await
            .unwrap();
        assert_eq!(r.state(row).await.unwrap().0, RcptState::Ready);
        let n =
            r.ts.store
                .queue_admin(
                    f,
                    crate::store::AdminAction::Delete { ndr: true },
                    "mx".into(),
                )
                .await
                .unwrap();
        assert_eq!(n, 1);
        r.run(row).await;
        let mail = r.alice_mail().await;
        assert_eq!(mail.len(), 1);
        let blocks = crate::testutil::dsn_blocks(mail[0].as_bytes());
        assert!(
            blocks[1].contains(&("Status".to_string(), "5.3.2".to_string())),
            "{blocks:?}"
        );
        assert!(mail[0].contains("deleted from the queue by an administrator"));
        assert!(r.state(row).await.is_none());
    }
}

/// Mail waits, untouched, while a service it needs is not running, and flows once it runs.
#[tokio::test]
async fn mail_waits_for_the_services_it_needs() {
    use crate::services::{Services, State};
    let services = Arc::new(Services::new(&config()));
    for n in crate::config::SERVICES {
        services.set(n, State::Running, None);
    }
    services.set(
        "routing-engine",
        State::Failed,
        Some("local mail needs no route".into()),
    );
    for missing in ["local-delivery"] {
        services.set(missing, State::Failed, Some("broken".into()));
        let mut w = world_with(services.clone()).await;
        w.send(
            "s@example.org",
            &[("alice@example.com", None)],
            "Subject: w\r\n\r\nx\r\n",
        )
        .await;
        let id = w.rx.try_recv().unwrap();
        w.manager.process(id).await.unwrap();
        assert!(
            w.mailbox(w.alice).await.is_empty(),
            "{missing} is not running"
        );
        let queued = w.ts.store.queued(id).await.unwrap().unwrap();
        assert!(
            matches!(queued.recipients[0].state, crate::queue::RcptState::Ready),
            "{missing}: the recipient is untouched: {:?}",
            queued.recipients[0].state
        );
        services.set(missing, State::Running, None);
        w.manager.process(id).await.unwrap();
        assert_eq!(w.mailbox(w.alice).await.len(), 1, "{missing} runs again");
    }
}
