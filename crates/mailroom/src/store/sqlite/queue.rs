//! Queue tables: messages, their recipients, the shared content, and quarantine.

use chrono::{DateTime, Utc};
use mailroom_proto::smtp::{Body, DsnRet, Notify, Status};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_micros, micros, stored_time, track, TIME_RANGE};
use crate::model::{
    hold_for, EnvelopeParams, Failure, MessageKind, NewMessage, NewRecipient, QueueControl,
    QueueKind, QueuedMessage, QueuedRecipient, RcptState, ReportState, Route, Settle, Submitted,
};
use crate::store::spool::Spool;
use crate::store::{Loaded, SettledAs, StoreError};
use crate::track::{Event, EventBase, EventId};

fn body_str(b: Body) -> &'static str {
    match b {
        Body::SevenBit => "7BIT",
        Body::EightBitMime => "8BITMIME",
        Body::BinaryMime => "BINARYMIME",
    }
}

fn parse_body(s: &str) -> Option<Body> {
    match s {
        "7BIT" => Some(Body::SevenBit),
        "8BITMIME" => Some(Body::EightBitMime),
        "BINARYMIME" => Some(Body::BinaryMime),
        _ => None,
    }
}

pub(super) fn report_str(r: &ReportState) -> String {
    match r {
        ReportState::None => "none".into(),
        ReportState::Pending => "pending".into(),
        ReportState::Sent(q) => format!("sent:{q}"),
        ReportState::Absorbed => "absorbed".into(),
        ReportState::NotRequested => "not-requested".into(),
    }
}

fn parse_report(s: &str) -> Option<ReportState> {
    Some(match s {
        "none" => ReportState::None,
        "pending" => ReportState::Pending,
        "absorbed" => ReportState::Absorbed,
        "not-requested" => ReportState::NotRequested,
        _ => ReportState::Sent(s.strip_prefix("sent:")?.to_string()),
    })
}

