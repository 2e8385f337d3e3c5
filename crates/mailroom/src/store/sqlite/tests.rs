//! Store tests: directory, queue life cycle, mailboxes, content sharing, tracking.

use chrono::Utc;

use crate::ids::QueueId;
use crate::model::{
    EnvelopeParams, MailboxDrop, MessageKind, NewMessage, NewRecipient, RcptState, ReportState,
    Route, Settle,
};
use crate::store::prelude::*;
use crate::store::{AdminAction, DirEntry, QueueFilter, SettledAs, StoreError, TrackFilter};
use crate::testutil::TempStore;
use crate::track::{EventBase, EventId};

fn message(rcpts: Vec<(&str, Route)>, content: &[u8]) -> NewMessage {
    let queue_id = QueueId::generate();
    let base = base(&queue_id.to_string());
    NewMessage {
        org_meta: None,
        queue_id,
        sender: "carol@other.test".into(),
        params: EnvelopeParams::default(),
        message_id: Some("m1@other.test".into()),
        arrival: Utc::now(),
        client_ip: Some("192.0.2.1".into()),
        kind: MessageKind::Normal,
        content: content.to_vec().into(),
        recipients: rcpts
            .into_iter()
            .map(|(a, route)| NewRecipient {
                address: a.into(),
                original: a.into(),
                orcpt: None,
                notify: None,
                queue: match route {
                    Route::Remote => crate::model::QueueKind::Link(crate::route::domain_of(a)),
                    _ => crate::model::QueueKind::Local,
                },
                route,
                deliver_now: None,
            })
            .collect(),
        events: vec![base.event(EventId::SmtpReceived, Some("alice@example.com"))],
    }
}

fn base(qid: &str) -> EventBase {
    EventBase {
        server: "mx.example.com".into(),
        queue_id: qid.into(),
        message_id: Some("m1@other.test".into()),
        sender: "carol@other.test".into(),
        client_ip: None,
        size: None,
    }
}

#[tokio::test]
async fn directory_entries_and_collisions() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let id = s
        .user_add("alice@example.com", Some("h".into()), Some(10))
        .await
        .unwrap();
    assert!(matches!(
        s.user_add("alice@example.com", None, None).await,
        Err(StoreError::Exists(_))
    ));
    s.alias_add("a@example.com", vec!["alice@example.com".into()])
        .await
        .unwrap();
    assert!(matches!(
        s.list_add("a@example.com", vec!["x@y.test".into()]).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        s.user_add("a@example.com", None, None).await,
        Err(StoreError::Exists(_))
    ));
    let Some(DirEntry::User(u)) = s.lookup("alice@example.com").await.unwrap() else {
        panic!()
    };
    assert_eq!((u.id, u.quota), (id, Some(10)));
    assert_eq!(
        s.lookup("a@example.com").await.unwrap(),
        Some(DirEntry::Alias(vec!["alice@example.com".into()]))
    );
    assert_eq!(s.lookup("nobody@example.com").await.unwrap(), None);
    let (u, h) = s.user_auth("alice@example.com").await.unwrap().unwrap();
    assert_eq!((u.address.as_str(), h.as_str()), ("alice@example.com", "h"));
    s.list_add("l@example.com", vec!["b@x.test".into(), "a@x.test".into()])
        .await
        .unwrap();
    s.list_del("l@example.com", vec!["a@x.test".into()])
        .await
        .unwrap();
    assert_eq!(
        s.list_list().await.unwrap(),
        vec![("l@example.com".to_string(), vec!["b@x.test".to_string()])]
    );
    s.alias_del("a@example.com").await.unwrap();
    assert!(matches!(
        s.alias_del("a@example.com").await,
        Err(StoreError::NotFound(_))
    ));
    s.user_quota("alice@example.com", None).await.unwrap();
    s.user_passwd("alice@example.com", "h2".into())
        .await
        .unwrap();
    assert_eq!(s.user_list().await.unwrap()[0].quota, None);
}

#[tokio::test]
async fn queue_life_cycle_shares_content_and_is_idempotent() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let alice = s.user_add("alice@example.com", None, None).await.unwrap();
    let bob = s.user_add("bob@example.com", None, None).await.unwrap();
    let msg = message(
        vec![
            ("alice@example.com", Route::Local { user_id: alice }),
            ("bob@example.com", Route::Local { user_id: bob }),
        ],
        b"Subject: x\r\n\r\nbody\r\n",
    );
    let qid = msg.queue_id.to_string();
    let row = s.submit(msg).await.unwrap().rowid;
    let q = s.queued(row).await.unwrap().unwrap();
    assert_eq!(q.recipients.len(), 2);
    assert!(q.recipients.iter().all(|r| r.state == RcptState::Ready));
    let drop = |u, a: &str| {
        Settle::local(MailboxDrop {
            user_id: u,
            prefix: format!("Delivered-To: {a}\r\n").into_bytes(),
        })
    };
    let (r1, r2) = (q.recipients[0].id, q.recipients[1].id);
    let out = s
        .settle(
            row,
            base(&qid),
            vec![(r1, drop(alice, "alice@example.com"))],
        )
        .await
        .unwrap();
    assert_eq!(out, vec![(r1, SettledAs::Delivered)]);
    // Settling again is harmless.
    let out = s
        .settle(
            row,
            base(&qid),
            vec![(r1, drop(alice, "alice@example.com"))],
        )
        .await
        .unwrap();
    assert_eq!(out, vec![(r1, SettledAs::AlreadySettled)]);
    assert_eq!(s.mailbox_list(alice).await.unwrap().len(), 1);
    s.settle(row, base(&qid), vec![(r2, drop(bob, "bob@example.com"))])
        .await
        .unwrap();
    // Every recipient settled: the message has left the queue, its content lives on in mailboxes.
    assert!(s.queued(row).await.unwrap().is_none());
    let mail = s.mailbox_list(bob).await.unwrap();
    let text = s.mail_read(bob, mail[0].id).await.unwrap();
    assert_eq!(
        text,
        b"Delivered-To: bob@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    );
    assert_eq!(mail[0].size as usize, text.len());
    // A user cannot read another's mail.
    assert!(s.mail_read(alice, mail[0].id).await.is_err());
    assert_eq!(s.mail_delete(bob, vec![mail[0].id]).await.unwrap(), 1);
    let alice_copy = s
        .mail_read(alice, s.mailbox_list(alice).await.unwrap()[0].id)
        .await
        .unwrap();
    assert_eq!(
        alice_copy,
        b"Delivered-To: alice@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    );
    let a = s.mailbox_list(alice).await.unwrap();
    s.mail_delete(alice, vec![a[0].id]).await.unwrap();
    let contents: i64 = rusqlite::Connection::open(ts.store.path_for_tests())
        .unwrap()
        .query_row("SELECT count(*) FROM contents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contents, 0, "content is freed with its last reference");
    let ev = s
        .track_query(TrackFilter {
            message_id: Some(format!("<{qid}>")),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<u16> = ev.iter().map(|e| e.event.number()).collect();
    assert_eq!(ids, vec![1019, 1028, 1028]);
}

#[tokio::test]
async fn quota_turns_delivery_into_failure_and_reports_finish_the_message() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let bob = s.user_add("bob@example.com", None, Some(10)).await.unwrap();
    let msg = message(
        vec![("bob@example.com", Route::Local { user_id: bob })],
        b"Subject: too big\r\n\r\n",
    );
    let qid = msg.queue_id.to_string();
    let row = s.submit(msg).await.unwrap().rowid;
    let r = s.queued(row).await.unwrap().unwrap().recipients[0].id;
    let drop = Settle::local(MailboxDrop {
        user_id: bob,
        prefix: Vec::new(),
    });
    let out = s.settle(row, base(&qid), vec![(r, drop)]).await.unwrap();
    assert!(matches!(&out[0].1, SettledAs::Failed { status, .. } if status == "5.2.2"));
    let l = s.due(Utc::now(), Utc::now(), 0, 10).await.unwrap();
    let (q, bad) = (l.messages, l.unreadable);
    assert!(bad.is_empty());
    assert_eq!(q.len(), 1);
    assert!(
        matches!(&q[0].recipients[0].state, RcptState::Failed { failure, .. } if failure.status.to_string() == "5.2.2")
    );
    assert_eq!(q[0].recipients[0].report, ReportState::Pending);
    s.record_reports(row, vec![(r, ReportState::Absorbed)], vec![], None, vec![])
        .await
        .unwrap();
    assert!(s.queued(row).await.unwrap().is_none());
    assert!(s
        .due(Utc::now(), Utc::now(), 0, 10)
        .await
        .unwrap()
        .messages
        .is_empty());
    assert!(s.mailbox_list(bob).await.unwrap().is_empty());
}

#[tokio::test]
async fn user_with_mail_is_deleted_only_with_purge() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let msg = message(
        vec![("u@example.com", Route::Local { user_id: u })],
        b"x\r\n",
    );
    let qid = msg.queue_id.to_string();
    let row = s.submit(msg).await.unwrap().rowid;
    let r = s.queued(row).await.unwrap().unwrap().recipients[0].id;
    s.settle(
        row,
        base(&qid),
        vec![(
            r,
            Settle::local(MailboxDrop {
                user_id: u,
                prefix: vec![],
            }),
        )],
    )
    .await
    .unwrap();
    assert!(matches!(
        s.user_del("u@example.com", false).await,
        Err(StoreError::Conflict(_))
    ));
    s.user_del("u@example.com", true).await.unwrap();
    assert_eq!(s.lookup("u@example.com").await.unwrap(), None);
}

/// Holds the writer inside a transaction until the returned sender is dropped or sent to, so
/// that the writes made meanwhile queue up and are committed together as one batch.
fn hold_writer(s: &crate::store::sqlite::SqliteStore) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let (started, wait_started) = std::sync::mpsc::channel::<()>();
    let started = std::sync::Mutex::new(started);
    drop(s.write(move |_| {
        if let Ok(tx) = started.lock() {
            let _ = tx.send(());
        }
        if let Ok(rx) = held.lock() {
            let _ = rx.recv();
        }
        Ok(())
    }));
    wait_started.recv().unwrap();
    release
}

#[tokio::test]
async fn concurrent_writes_share_commits() {
    let ts = TempStore::new();
    let store = ts.dyn_store();
    let u = store.user_add("u@example.com", None, None).await.unwrap();
    let before = ts.store.commits();
    let release = hold_writer(&ts.store);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let m = message(
                vec![("u@example.com", Route::Local { user_id: u })],
                format!("n{i}\r\n").as_bytes(),
            );
            s.submit(m).await.unwrap().rowid
        }));
    }
    // Let every submission reach the writer's queue while it is held.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(release);
    let mut rows = Vec::new();
    for t in tasks {
        rows.push(t.await.unwrap());
    }
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 200);
    assert_eq!(
        store
            .queue_messages(Default::default())
            .await
            .unwrap()
            .len(),
        200
    );
    // The held job's transaction, then the 200 submissions in one or two batches (MAX_BATCH).
    let commits = ts.store.commits() - before;
    assert!(commits <= 3, "200 submissions took {commits} commits");
}

/// "A job that fails writes nothing", by construction: a job that writes and then fails is
/// rolled back with its batch, and the other jobs of that batch are committed without it.
#[tokio::test]
async fn the_commit_contract_a_failed_job_writes_nothing() {
    let ts = TempStore::new();
    let release = hold_writer(&ts.store);
    let add = |addr: &'static str, fail: bool| {
        ts.store.write(move |c| {
            super::directory::user_add(c, addr, None, None)?;
            if fail {
                return Err(StoreError::Conflict(format!(
                    "{addr} refused after writing"
                )));
            }
            Ok(())
        })
    };
    let (a, b, c) = (
        add("a@example.com", false),
        add("b@example.com", true),
        add("c@example.com", false),
    );
    let before = ts.store.commits();
    drop(release);
    let (a, b, c) = tokio::join!(a, b, c);
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
    let s = ts.store.as_ref();
    assert!(s.lookup("a@example.com").await.unwrap().is_some());
    assert!(s.lookup("c@example.com").await.unwrap().is_some());
    assert_eq!(s.lookup("b@example.com").await.unwrap(), None);
    assert_eq!(
        ts.store.commits() - before,
        2,
        "the held job, then one batch"
    );
}

/// The case: a submission (a message with its report) fails part way, and the client
/// will be told `451` and send again. Nothing of the first attempt may stay, or the recipients
/// would get it twice.
#[tokio::test]
async fn the_commit_contract_a_failed_submission_leaves_no_message() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let ok = s.user_add("ok@example.com", None, None).await.unwrap();
    let broken = s.user_add("broken@example.com", None, None).await.unwrap();
    // A damaged directory: this user's INBOX is gone.
    rusqlite::Connection::open(ts.store.path_for_tests())
        .unwrap()
        .execute("DELETE FROM mailboxes WHERE user_id = ?1", [broken])
        .unwrap();
    let drop_for = |user_id| {
        Some(MailboxDrop {
            user_id,
            prefix: Vec::new(),
        })
    };
    let mut first = message(
        vec![("ok@example.com", Route::Local { user_id: ok })],
        b"first\r\n",
    );
    first.recipients[0].deliver_now = drop_for(ok);
    let mut second = message(
        vec![("broken@example.com", Route::Local { user_id: broken })],
        b"second\r\n",
    );
    second.recipients[0].deliver_now = drop_for(broken);
    let qid = first.queue_id.to_string();
    let r = s.submit_batch(vec![first, second]).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert!(
        s.mailbox_list(ok).await.unwrap().is_empty(),
        "no copy delivered"
    );
    assert!(s
        .queue_messages(Default::default())
        .await
        .unwrap()
        .is_empty());
    let ev = s
        .track_query(TrackFilter {
            message_id: Some(qid),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ev.is_empty(), "no tracking of what did not happen: {ev:?}");
}