/// Stores a message: content, mailbox copies of the recipients delivered at once, and queue
/// rows only for what is left to do (remote recipients, a copy over quota, a report owed). A
/// message delivered in full never touches the queue tables: its content is kept alive by the
/// mailbox copies alone.
pub(super) fn submit(
    c: &Connection,
    spool: &Spool,
    m: &NewMessage,
) -> Result<Submitted, StoreError> {
    // A copy from the organization of a message already accepted here (a shadow sent again
    // while the first copy was in fact delivered) keeps only the recipients not seen before.
    let deduped;
    let m = match &m.org_meta {
        Some(meta) => match super::org::dedup(c, m, meta)? {
            Some(fresh) => {
                deduped = fresh;
                &deduped
            }
            None => m,
        },
        None => m,
    };
    if m.recipients.is_empty() {
        // Every recipient was a duplicate: nothing to keep, only to confirm.
        track::insert(c, &m.events)?;
        if let Some(meta) = &m.org_meta {
            super::org::discharge(c, meta)?;
        }
        return Ok(Submitted {
            rowid: 0,
            pending: false,
            delivered: Vec::new(),
        });
    }
    let for_mailbox = m
        .recipients
        .iter()
        .any(|r| r.deliver_now.is_some() || matches!(r.route, Route::Local { .. }));
    let content_id = super::content::insert(c, spool, &m.content, for_mailbox)?;
    let now = Utc::now();
    // Local copies first: they decide whether the message needs the queue at all.
    let delivered = deliver_now(c, m, content_id, now)?;
    let delivered_to: Vec<String> = m
        .recipients
        .iter()
        .zip(&delivered)
        .filter(|(_, d)| **d)
        .map(|(r, _)| r.address.clone())
        .collect();
    let owes_report =
        |i: usize, r: &NewRecipient| delivered[i] && r.notify.is_some_and(|n| n.success);
    let pending = m
        .recipients
        .iter()
        .enumerate()
        .any(|(i, r)| !delivered[i] || owes_report(i, r));
    if !pending {
        if let Some(meta) = &m.org_meta {
            super::org::discharge(c, meta)?;
        }
        return Ok(Submitted {
            rowid: 0,
            pending: false,
            delivered: delivered_to,
        });
    }
    c.prepare_cached("UPDATE contents SET refs = refs + 1 WHERE id = ?1")?
        .execute([content_id])?;
    let msg = insert_message(c, m, content_id)?;
    let mut st = c.prepare_cached(
        "INSERT INTO queue_rcpt (msg, address, original, orcpt, notify, route, user_id, state, queue,
                                 report, attempts, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for (i, r) in m.recipients.iter().enumerate() {
        let (route, user) = match r.route {
            Route::Local { user_id } => ("local", Some(user_id)),
            Route::Remote => ("remote", None),
            Route::Unresolved => ("unresolved", None),
        };
        let (state, queue, report, attempts) = if delivered[i] {
            let owed = owes_report(i, r);
            (
                "delivered",
                owed.then(|| QueueKind::Dsn.key()),
                if owed { "pending" } else { "none" },
                1,
            )
        } else {
            ("ready", Some(r.queue.key()), "none", 0)
        };
        st.execute(params![
            msg,
            r.address,
            r.original,
            r.orcpt,
            r.notify.map(|n| n.to_string()),
            route,
            user,
            state,
            queue,
            report,
            attempts,
            micros(now)
        ])?;
    }
    Ok(Submitted {
        rowid: msg,
        pending: true,
        delivered: delivered_to,
    })
}

/// The mailbox copies of the recipients to deliver with the submission, and the message's events
/// with their 1028s. Returns, for each recipient, whether its copy was made (a copy the quota
/// refuses, or whose user is gone, is left to the queue, which reports it).
fn deliver_now(
    c: &Connection,
    m: &NewMessage,
    content_id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    let mut delivered = vec![false; m.recipients.len()];
    let mut events = Vec::new();
    let base = EventBase {
        server: m
            .events
            .first()
            .map(|e| e.server.clone())
            .unwrap_or_default(),
        queue_id: m.queue_id.to_string(),
        message_id: m.message_id.clone(),
        sender: m.sender.clone(),
        client_ip: None,
        size: Some(m.content.len()),
    };
    for (i, r) in m.recipients.iter().enumerate() {
        let Some(drop) = &r.deliver_now else { continue };
        let size = m.content.len() as i64 + drop.prefix.len() as i64;
        if super::mailbox::insert(c, drop.user_id, content_id, &drop.prefix, size, now)?.is_some() {
            continue;
        }
        delivered[i] = true;
        events.push(Event {
            time: now,
            ..base
                .event(EventId::DeliveredLocally, Some(&r.address))
                .status("2.0.0")
        });
    }
    track::insert(c, &m.events)?;
    track::insert(c, &events)?;
    Ok(delivered)
}

/// The message's queue row; returns its row ID.
fn insert_message(c: &Connection, m: &NewMessage, content_id: i64) -> Result<i64, StoreError> {
    c.prepare_cached(
        "INSERT INTO queue (queue_id, kind, sender, envid, ret, body, smtputf8, message_id,
                            arrival, client_ip, content_id, size, org_meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        m.queue_id.to_string(),
        m.kind.as_str(),
        m.sender,
        m.params.envid,
        m.params.ret.map(|r| r.to_string()),
        m.params.body.map(body_str),
        m.params.smtputf8,
        m.message_id,
        micros(m.arrival),
        m.client_ip,
        content_id,
        m.content.len() as i64,
        m.org_meta
            .as_ref()
            .map(|o| serde_json::to_string(o).unwrap_or_default()),
    ])?;
    Ok(c.last_insert_rowid())
}

const MSG_COLS: &str =
    "id, queue_id, kind, sender, envid, ret, body, smtputf8, message_id, arrival, \
                        client_ip, content_id, size, frozen, org_meta";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<QueuedMessage, String>> {
    let kind: String = r.get(2)?;
    let ret: Option<String> = r.get(5)?;
    let body: Option<String> = r.get(6)?;
    let Some(kind) = MessageKind::parse(&kind) else {
        return Ok(Err(format!("unknown message kind {kind:?}")));
    };
    let ret = match ret.as_deref() {
        None => None,
        Some("FULL") => Some(DsnRet::Full),
        Some("HDRS") => Some(DsnRet::Hdrs),
        Some(x) => return Ok(Err(format!("bad RET {x:?}"))),
    };
    let body = match body.as_deref() {
        None => None,
        Some(b) => match parse_body(b) {
            Some(b) => Some(b),
            None => return Ok(Err(format!("bad BODY {b:?}"))),
        },
    };
    let org_meta: Option<String> = r.get(14)?;
    let org_meta = match org_meta.as_deref().map(serde_json::from_str) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return Ok(Err(format!("bad organization metadata: {e}"))),
    };
    let arrival: i64 = r.get(9)?;
    let Some(arrival) = stored_time(arrival) else {
        return Ok(Err(format!("bad arrival time {arrival}")));
    };
    Ok(Ok(QueuedMessage {
        rowid: r.get(0)?,
        queue_id: r.get(1)?,
        kind,
        sender: r.get(3)?,
        params: EnvelopeParams {
            envid: r.get(4)?,
            ret,
            body,
            smtputf8: r.get(7)?,
        },
        message_id: r.get(8)?,
        arrival,
        client_ip: r.get(10)?,
        content_id: r.get(11)?,
        size: r.get::<_, i64>(12)? as u64,
        frozen: r.get(13)?,
        org_meta,
        recipients: Vec::new(),
    }))
}