/// Mail to the wrong person: a queued recipient names its mailbox by user ID. After `user del`,
/// a new user must not get that ID, or the deleted user's mail would reach them.
#[tokio::test]
async fn mail_to_the_wrong_person_user_ids_are_never_reused() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    s.user_add("first@example.com", None, None).await.unwrap();
    let alice = s.user_add("alice@example.com", None, None).await.unwrap();
    let msg = message(
        vec![("alice@example.com", Route::Local { user_id: alice })],
        b"for alice\r\n",
    );
    let qid = msg.queue_id.to_string();
    let row = s.submit(msg).await.unwrap().rowid;
    let r = s.queued(row).await.unwrap().unwrap().recipients[0].id;
    s.user_del("alice@example.com", false).await.unwrap();
    let mallory = s.user_add("mallory@example.com", None, None).await.unwrap();
    assert_ne!(mallory, alice, "a deleted user's ID is never given again");
    let drop = Settle::local(MailboxDrop {
        user_id: alice,
        prefix: Vec::new(),
    });
    let out = s.settle(row, base(&qid), vec![(r, drop)]).await.unwrap();
    assert!(
        matches!(&out[0].1, SettledAs::Failed { status, .. } if status == "5.1.1"),
        "{out:?}"
    );
    assert!(s.mailbox_list(mallory).await.unwrap().is_empty());
    let q = s.queued(row).await.unwrap().unwrap();
    assert_eq!(
        q.recipients[0].report,
        ReportState::Pending,
        "the sender is told"
    );
}

/// A version 2 store (IDs could be reused) is migrated: every user, mailbox and message stays,
/// and new IDs start above every ID still in use, queued recipients' included.
#[tokio::test]
async fn mail_to_the_wrong_person_a_version_2_store_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let gone = {
        let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
        let keep = s.user_add("keep@example.com", None, None).await.unwrap();
        let gone = s.user_add("gone@example.com", None, None).await.unwrap();
        let mut m = message(
            vec![("keep@example.com", Route::Local { user_id: keep })],
            b"kept\r\n",
        );
        m.recipients[0].deliver_now = Some(MailboxDrop {
            user_id: keep,
            prefix: Vec::new(),
        });
        s.submit(m).await.unwrap();
        let m = message(
            vec![("gone@example.com", Route::Local { user_id: gone })],
            b"queued\r\n",
        );
        s.submit(m).await.unwrap();
        s.user_del("gone@example.com", false).await.unwrap();
        gone
    };
    // Back to version 2 as it was shipped: `users` without AUTOINCREMENT.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            &[
                "PRAGMA foreign_keys=OFF;",
                UNDO_3_TO_14,
                "CREATE TABLE users_old (id INTEGER PRIMARY KEY, address TEXT NOT NULL UNIQUE,
                 password TEXT, quota INTEGER, used INTEGER NOT NULL DEFAULT 0,
                 messages INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
             INSERT INTO users_old SELECT * FROM users;
             DROP TABLE users;
             ALTER TABLE users_old RENAME TO users;
             DELETE FROM sqlite_sequence WHERE name = 'users';
             ",
                "UPDATE meta SET value = '2' WHERE key = 'schema_version';",
            ]
            .concat(),
        )
        .unwrap();
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let new = s.user_add("new@example.com", None, None).await.unwrap();
    assert!(new > gone, "new ID {new} must be above the queued {gone}");
    let Some(DirEntry::User(keep)) = s.lookup("keep@example.com").await.unwrap() else {
        panic!("the user survived the migration")
    };
    let mail = s.mailbox_list(keep.id).await.unwrap();
    assert_eq!(mail.len(), 1, "the mailbox survived the migration");
    assert_eq!(s.mail_read(keep.id, mail[0].id).await.unwrap(), b"kept\r\n");
    assert_eq!(s.queue_messages(Default::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unreadable_records_are_quarantined_and_the_rest_flows() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let good = s
        .submit(message(
            vec![("u@example.com", Route::Local { user_id: u })],
            b"good\r\n",
        ))
        .await
        .unwrap()
        .rowid;
    let bad = message(
        vec![("u@example.com", Route::Local { user_id: u })],
        b"bad\r\n",
    );
    let bad_qid = bad.queue_id.to_string();
    let bad = s.submit(bad).await.unwrap().rowid;
    rusqlite::Connection::open(ts.store.path_for_tests())
        .unwrap()
        .execute(
            "UPDATE queue_rcpt SET state = 'bogus' WHERE msg = ?1",
            [bad],
        )
        .unwrap();
    let now = Utc::now();
    let l = s.due(now, now, 0, 10).await.unwrap();
    assert_eq!(
        l.messages.iter().map(|m| m.rowid).collect::<Vec<_>>(),
        vec![good]
    );
    // The start-up sweep finds it.
    let unreadable = s.suspects().await.unwrap().unreadable;
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].0, bad);
    assert!(unreadable[0].1.contains("bad state"), "{}", unreadable[0].1);
    s.quarantine(bad, unreadable[0].1.clone(), "mx".into())
        .await
        .unwrap();
    let q = s.quarantined().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].queue_id.as_deref(), Some(bad_qid.as_str()));
    assert!(q[0].record.contains("bogus"));
    assert!(s.suspects().await.unwrap().unreadable.is_empty());
    let ev = s
        .track_query(TrackFilter {
            message_id: Some(bad_qid),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ev.last().unwrap().event, EventId::Quarantined);
}