/// What a load needs besides the rows: the administrator's queue settings and the time, to tell
/// which recipients are held.
pub(super) struct LoadContext {
    controls: Vec<QueueControl>,
    now: DateTime<Utc>,
}

impl LoadContext {
    pub(super) fn read(c: &Connection, now: DateTime<Utc>) -> Result<LoadContext, StoreError> {
        Ok(LoadContext {
            controls: controls(c)?,
            now,
        })
    }
}

/// The administrator's queue settings (a handful of rows at most).
pub(super) fn controls(c: &Connection) -> Result<Vec<QueueControl>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT queue, disabled_since, scheduled_until, by FROM queue_control ORDER BY queue",
    )?;
    let rows = st.query_map([], |r| {
        Ok(QueueControl {
            queue: r.get(0)?,
            disabled_since: r.get::<_, Option<i64>>(1)?.map(from_micros),
            scheduled_until: r.get::<_, Option<i64>>(2)?.map(from_micros),
            by: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn recipients(
    c: &Connection,
    msg: i64,
    ctx: &LoadContext,
) -> Result<Vec<QueuedRecipient>, StoreError> {
    let mut active = c.prepare_cached("SELECT queue, since FROM queue_active WHERE msg = ?1")?;
    let active: Vec<(String, i64)> = active
        .query_map([msg], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare_cached(
        "SELECT id, address, original, orcpt, notify, route, user_id, state, next_attempt, attempts,
                status, reason, diagnostic, remote_mta, relayed, report, delay_done, updated, queue
         FROM queue_rcpt WHERE msg = ?1 ORDER BY id",
    )?;
    let mut out = Vec::new();
    let mut rows = st.query([msg])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let bad = |what: &str| StoreError::Corrupt(format!("recipient {id}: bad {what}"));
        let notify: Option<String> = r.get(4)?;
        let notify = match notify {
            None => None,
            Some(n) => Some(Notify::parse(&n).ok_or_else(|| bad("NOTIFY"))?),
        };
        let route = match (r.get::<_, String>(5)?.as_str(), r.get::<_, Option<i64>>(6)?) {
            ("local", Some(user_id)) => Route::Local { user_id },
            ("remote", _) => Route::Remote,
            ("unresolved", _) => Route::Unresolved,
            _ => return Err(bad("route")),
        };
        let at = stored_time(r.get(17)?).ok_or_else(|| bad("time of last change"))?;
        let failure = || -> Result<Failure, StoreError> {
            let status: Option<String> = r.get(10)?;
            Ok(Failure {
                status: status
                    .as_deref()
                    .and_then(Status::parse)
                    .ok_or_else(|| bad("status"))?,
                reason: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                diagnostic: r.get(12)?,
                remote_mta: r.get(13)?,
            })
        };
        let state = match r.get::<_, String>(7)?.as_str() {
            "ready" => RcptState::Ready,
            "deferred" => RcptState::Deferred {
                next_attempt: r
                    .get::<_, Option<i64>>(8)?
                    .and_then(stored_time)
                    .ok_or_else(|| bad("next attempt"))?,
                last_error: failure()?,
            },
            "delivered" => RcptState::Delivered {
                at,
                remote_mta: r.get(13)?,
                relayed: r.get(14)?,
            },
            "failed" => RcptState::Failed {
                at,
                failure: failure()?,
            },
            _ => return Err(bad("state")),
        };
        let report: String = r.get(15)?;
        let queue: Option<String> = r.get(18)?;
        let waiting = matches!(state, RcptState::Ready | RcptState::Deferred { .. });
        let (held, active_since) = match (&queue, waiting) {
            (Some(q), true) => (
                hold_for(&ctx.controls, q, route == Route::Remote, ctx.now),
                active
                    .iter()
                    .find(|(a, _)| a == q)
                    .map(|(_, since)| from_micros(*since)),
            ),
            _ => (None, None),
        };
        out.push(QueuedRecipient {
            id,
            address: r.get(1)?,
            original: r.get(2)?,
            orcpt: r.get(3)?,
            notify,
            route,
            state,
            attempts: r.get::<_, i64>(9)? as u32,
            report: parse_report(&report).ok_or_else(|| bad("report"))?,
            delay_reported: r.get(16)?,
            queue: queue.as_deref().map(QueueKind::parse),
            held,
            active_since,
        });
    }
    Ok(out)
}

/// Loads one message with its recipients.
pub(super) fn load(
    c: &Connection,
    rowid: i64,
    ctx: &LoadContext,
) -> Result<Option<QueuedMessage>, StoreError> {
    let row = c
        .prepare_cached(&format!("SELECT {MSG_COLS} FROM queue WHERE id = ?1"))?
        .query_row([rowid], message_row)
        .optional()?;
    match row {
        None => Ok(None),
        Some(Err(e)) => Err(StoreError::Corrupt(format!("queue message {rowid}: {e}"))),
        Some(Ok(mut m)) => {
            m.recipients = recipients(c, rowid, ctx)?;
            Ok(Some(m))
        }
    }
}

/// Loads messages; unreadable ones are listed apart (to be quarantined), never dropped silently.
pub(super) fn load_many(
    c: &Connection,
    ids: Vec<i64>,
    now: DateTime<Utc>,
) -> Result<Loaded, StoreError> {
    let ctx = LoadContext::read(c, now)?;
    let mut out = Loaded::default();
    for id in ids {
        match load(c, id, &ctx) {
            Ok(Some(m)) => out.messages.push(m),
            Ok(None) => {}
            Err(StoreError::Corrupt(e)) => out.unreadable.push((id, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Messages with work to do at `now`: an attempt due, a report pending, or a delay report due
/// (arrived before `delay_cutoff`). Frozen messages are skipped, and so are recipients whose
/// queue an administrator has disabled or scheduled for later (they are not due).
pub(super) fn due(
    c: &Connection,
    now: DateTime<Utc>,
    delay_cutoff: DateTime<Utc>,
    after: i64,
    limit: usize,
) -> Result<Loaded, StoreError> {
    // One indexed branch per kind of work, so that a million recipients waiting for later
    // cost nothing to poll.
    let mut st = c.prepare_cached(
        "SELECT w.msg FROM (
             SELECT msg FROM queue_rcpt r WHERE state = 'ready' AND next_attempt IS NULL AND msg > ?1
                 AND NOT EXISTS (SELECT 1 FROM queue_control k
                     WHERE (k.queue = r.queue OR (k.queue = '*' AND r.route = 'remote'))
                       AND (k.disabled_since IS NOT NULL OR k.scheduled_until > ?2))
             UNION SELECT msg FROM queue_rcpt r WHERE state = 'deferred' AND next_attempt <= ?2 AND msg > ?1
                 AND NOT EXISTS (SELECT 1 FROM queue_control k
                     WHERE (k.queue = r.queue OR (k.queue = '*' AND r.route = 'remote'))
                       AND (k.disabled_since IS NOT NULL OR k.scheduled_until > ?2))
             UNION SELECT msg FROM queue_rcpt WHERE report = 'pending' AND msg > ?1
             UNION SELECT msg FROM queue_rcpt WHERE state = 'deferred' AND delay_done = 0 AND msg > ?1
                 AND msg <= (SELECT max(id) FROM queue WHERE arrival <= ?3)
         ) w JOIN queue q ON q.id = w.msg WHERE q.frozen = 0 ORDER BY w.msg LIMIT ?4",
    )?;
    let ids: Vec<i64> = st
        .query_map(
            params![after, micros(now), micros(delay_cutoff), limit as i64],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    load_many(c, ids, now)
}

/// Messages whose rows hold values the decoder would refuse, found by one sweep in SQL (fast
/// on a million rows); each is then loaded to confirm before it is quarantined. The decoder
/// stays the judge: a record this sweep misses is quarantined when it comes due.
pub(super) fn suspects(c: &Connection) -> Result<Loaded, StoreError> {
    let ids: Vec<i64> = c
        .prepare(
            "SELECT id FROM queue WHERE kind NOT IN ('normal', 'report')
                 OR typeof(arrival) != 'integer' OR arrival NOT BETWEEN ?1 AND ?2
                 OR (ret IS NOT NULL AND ret NOT IN ('FULL', 'HDRS'))
                 OR (body IS NOT NULL AND body NOT IN ('7BIT', '8BITMIME', 'BINARYMIME'))
                 OR NOT EXISTS (SELECT 1 FROM contents WHERE contents.id = queue.content_id)
             UNION
             SELECT msg FROM queue_rcpt
             WHERE state NOT IN ('ready', 'deferred', 'delivered', 'failed')
                 OR route NOT IN ('local', 'remote', 'unresolved')
                 OR (route = 'local' AND user_id IS NULL)
                 OR (report NOT IN ('none', 'pending', 'absorbed', 'not-requested') AND report NOT LIKE 'sent:%')
                 OR (state = 'deferred' AND next_attempt IS NULL)
                 OR typeof(updated) != 'integer' OR updated NOT BETWEEN ?1 AND ?2
                 OR (next_attempt IS NOT NULL
                     AND (typeof(next_attempt) != 'integer' OR next_attempt NOT BETWEEN ?1 AND ?2))
                 OR (state IN ('deferred', 'failed') AND (status IS NULL OR status NOT GLOB '[245].[0-9]*.[0-9]*'))
                 OR (notify IS NOT NULL AND notify NOT IN ('NEVER', 'SUCCESS', 'FAILURE', 'DELAY',
                     'SUCCESS,FAILURE', 'SUCCESS,DELAY', 'FAILURE,DELAY', 'SUCCESS,FAILURE,DELAY'))
             ORDER BY 1",
        )?
        .query_map([TIME_RANGE.0, TIME_RANGE.1], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    load_many(c, ids, Utc::now())
}

/// Removes a message from the queue (its content stays while mailboxes refer to it). A
/// message that came from another server of the organization is recorded as finished with, so
/// that server lets its shadow copy go.
pub(super) fn remove(c: &Connection, msg: i64) -> Result<(), StoreError> {
    let row: Option<(i64, Option<String>)> = c
        .prepare_cached("SELECT content_id, org_meta FROM queue WHERE id = ?1")?
        .query_row([msg], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let content = row.as_ref().map(|(c, _)| *c);
    if let Some(meta) = row
        .and_then(|(_, m)| m)
        .and_then(|m| serde_json::from_str::<crate::model::OrgMeta>(&m).ok())
    {
        super::org::discharge(c, &meta)?;
    }
    c.prepare_cached("DELETE FROM queue_rcpt WHERE msg = ?1")?
        .execute([msg])?;
    c.prepare_cached("DELETE FROM queue_active WHERE msg = ?1")?
        .execute([msg])?;
    c.prepare_cached("DELETE FROM queue WHERE id = ?1")?
        .execute([msg])?;
    if let Some(id) = content {
        super::content::release(c, id)?;
    }
    Ok(())
}

/// Removes a message once no recipient needs anything more; says whether it did.
pub(super) fn finish_if_done(c: &Connection, msg: i64) -> Result<bool, StoreError> {
    let open: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM queue_rcpt WHERE msg = ?1
             AND (state IN ('ready', 'deferred') OR report = 'pending')",
        )?
        .query_row([msg], |r| r.get(0))?;
    if open == 0 {
        remove(c, msg)?;
    }
    Ok(open == 0)
}

/// Settles recipients (see [`crate::store::Queue::settle`]).
pub(super) fn settle(
    c: &Connection,
    msg: i64,
    base: &EventBase,
    results: &[(i64, Settle)],
) -> Result<Vec<(i64, SettledAs)>, StoreError> {
    let Some((content_id, size)) = c
        .prepare_cached("SELECT content_id, size FROM queue WHERE id = ?1")?
        .query_row([msg], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
    else {
        // Gone meanwhile (delivered, deleted, quarantined): nothing to settle, nothing in flight.
        c.prepare_cached("DELETE FROM queue_active WHERE msg = ?1")?
            .execute([msg])?;
        return Ok(results
            .iter()
            .map(|(id, _)| (*id, SettledAs::AlreadySettled))
            .collect());
    };
    let mut s = Settling {
        c,
        content_id,
        size,
        now: Utc::now(),
        base,
        events: Vec::new(),
    };
    let mut out = Vec::with_capacity(results.len());
    for &(rcpt, ref settle) in results {
        let row: Option<(String, String)> = c
            .prepare_cached("SELECT state, address FROM queue_rcpt WHERE id = ?1 AND msg = ?2")?
            .query_row(params![rcpt, msg], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // Only a recipient still waiting is settled: a repeated attempt changes nothing.
        let address = match row {
            Some((state, address)) if state == "ready" || state == "deferred" => address,
            _ => {
                out.push((rcpt, SettledAs::AlreadySettled));
                continue;
            }
        };
        let settled = match settle {
            Settle::Delivered {
                drop,
                remote_mta,
                relayed,
                report,
                tls,
            } => s.delivered(
                rcpt,
                &address,
                drop.as_ref(),
                remote_mta,
                (*relayed, *report),
                tls.as_deref(),
            )?,
            Settle::Deferred {
                failure,
                next_attempt,
                queue,
            } => s.deferred(rcpt, &address, failure, *next_attempt, queue)?,
            Settle::Failed(f) => s.failed(rcpt, &address, f)?,
            Settle::Shadow {
                server,
                until,
                renew,
                tls,
            } => s.shadow(rcpt, &address, server, (*until, *renew), tls.as_deref())?,
        };
        out.push((rcpt, settled));
    }
    // The attempt is over: its deliveries are no longer in progress.
    c.prepare_cached("DELETE FROM queue_active WHERE msg = ?1")?
        .execute([msg])?;
    track::insert(c, &s.events)?;
    finish_if_done(c, msg)?;
    Ok(out)
}

/// One message's settling: the writes for each outcome, and the events they make.
struct Settling<'a> {
    c: &'a Connection,
    content_id: i64,
    size: i64,
    now: DateTime<Utc>,
    base: &'a EventBase,
    events: Vec<Event>,
}

impl Settling<'_> {
    /// Delivered: a local copy goes into the mailbox in this same transaction (unless the quota
    /// refuses it, which fails the recipient with 5.2.2); event 1028 or 1031.
    fn delivered(
        &mut self,
        rcpt: i64,
        address: &str,
        drop: Option<&crate::model::MailboxDrop>,
        remote_mta: &Option<String>,
        (relayed, report): (bool, bool),
        tls: Option<&str>,
    ) -> Result<SettledAs, StoreError> {
        if let Some(d) = drop {
            let total = self.size + d.prefix.len() as i64;
            let refused = super::mailbox::insert(
                self.c,
                d.user_id,
                self.content_id,
                &d.prefix,
                total,
                self.now,
            )?;
            if let Some((status, reason)) = refused {
                return self.failed(rcpt, address, &Failure::new(status, reason));
            }
        }
        self.c
            .prepare_cached(
                "UPDATE queue_rcpt SET state = 'delivered', queue = ?2, remote_mta = ?3, relayed = ?4,
                 report = ?5, attempts = attempts + 1, updated = ?6 WHERE id = ?1",
            )?
            .execute(params![
                rcpt,
                report.then(|| QueueKind::Dsn.key()),
                remote_mta,
                relayed,
                if report { "pending" } else { "none" },
                micros(self.now)
            ])?;
        let (event, detail) = match remote_mta {
            None => (EventId::DeliveredLocally, None),
            Some(m) => (
                EventId::OutboundSucceeded,
                Some(match tls {
                    Some(t) => format!("accepted by {m} {t}"),
                    None => format!("accepted by {m}"),
                }),
            ),
        };
        let mut e = self.base.event(event, Some(address)).status("2.0.0");
        e.detail = detail;
        self.events.push(e);
        Ok(SettledAs::Delivered)
    }

    /// Deferred until `next_attempt`, waiting in `queue`; event 1035.
    fn deferred(
        &mut self,
        rcpt: i64,
        address: &str,
        failure: &Failure,
        next_attempt: DateTime<Utc>,
        queue: &QueueKind,
    ) -> Result<SettledAs, StoreError> {
        self.c
            .prepare_cached(
                "UPDATE queue_rcpt SET state = 'deferred', queue = ?2, next_attempt = ?3,
                 attempts = attempts + 1, status = ?4, reason = ?5, diagnostic = ?6, remote_mta = ?7,
                 updated = ?8 WHERE id = ?1",
            )?
            .execute(params![
                rcpt,
                queue.key(),
                micros(next_attempt),
                failure.status.to_string(),
                failure.reason,
                failure.diagnostic,
                failure.remote_mta,
                micros(self.now)
            ])?;
        let said = match &failure.diagnostic {
            Some(d) => format!("; the server said: {d}"),
            None => String::new(),
        };
        let detail = format!(
            "{}{said}; next attempt {}",
            failure.reason,
            next_attempt.to_rfc3339()
        );
        self.events.push(
            self.base
                .event(EventId::RetryRouting, Some(address))
                .status(failure.status.to_string())
                .detail(detail),
        );
        Ok(SettledAs::Deferred)
    }

    /// Accepted by another server of the organization and kept as a shadow until it confirms:
    /// it waits in `shadow:SERVER` (no delay report: the mail is not late, it is safe twice);
    /// events 1031 and 2021 (none when only renewed).
    fn shadow(
        &mut self,
        rcpt: i64,
        address: &str,
        server: &str,
        (until, renew): (DateTime<Utc>, bool),
        tls: Option<&str>,
    ) -> Result<SettledAs, StoreError> {
        let reason = format!("handed to {server}; a shadow copy is kept until it confirms");
        self.c
            .prepare_cached(
                "UPDATE queue_rcpt SET state = 'deferred', queue = ?2, next_attempt = ?3,
                 status = '2.0.0', reason = ?4, diagnostic = NULL, remote_mta = ?5, delay_done = 1,
                 attempts = attempts + ?6, updated = ?7 WHERE id = ?1",
            )?
            .execute(params![
                rcpt,
                QueueKind::Shadow(server.to_string()).key(),
                micros(until),
                reason,
                server,
                if renew { 0 } else { 1 },
                micros(self.now)
            ])?;
        if !renew {
            self.events.push(
                self.base
                    .event(EventId::OutboundSucceeded, Some(address))
                    .status("2.0.0")
                    .detail(match tls {
                        Some(t) => format!("accepted by {server} {t}"),
                        None => format!("accepted by {server}"),
                    }),
            );
            self.events.push(
                self.base
                    .event(EventId::ShadowHeld, Some(address))
                    .detail(format!("kept until {server} confirms")),
            );
        }
        Ok(SettledAs::Deferred)
    }

    /// Failed for good: its report is pending (the DSN queue); event 2001.
    fn failed(&mut self, rcpt: i64, address: &str, f: &Failure) -> Result<SettledAs, StoreError> {
        self.c
            .prepare_cached(
                "UPDATE queue_rcpt SET state = 'failed', queue = ?2, status = ?3, reason = ?4, diagnostic = ?5,
                 remote_mta = ?6, report = 'pending', attempts = attempts + 1, updated = ?7 WHERE id = ?1",
            )?
            .execute(params![
                rcpt,
                QueueKind::Dsn.key(),
                f.status.to_string(),
                f.reason,
                f.diagnostic,
                f.remote_mta,
                micros(self.now)
            ])?;
        let mut e = self
            .base
            .event(EventId::RecipientFailed, Some(address))
            .status(f.status.to_string());
        e.detail = Some(match &f.diagnostic {
            Some(d) => format!("{}; the server said: {d}", f.reason),
            None => f.reason.clone(),
        });
        self.events.push(e);
        Ok(SettledAs::Failed {
            status: f.status.to_string(),
            reason: f.reason.clone(),
        })
    }
}

/// Records that a transfer of `msg` from `queue` has begun (queue state Active), with its
/// events (1020).
pub(super) fn transfer_started(
    c: &Connection,
    msg: i64,
    queue: &str,
    events: &[Event],
) -> Result<(), StoreError> {
    let queued: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM queue WHERE id = ?1)")?
        .query_row([msg], |r| r.get(0))?;
    if queued {
        c.prepare_cached(
            "INSERT OR REPLACE INTO queue_active (msg, queue, since) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![msg, queue, micros(Utc::now())])?;
    }
    track::insert(c, events)
}

/// Records reports (see [`crate::store::Queue::record_reports`]).
pub(super) fn record_reports(
    c: &Connection,
    spool: &Spool,
    msg: i64,
    reports: &[(i64, ReportState)],
    delays_done: &[i64],
    report_message: Option<&NewMessage>,
    events: &[Event],
) -> Result<Option<i64>, StoreError> {
    let report = match report_message {
        Some(m) => Some(submit(c, spool, m)?)
            .filter(|s| s.pending)
            .map(|s| s.rowid),
        None => None,
    };
    for (rcpt, state) in reports {
        c.prepare_cached(
            "UPDATE queue_rcpt SET report = ?3,
             queue = CASE WHEN state IN ('delivered', 'failed') THEN NULL ELSE queue END
             WHERE id = ?1 AND msg = ?2",
        )?
        .execute(params![rcpt, msg, report_str(state)])?;
    }
    for rcpt in delays_done {
        c.prepare_cached("UPDATE queue_rcpt SET delay_done = 1 WHERE id = ?1 AND msg = ?2")?
            .execute(params![rcpt, msg])?;
    }
    track::insert(c, events)?;
    finish_if_done(c, msg)?;
    Ok(report)
}

/// Moves an unreadable message aside: its rows, as text, go to `quarantine`; the content is kept
/// (its reference passes to the quarantine record).
pub(super) fn quarantine(
    c: &Connection,
    msg: i64,
    reason: &str,
    server: &str,
) -> Result<(), StoreError> {
    let exists: i64 = c.query_row("SELECT count(*) FROM queue WHERE id = ?1", [msg], |r| {
        r.get(0)
    })?;
    if exists == 0 {
        // Already quarantined (or gone) by another path.
        return Ok(());
    }
    let dump = |sql: &str| -> Result<Vec<String>, StoreError> {
        let mut st = c.prepare(sql)?;
        let n = st.column_count();
        let rows = st.query_map([msg], |r| {
            let mut cols = Vec::with_capacity(n);
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i)?;
                cols.push(format!("{v:?}"));
            }
            Ok(cols.join(", "))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let message = dump("SELECT * FROM queue WHERE id = ?1")?;
    let rcpts = dump("SELECT * FROM queue_rcpt WHERE msg = ?1")?;
    let queue_id: Option<String> = c
        .query_row("SELECT queue_id FROM queue WHERE id = ?1", [msg], |r| {
            r.get(0)
        })
        .optional()?;
    let record = format!(
        "queue: {}\nrecipients:\n{}",
        message.join("\n"),
        rcpts.join("\n")
    );
    let now = Utc::now();
    c.execute(
        "INSERT INTO quarantine (time, queue_id, reason, record) VALUES (?1, ?2, ?3, ?4)",
        params![micros(now), queue_id, reason, record],
    )?;
    c.execute("DELETE FROM queue_rcpt WHERE msg = ?1", [msg])?;
    c.execute("DELETE FROM queue_active WHERE msg = ?1", [msg])?;
    c.execute("DELETE FROM queue WHERE id = ?1", [msg])?;
    let e = Event {
        time: now,
        server: server.to_string(),
        event: EventId::Quarantined,
        queue_id: queue_id.unwrap_or_else(|| format!("row {msg}")),
        message_id: None,
        sender: String::new(),
        recipient: None,
        client_ip: None,
        size: None,
        status: None,
        detail: Some(format!(
            "unreadable queue record moved to quarantine: {reason}"
        )),
    };
    track::insert(c, &[e])?;
    Ok(())
}

/// A shadow recipient to release: its ID, message, address, queue ID, Message-ID, sender, size.
type ShadowRow = (i64, i64, String, String, Option<String>, String, i64);

/// Lets go of the shadow copies held for `server` of the messages with these organization
/// ids (it confirmed them): each recipient is delivered (event 2022), and a message with
/// nothing left is removed. `me` is this server's name, which prefixes the ids of messages
/// that started here. Returns the number of recipients released.
pub(super) fn release_shadows(
    c: &Connection,
    me: &str,
    server: &str,
    ids: &[String],
) -> Result<usize, StoreError> {
    let queue = QueueKind::Shadow(server.to_lowercase()).key();
    let now = chrono::Utc::now();
    let mut find = c.prepare_cached(
        "SELECT r.id, r.msg, r.address, q.queue_id, q.message_id, q.sender, q.size
         FROM queue_rcpt r JOIN queue q ON q.id = r.msg
         WHERE r.queue = ?1 AND r.state = 'deferred'
           AND (q.queue_id = ?2 OR json_extract(q.org_meta, '$.org_id') = ?3)",
    )?;
    let mut events = Vec::new();
    let mut msgs = Vec::new();
    for id in ids {
        let own = id
            .strip_prefix(me)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or("");
        let rows: Vec<ShadowRow> = find
            .query_map(params![queue, own, id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (rcpt, msg, address, queue_id, message_id, sender, size) in rows {
            c.prepare_cached(
                "UPDATE queue_rcpt SET state = 'delivered', queue = NULL, next_attempt = NULL,
                 updated = ?2 WHERE id = ?1",
            )?
            .execute(params![rcpt, micros(now)])?;
            let base = EventBase {
                server: me.to_string(),
                queue_id,
                message_id,
                sender,
                client_ip: None,
                size: Some(size as u64),
            };
            events.push(
                base.event(EventId::ShadowReleased, Some(&address))
                    .detail(format!("{server} confirmed it")),
            );
            msgs.push(msg);
        }
    }
    track::insert(c, &events)?;
    msgs.sort_unstable();
    msgs.dedup();
    for m in msgs {
        finish_if_done(c, m)?;
    }
    Ok(events.len())
}