/// A damaged time is not read as 1970 (which would expire the message at once, or retry it
/// for ever): the record is unreadable, found by the start-up sweep and by `due`, and
/// quarantined, while the rest of the queue flows. A value of the wrong type likewise.
#[tokio::test]
async fn corrupt_timestamps_are_quarantined_not_read_as_1970() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let mut rows = Vec::new();
    for body in ["good", "arrival 1970", "arrival text", "next attempt huge"] {
        let m = message(
            vec![("u@example.com", Route::Local { user_id: u })],
            format!("{body}\r\n").as_bytes(),
        );
        rows.push(s.submit(m).await.unwrap().rowid);
    }
    let db = rusqlite::Connection::open(ts.store.path_for_tests()).unwrap();
    db.execute("UPDATE queue SET arrival = 5 WHERE id = ?1", [rows[1]])
        .unwrap();
    db.execute("UPDATE queue SET arrival = 'soon' WHERE id = ?1", [rows[2]])
        .unwrap();
    db.execute(
        "UPDATE queue_rcpt SET state = 'deferred', status = '4.4.1', next_attempt = 9223372036854775807
         WHERE msg = ?1",
        [rows[3]],
    )
    .unwrap();
    let found = s.suspects().await.unwrap();
    let mut bad: Vec<i64> = found.unreadable.iter().map(|(id, _)| *id).collect();
    bad.sort();
    assert_eq!(bad, rows[1..].to_vec(), "{:?}", found.unreadable);
    assert!(found
        .unreadable
        .iter()
        .any(|(_, why)| why.contains("arrival")));
    // `due` reads them apart too (were the sweep to miss one), and the good one flows.
    let now = Utc::now();
    let l = s.due(now, now, 0, 10).await.unwrap();
    assert_eq!(
        l.messages.iter().map(|m| m.rowid).collect::<Vec<_>>(),
        vec![rows[0]]
    );
    assert!(l.unreadable.iter().any(|(id, _)| *id == rows[1]));
    for (id, why) in found.unreadable {
        s.quarantine(id, why, "mx".into()).await.unwrap();
    }
    assert_eq!(s.quarantined().await.unwrap().len(), 3);
}

#[tokio::test]
async fn queue_viewer_figures() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    s.submit(message(
        vec![("u@example.com", Route::Local { user_id: u })],
        b"1234\r\n",
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        s.submit(message(vec![("x@a.test", Route::Remote)], b"12\r\n"))
            .await
            .unwrap();
    }
    s.submit(message(
        vec![("y@b.test", Route::Remote), ("z@b.test", Route::Remote)],
        b"1\r\n",
    ))
    .await
    .unwrap();
    let qs = s.queues(Utc::now()).await.unwrap();
    let get = |k: &str| qs.iter().find(|q| q.kind.key() == k).unwrap().clone();
    assert_eq!(
        (
            get("local").messages,
            get("local").size,
            get("local").state.as_str()
        ),
        (1, 6, "Ready")
    );
    assert_eq!(
        (
            get("link:a.test").messages,
            get("link:a.test").recipients,
            get("link:a.test").size
        ),
        (3, 3, 12)
    );
    assert_eq!(
        (get("link:b.test").messages, get("link:b.test").recipients),
        (1, 2)
    );
    assert_eq!(get("retry").state.as_str(), "Empty");
    let sum = s.queue_summary(Utc::now()).await.unwrap();
    let rows: Vec<(String, u64, u64)> = sum
        .iter()
        .map(|r| (r.domain.clone(), r.total, r.buckets[0]))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a.test".into(), 3, 3),
            ("b.test".into(), 2, 2),
            ("example.com".into(), 1, 1)
        ]
    );
    let f = QueueFilter {
        domain: Some("a.test".into()),
        ..Default::default()
    };
    assert_eq!(s.queue_messages(f.clone()).await.unwrap().len(), 3);
    assert_eq!(
        s.queue_admin(f.clone(), AdminAction::Freeze, "mx".into())
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.queue_admin(f.clone(), AdminAction::Freeze, "mx".into())
            .await
            .unwrap(),
        0,
        "already frozen"
    );
    let qs = s.queues(Utc::now()).await.unwrap();
    assert_eq!(
        qs.iter()
            .find(|q| q.kind.key() == "link:a.test")
            .unwrap()
            .state
            .as_str(),
        "Frozen"
    );
    assert_eq!(
        s.queue_admin(f.clone(), AdminAction::Delete { ndr: false }, "mx".into())
            .await
            .unwrap(),
        3
    );
    assert!(s.queue_messages(f).await.unwrap().is_empty());
}

/// The trigger-kept queue figures agree with a count from scratch after every kind of move.
#[tokio::test]
async fn queue_stats_match_a_recount() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let recount = || {
        let c = rusqlite::Connection::open(ts.store.path_for_tests()).unwrap();
        let figures = |sql: &str| -> Vec<(String, i64, i64, i64)> {
            c.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let brute = figures(
            "SELECT r.queue, count(*), count(DISTINCT r.msg),
                    (SELECT sum(size) FROM queue WHERE id IN (SELECT msg FROM queue_rcpt WHERE queue = r.queue))
             FROM queue_rcpt r WHERE r.queue IS NOT NULL GROUP BY r.queue ORDER BY r.queue",
        );
        let kept = figures(
            "SELECT queue, recipients, messages, size FROM queue_stats WHERE recipients != 0 ORDER BY queue",
        );
        assert_eq!(kept, brute);
    };
    let mut rows = Vec::new();
    for i in 0..6 {
        let m = message(
            vec![
                ("a@one.test", Route::Remote),
                ("b@one.test", Route::Remote),
                ("c@two.test", Route::Remote),
            ],
            format!("body {i}\r\n").as_bytes(),
        );
        let qid = m.queue_id.to_string();
        rows.push((s.submit(m).await.unwrap().rowid, qid));
    }
    recount();
    let fail =
        |reason: &str| crate::model::Failure::new(mailroom_proto::smtp::Status::NO_ANSWER, reason);
    for (i, (row, qid)) in rows.iter().enumerate() {
        let rcpts = s.queued(*row).await.unwrap().unwrap().recipients;
        let settles = match i % 3 {
            0 => vec![(
                rcpts[0].id,
                Settle::Deferred {
                    failure: fail("down"),
                    next_attempt: Utc::now(),
                    queue: crate::model::QueueKind::Link("relay.test:25".into()),
                },
            )],
            1 => vec![(
                rcpts[1].id,
                Settle::Failed(crate::model::Failure::new(
                    mailroom_proto::smtp::Status::NO_SUCH_MAILBOX,
                    "no",
                )),
            )],
            _ => vec![(
                rcpts[2].id,
                Settle::Delivered {
                    drop: None,
                    remote_mta: Some("mx".into()),
                    relayed: false,
                    report: false,
                    tls: None,
                },
            )],
        };
        s.settle(*row, base(qid), settles).await.unwrap();
        recount();
    }
    for (domain, ndr) in [("two.test", true), ("one.test", false)] {
        let f = QueueFilter {
            domain: Some(domain.into()),
            ..Default::default()
        };
        s.queue_admin(f, AdminAction::Delete { ndr }, "mx".into())
            .await
            .unwrap();
        recount();
    }
}

#[tokio::test]
async fn a_version_1_store_is_migrated_and_its_tracking_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let qid = {
        let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
        let u = s.user_add("u@example.com", None, None).await.unwrap();
        let m = message(
            vec![("u@example.com", Route::Local { user_id: u })],
            b"Subject: s\r\n\r\nx\r\n",
        );
        let qid = m.queue_id.to_string();
        s.submit(m).await.unwrap();
        qid
    };
    // Back to version 1 as it was shipped: three indexes on `track`, no `track_keys`.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            &[
                "DROP TABLE track_keys;
             ",
                UNDO_3_TO_14,
                "CREATE INDEX track_message_id ON track (message_id);
             CREATE INDEX track_sender ON track (sender COLLATE NOCASE);
             CREATE INDEX track_recipient ON track (recipient COLLATE NOCASE);
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
            ]
            .concat(),
        )
        .unwrap();
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let ev = s
        .track_query(TrackFilter {
            sender: Some("Carol@Other.test".into()),
            message_id: Some("<m1@other.test>".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!ev.is_empty());
    assert!(ev.iter().all(|e| e.queue_id == qid));
    let version: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, crate::store::sqlite::schema::VERSION.to_string());
    // Migration 9 -> 10 cut each content's header block as the code does.
    let blocks: Vec<(Vec<u8>, Vec<u8>)> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT data, header FROM contents JOIN content_headers ON content_id = id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blocks.len(), 1);
    for (data, header) in blocks {
        assert_eq!(header, mailroom_proto::imap::mime::header_block(&data));
        assert_eq!(header, b"Subject: s\r\n\r\n");
    }
    drop(s);
    // A newer store than this code knows is refused, not misread.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [(crate::store::sqlite::schema::VERSION + 1).to_string()],
        )
        .unwrap();
    let err = crate::store::sqlite::SqliteStore::open(&path)
        .err()
        .unwrap();
    let newer = format!("version {}", crate::store::sqlite::schema::VERSION + 1);
    assert!(err.to_string().contains(&newer), "{err}");
}

/// A store whose log is bounded at 1 MiB (trimmed to `trim_bytes`), with the user `u@example.com`.
async fn small_log_store(
    dir: &std::path::Path,
    trim_bytes: u64,
    catch_up_wait: std::time::Duration,
) -> (std::sync::Arc<crate::store::sqlite::SqliteStore>, i64) {
    let bounds = crate::store::sqlite::LogBounds {
        trim_bytes,
        hard_bytes: 1 << 20,
        catch_up_wait,
    };
    let s = crate::store::sqlite::SqliteStore::open_with(&dir.join("t.db"), bounds).unwrap();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    (s, u)
}

/// Submits `n` messages of 10 KB for the user, one after another.
async fn submit_10k(s: &crate::store::sqlite::SqliteStore, user_id: i64, n: usize) {
    let body = vec![b'x'; 10 * 1024];
    for _ in 0..n {
        let m = message(vec![("u@example.com", Route::Local { user_id })], &body);
        s.submit(m).await.unwrap();
    }
}

fn log_size(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("t.db-wal")).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stays_bounded_when_writes_outrun_the_checkpointer() {
    // 12 MB of messages in a burst, against a log bound of 1 MiB: the background checkpointer
    // (every 200 ms, restarting the log only past 64 MiB) cannot keep the log short; the writer
    // must hold commits back until the log is copied.
    let dir = tempfile::tempdir().unwrap();
    let (s, u) = small_log_store(dir.path(), 512 << 10, std::time::Duration::from_secs(10)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.spawn(async move { submit_10k(&s, u, 150).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let queued: i64 = rusqlite::Connection::open(dir.path().join("t.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM queue", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 1200);
    // The bound, plus what one batch (at most eight messages here) adds before the check.
    let wal = log_size(dir.path());
    assert!(wal < 2 << 20, "the log grew to {wal} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_pinning_the_log_delays_writes_once_not_at_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, u) =
        small_log_store(dir.path(), 256 << 10, std::time::Duration::from_millis(300)).await;
    // A reader in a long transaction pins the log: no checkpoint can copy past its snapshot.
    let reader = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM users;")
        .unwrap();
    let t = std::time::Instant::now();
    submit_10k(&s, u, 300).await; // about 3 MB, one commit each: past the bound twice over
    let waited = t.elapsed();
    // Each failed catch-up raises the bound by another MiB, so the writer waits (300 ms) two or
    // three times; waiting at each of the ~200 commits past the first MiB would take a minute.
    assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
    let pinned = log_size(dir.path());
    assert!(pinned > 2 << 20, "the log was pinned at {pinned} bytes");
    // The reader lets go: the next catch-up copies the log, and it starts again, trimmed.
    reader.execute_batch("COMMIT").unwrap();
    submit_10k(&s, u, 150).await;
    let wal = log_size(dir.path());
    assert!(
        wal < 2 << 20,
        "the log is {wal} bytes after the reader let go"
    );
}

/// A spool file is deleted only once the release of its content has committed. Here the last
/// copy of a spooled message is deleted in a batch that is then rolled back (two engine
/// failures fail the whole batch), while spool collection runs: the file must survive, since
/// the message is still there.
#[tokio::test]
async fn spool_files_of_a_rolled_back_release_are_kept() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let name = QueueId::generate().to_string();
    std::fs::write(
        ts.store.spool().path(&name),
        b"Subject: big\r\n\r\nbody\r\n",
    )
    .unwrap();
    let mut m = message(vec![("u@example.com", Route::Local { user_id: u })], b"");
    m.content = crate::model::Content::Spooled {
        prefix: b"Received: x\r\n".to_vec(),
        file: crate::model::SpooledFile {
            name: name.clone(),
            size: 22,
            eight_bit: false,
        },
    };
    m.recipients[0].deliver_now = Some(MailboxDrop {
        user_id: u,
        prefix: Vec::new(),
    });
    s.submit(m).await.unwrap();
    let mail = s.mailbox_list(u).await.unwrap()[0].id;
    let release = hold_writer(&ts.store);
    let delete = s.mail_delete(u, vec![mail]);
    let collect = s.collect_spool();
    let engine = |_: &rusqlite::Connection| -> Result<(), StoreError> {
        Err(StoreError::Engine("injected failure".into()))
    };
    let (f1, f2) = (ts.store.write(engine), ts.store.write(engine));
    drop(release);
    let (deleted, collected, _, _) = tokio::join!(delete, collect, f1, f2);
    assert!(deleted.is_err(), "the batch was rolled back: {deleted:?}");
    let _ = collected;
    assert!(
        ts.store.spool().path(&name).exists(),
        "the file of a message still there"
    );
    assert_eq!(
        s.mail_read(u, mail).await.unwrap(),
        b"Received: x\r\nSubject: big\r\n\r\nbody\r\n"
    );
}

/// `queue retry <queue>` retries the recipients waiting in that queue, not the message's others.
#[tokio::test]
async fn retrying_a_queue_retries_only_its_recipients() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let m = message(
        vec![("a@one.test", Route::Remote), ("b@two.test", Route::Remote)],
        b"x\r\n",
    );
    let qid = m.queue_id.to_string();
    let row = s.submit(m).await.unwrap().rowid;
    let rcpts = s.queued(row).await.unwrap().unwrap().recipients;
    let later = Utc::now() + chrono::Duration::hours(1);
    let defer = |q: &str| Settle::Deferred {
        failure: crate::model::Failure::new(mailroom_proto::smtp::Status::NO_ANSWER, "down"),
        next_attempt: later,
        queue: crate::model::QueueKind::Link(q.into()),
    };
    s.settle(
        row,
        base(&qid),
        vec![
            (rcpts[0].id, defer("one.test")),
            (rcpts[1].id, defer("two.test")),
        ],
    )
    .await
    .unwrap();
    let f = QueueFilter {
        queue: Some(crate::model::QueueKind::Link("one.test".into())),
        ..Default::default()
    };
    assert_eq!(
        s.queue_admin(f, AdminAction::Retry, "mx".into())
            .await
            .unwrap(),
        1
    );
    let states: Vec<_> = s
        .queued(row)
        .await
        .unwrap()
        .unwrap()
        .recipients
        .iter()
        .map(|r| r.state.name())
        .collect();
    assert_eq!(states, vec!["ready", "deferred"]);
}

/// The checksums move with the mail and with nothing else (what `repair` prints to prove it
/// touched no mail).
#[tokio::test]
async fn checksums_follow_the_mail_and_only_the_mail() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let empty = s.mail_digests().await.unwrap().checksums();
    let row = s
        .submit(message(
            vec![("u@example.com", Route::Local { user_id: u })],
            b"queued\r\n",
        ))
        .await
        .unwrap()
        .rowid;
    let queued_d = s.mail_digests().await.unwrap();
    let queued = queued_d.checksums();
    assert_ne!(queued.queue, empty.queue);
    assert_eq!(queued.mailboxes, empty.mailboxes);
    assert_eq!(queued.queued_messages, 1);
    s.config_record("[x]\n".into(), "test".into(), 10)
        .await
        .unwrap();
    s.user_add("other@example.com", None, None).await.unwrap();
    assert_eq!(
        s.mail_digests().await.unwrap().checksums(),
        queued,
        "config and directory are not mail"
    );
    let msg = s.queued(row).await.unwrap().unwrap();
    let drop = Settle::local(MailboxDrop {
        user_id: u,
        prefix: b"Delivered-To: u@example.com\r\n".to_vec(),
    });
    s.settle(row, base(&msg.queue_id), vec![(msg.recipients[0].id, drop)])
        .await
        .unwrap();
    let delivered_d = s.mail_digests().await.unwrap();
    let delivered = delivered_d.checksums();
    assert_ne!(delivered.mailboxes, queued.mailboxes);
    assert_eq!(delivered.mailbox_messages, 1);
    assert!(
        delivered_d.changed_since(&queued_d).is_empty(),
        "mail delivered or removed is not mail changed"
    );
    let mut tampered = delivered_d.clone();
    if let Some(v) = tampered.mailboxes.values_mut().next() {
        v.push('x');
    }
    assert_eq!(tampered.changed_since(&delivered_d).len(), 1);
    assert_eq!(s.integrity().await.unwrap(), Vec::<String>::new());
}

/// What undoes migrations 3 to 14 (all but the rebuild of `users`), to make an old store.
const UNDO_3_TO_14: &str = "DROP TABLE folder_keywords;
    DROP TRIGGER contents_immutable;
    DROP TABLE queue_control;
    DROP TABLE queue_active;
    DROP TABLE spool_garbage;
    DROP INDEX contents_file;
    ALTER TABLE contents DROP COLUMN file;
    ALTER TABLE contents DROP COLUMN size;
    ALTER TABLE contents DROP COLUMN eight_bit;
    DROP TABLE org;
    DROP TABLE org_seen;
    DROP TABLE org_discharge;
    ALTER TABLE queue DROP COLUMN org_meta;
    DROP TABLE config_version;
    DROP TABLE config_backup;
    DROP TABLE list_policy;
    DROP TABLE subscriptions;
    DROP TABLE expunged;
    DROP INDEX mail_modseq;
    ALTER TABLE mail DROP COLUMN flags;
    ALTER TABLE mail DROP COLUMN keywords;
    ALTER TABLE mail DROP COLUMN modseq;
    ALTER TABLE mailboxes DROP COLUMN special_use;
    ALTER TABLE mailboxes DROP COLUMN highest_modseq;
    ALTER TABLE mailboxes DROP COLUMN recent_uid;
    ALTER TABLE mailboxes DROP COLUMN expunged_floor;
    ALTER TABLE mailboxes DROP COLUMN expunged_rows;
    DELETE FROM mailboxes WHERE name != 'INBOX';
    DROP TABLE content_headers;
    ALTER TABLE users DROP COLUMN uid_validity_max;
    ";

/// `mail_headers` gives each message's header section, as `header_section` cuts the whole
/// text, for a spooled message, a small one, one too long to come with its row (with a header
/// longer than the first read), one that is all header, and none for a UID that is not there.
#[tokio::test]
async fn header_sections_are_read_without_bodies() {
    use crate::store::NewMail;
    use mailroom_proto::imap::mime::header_section;
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let name = QueueId::generate().to_string();
    let spooled = format!("Subject: big\r\n\r\n{}", "body\r\n".repeat(50_000));
    std::fs::write(ts.store.spool().path(&name), &spooled).unwrap();
    let mut m = message(vec![("u@example.com", Route::Local { user_id: u })], b"");
    m.content = crate::model::Content::Spooled {
        prefix: b"Received: x\r\n".to_vec(),
        file: crate::model::SpooledFile {
            name,
            size: spooled.len() as u64,
            eight_bit: false,
        },
    };
    m.recipients[0].deliver_now = Some(MailboxDrop {
        user_id: u,
        prefix: b"Return-Path: <carol@other.test>\r\n".to_vec(),
    });
    s.submit(m).await.unwrap();
    let long_header = format!(
        "Subject: long\r\nX-Long: {}\r\n\r\n{}",
        "h".repeat(30_000),
        "x".repeat(100_000)
    );
    let texts = [
        "Subject: small\r\n\r\nhi\r\n".to_string(),
        long_header,
        "Subject: all header\r\nTo: u@example.com\r\n".to_string(),
    ];
    let mail = texts
        .iter()
        .map(|t| NewMail {
            text: crate::model::Content::Memory(t.as_bytes().to_vec()),
            flags: 0,
            keywords: Vec::new(),
            internal_date: Utc::now(),
        })
        .collect();
    s.mail_append(u, "INBOX".into(), mail).await.unwrap();
    let sel = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sel.mail.len(), 4);
    let mut uids: Vec<u32> = sel.mail.iter().map(|m| m.uid).collect();
    uids.push(999);
    let got = s.mail_headers(sel.status.info.id, uids).await.unwrap();
    assert_eq!(got.len(), 4, "none for UID 999");
    for (meta, (uid, header)) in sel.mail.iter().zip(&got) {
        assert_eq!(meta.uid, *uid);
        let whole = s.mail_read(u, meta.id).await.unwrap();
        assert_eq!(header.as_slice(), header_section(&whole), "UID {uid}");
    }
    assert!(got[0]
        .1
        .starts_with(b"Return-Path: <carol@other.test>\r\nReceived: x\r\nSubject: big"));
    assert_eq!(got[2].1.len(), 30_000 + 27);
    // Only the UIDs asked for, when others lie between.
    let one = s
        .mail_headers(sel.status.info.id, vec![4, 2])
        .await
        .unwrap();
    assert_eq!(one.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2, 4]);
}

/// The SQL of migration 9 -> 10 cuts header blocks as `header_block` does.
#[test]
fn the_migration_cuts_header_blocks_as_the_code_does() {
    use mailroom_proto::imap::mime::header_block;
    use proptest::prelude::*;
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE contents (id INTEGER PRIMARY KEY, data BLOB NOT NULL, file TEXT);",
    )
    .unwrap();
    c.execute_batch(crate::store::sqlite::schema::HEADERS)
        .unwrap();
    let check = |texts: &[Vec<u8>]| {
        c.execute_batch("DELETE FROM content_headers; DELETE FROM contents;")
            .unwrap();
        for t in texts {
            c.execute("INSERT INTO contents (data) VALUES (?1)", [t])
                .unwrap();
        }
        c.execute_batch(crate::store::sqlite::schema::HEADERS_FILL)
            .unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = c
            .prepare("SELECT data, header FROM contents JOIN content_headers ON content_id = id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), texts.len());
        for (data, header) in rows {
            assert_eq!(
                header,
                header_block(&data),
                "{:?}",
                String::from_utf8_lossy(&data)
            );
        }
    };
    let table: Vec<Vec<u8>> = [
        "A: b\r\n\r\nbody",
        "\r\nbody",
        "\nbody",
        "A: b\n\nbody\r\n\r\n",
        "A: b\r\nC: d\r\n",
        "A: b\n\r\nx\n\n",
        "x",
        "A: b\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    check(&table);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 300,
        failure_persistence: None,
        ..Default::default()
    });
    let text = proptest::collection::vec("(A: b|x| |)(\r\n|\n|\r|)", 1..8).prop_map(|l| l.concat());
    runner
        .run(&proptest::collection::vec(text, 1..5), |texts| {
            let texts: Vec<Vec<u8>> = texts.into_iter().map(String::into_bytes).collect();
            check(&texts);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A header block is kept for contents that will be in a mailbox (a local recipient, delivered
/// now or queued), not for mail that only passes through to other servers.
#[tokio::test]
async fn header_blocks_only_for_mail_that_reaches_a_mailbox() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let blocks = || -> i64 {
        rusqlite::Connection::open(ts.store.path_for_tests())
            .unwrap()
            .query_row("SELECT count(*) FROM content_headers", [], |r| r.get(0))
            .unwrap()
    };
    let remote = message(
        vec![("x@remote.test", Route::Remote)],
        b"Subject: away\r\n\r\nbye\r\n",
    );
    s.submit(remote).await.unwrap();
    assert_eq!(blocks(), 0, "passing through: no block");
    let both = message(
        vec![
            ("x@remote.test", Route::Remote),
            ("u@example.com", Route::Local { user_id: u }),
        ],
        b"Subject: here\r\n\r\nhi\r\n",
    );
    s.submit(both).await.unwrap();
    assert_eq!(blocks(), 1, "a local recipient: a block");
}

/// A folder deleted and made again within the same second gets a new UIDVALIDITY, also when it
/// had the highest the user had (RFC 9051 §2.3.1.1: UIDs of the old folder must not be taken
/// for the new one's); migration 11 -> 12 starts each user's mark at its folders' highest.
#[tokio::test]
async fn a_folder_made_again_gets_a_new_uid_validity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v11.db");
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let validity = |s: std::sync::Arc<crate::store::sqlite::SqliteStore>| async move {
        s.folder_status(u, "a".into())
            .await
            .unwrap()
            .unwrap()
            .uid_validity
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        s.folder_create(u, "a".into(), None).await.unwrap();
        assert!(seen.insert(validity(s.clone()).await), "{seen:?}");
        s.folder_delete(u, "a".into()).await.unwrap();
    }
    s.folder_create(u, "a".into(), None).await.unwrap();
    let top = validity(s.clone()).await;
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE folder_keywords;
         DROP TRIGGER contents_immutable;
         ALTER TABLE users DROP COLUMN uid_validity_max;
         UPDATE meta SET value = '11' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let mark: i64 = c
        .query_row(
            "SELECT uid_validity_max FROM users WHERE id = ?1",
            [u],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mark, i64::from(top));
    s.folder_delete(u, "a".into()).await.unwrap();
    s.folder_create(u, "a".into(), None).await.unwrap();
    assert!(validity(s.clone()).await > top);
}

/// `open_read_only` (doctor's) reads a store without making or changing a file, in a
/// directory whose name holds what a URI would take for its own (`?`, `#`, `%`, a space).
#[tokio::test]
async fn a_store_opened_read_only_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a ?b#c%20d");
    std::fs::create_dir(&odd).unwrap();
    let path = odd.join("t.db");
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    s.user_add("u@example.com", None, None).await.unwrap();
    s.close();
    drop(s);
    let files = || {
        let mut v: Vec<_> = std::fs::read_dir(&odd)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v
    };
    let before = files();
    let r = crate::store::sqlite::SqliteStore::open_read_only(&path).unwrap();
    assert!(r.lookup("u@example.com").await.unwrap().is_some());
    assert!(matches!(
        r.user_add("v@example.com", None, None).await,
        Err(StoreError::Closed)
    ));
    drop(r);
    assert_eq!(files(), before);
}

/// Message text is written once (schema 13): the engine refuses a rewrite of a content's
/// octets, file or size, which is what lets repair's proof read rows instead of octets; the
/// proof still sees a message whose row or content changed.
#[tokio::test]
async fn message_text_cannot_be_rewritten_and_the_digest_sees_a_changed_message() {
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    s.mail_append(
        u,
        "INBOX".into(),
        vec![crate::store::NewMail {
            text: crate::model::Content::Memory(b"Subject: s\r\n\r\nbody\r\n".to_vec()),
            flags: 0,
            keywords: Vec::new(),
            internal_date: chrono::Utc::now(),
        }],
    )
    .await
    .unwrap();
    let before = s.mail_digests().await.unwrap();
    let c = rusqlite::Connection::open(ts.store.path_for_tests()).unwrap();
    for sql in [
        "UPDATE contents SET data = X'00'",
        "UPDATE contents SET size = 1",
        "UPDATE contents SET file = 'x'",
    ] {
        let e = c.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("never rewritten"), "{sql}: {e}");
    }
    // Flags are the user's, not the message: not in the digest.
    c.execute("UPDATE mail SET flags = 1", []).unwrap();
    assert!(s
        .mail_digests()
        .await
        .unwrap()
        .changed_since(&before)
        .is_empty());
    // The message's own row is.
    c.execute("UPDATE mail SET prefix = X'41'", []).unwrap();
    assert_eq!(
        s.mail_digests().await.unwrap().changed_since(&before).len(),
        1
    );
}

/// Migration 13 -> 14 defines in each folder the keywords its messages carry, in the order of
/// the messages, each once whatever its case.
#[tokio::test]
async fn the_migration_defines_the_keywords_messages_carry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v13.db");
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let mail = |k: &[&str]| crate::store::NewMail {
        text: crate::model::Content::Memory(b"Subject: s\r\n\r\nx\r\n".to_vec()),
        flags: 0,
        keywords: k.iter().map(|s| s.to_string()).collect(),
        internal_date: chrono::Utc::now(),
    };
    s.mail_append(
        u,
        "INBOX".into(),
        vec![mail(&["$Work", "b"]), mail(&[]), mail(&["$work", "c"])],
    )
    .await
    .unwrap();
    let folder = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(folder.keywords, ["$Work", "b", "c"]);
    s.close();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE folder_keywords; UPDATE meta SET value = '13' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let folder = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(folder.keywords, ["$Work", "b", "c"]);
}

/// The keyword bounds: a message with more than its share, or a folder asked to define more
/// than its own, is refused whole (`Limit`), and nothing of the change is kept.
#[tokio::test]
async fn keywords_are_bounded_per_message_and_per_folder() {
    use crate::store::{FlagOp, NewMail};
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    s.set_keyword_limits(crate::store::sqlite::KeywordLimits {
        per_folder: 5,
        per_message: 3,
    });
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let m = NewMail {
        text: crate::model::Content::Memory(b"Subject: s\r\n\r\nx\r\n".to_vec()),
        flags: 0,
        keywords: Vec::new(),
        internal_date: chrono::Utc::now(),
    };
    s.mail_append(u, "INBOX".into(), vec![m.clone(), m.clone()])
        .await
        .unwrap();
    let folder = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    let id = folder.status.info.id;
    let kw = |n: std::ops::Range<u32>| n.map(|i| format!("k{i}")).collect::<Vec<_>>();
    let add = |k: Vec<String>| s.mail_store(id, vec![1, 2], FlagOp::Add, 0, k, None);
    assert!(
        matches!(add(kw(0..4)).await, Err(StoreError::Limit(_))),
        "4 on a message"
    );
    add(kw(0..3)).await.unwrap();
    // Spelled as the folder spells it, and counted once.
    let st = add(vec!["K1".into()]).await.unwrap();
    assert!(st.changed.is_empty(), "k1 is there already: {st:?}");
    let second = s
        .mail_store(id, vec![2], FlagOp::Replace, 0, kw(3..5), None)
        .await
        .unwrap();
    assert_eq!(second.changed[0].keywords, kw(3..5));
    let sixth = s
        .mail_store(id, vec![2], FlagOp::Add, 0, vec!["k9".into()], None)
        .await;
    assert!(
        matches!(sixth, Err(StoreError::Limit(_))),
        "a sixth in the folder"
    );
    let mut m6 = m.clone();
    m6.keywords = vec!["k9".into()];
    assert!(matches!(
        s.mail_append(u, "INBOX".into(), vec![m6]).await,
        Err(StoreError::Limit(_))
    ));
    let folder = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        folder.keywords,
        kw(0..5),
        "defined once, kept after the last use, in order"
    );
    assert_eq!(folder.mail.len(), 2, "the refused APPEND kept nothing");
}

/// Issue 21 (found by the comparison with Dovecot): a message put in a folder by APPEND was
/// counted one reference short, so expunging a copy of it made the store try to delete the
/// text the original still names, and the EXPUNGE failed. Each copy now holds its reference:
/// either can go, and the text goes with the last.
#[tokio::test]
async fn an_appended_message_and_its_copy_are_expunged_one_by_one() {
    use crate::store::{FlagOp, NewMail};
    let ts = TempStore::new();
    let s = ts.store.as_ref();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let text = b"Subject: s\r\n\r\nkept\r\n".to_vec();
    let m = NewMail {
        text: crate::model::Content::Memory(text.clone()),
        flags: 0,
        keywords: Vec::new(),
        internal_date: chrono::Utc::now(),
    };
    s.mail_append(u, "INBOX".into(), vec![m]).await.unwrap();
    let inbox = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    let sent = s
        .folder_select(u, "Sent".into(), false)
        .await
        .unwrap()
        .unwrap();
    s.mail_copy(u, inbox.status.info.id, vec![1], "Sent".into(), false)
        .await
        .unwrap();
    // The copy goes first: the original keeps its text.
    s.mail_store(
        sent.status.info.id,
        vec![1],
        FlagOp::Add,
        crate::store::flag::DELETED,
        Vec::new(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.mail_expunge(sent.status.info.id, None).await.unwrap(),
        [1]
    );
    let mail = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap()
        .mail;
    let read = s.mail_read_many(u, vec![mail[0].id]).await.unwrap();
    assert_eq!(read[0].as_deref(), Some(text.as_slice()));
    // Then the original, and the text with it.
    s.mail_store(
        inbox.status.info.id,
        vec![1],
        FlagOp::Add,
        crate::store::flag::DELETED,
        Vec::new(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.mail_expunge(inbox.status.info.id, None).await.unwrap(),
        [1]
    );
    let c = rusqlite::Connection::open(ts.dir().join("t.db")).unwrap();
    let contents: i64 = c
        .query_row("SELECT count(*) FROM contents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contents, 0);
}

/// Migration 14 -> 15 recounts every content's references from the copies and the queue.
#[tokio::test]
async fn the_migration_recounts_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v14.db");
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let u = s.user_add("u@example.com", None, None).await.unwrap();
    let m = crate::store::NewMail {
        text: crate::model::Content::Memory(b"Subject: s\r\n\r\nx\r\n".to_vec()),
        flags: 0,
        keywords: Vec::new(),
        internal_date: chrono::Utc::now(),
    };
    s.mail_append(u, "INBOX".into(), vec![m.clone(), m])
        .await
        .unwrap();
    let inbox = s
        .folder_select(u, "INBOX".into(), false)
        .await
        .unwrap()
        .unwrap();
    s.mail_copy(u, inbox.status.info.id, vec![1], "Sent".into(), false)
        .await
        .unwrap();
    s.close();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    // As a version 14 store has them: appended messages one short.
    c.execute_batch(
        "UPDATE contents SET refs = refs - 1; UPDATE meta SET value = '14' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
    s.close();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let refs: Vec<i64> = c
        .prepare("SELECT refs FROM contents ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(refs, [2, 1]);
}
