//! Queue tables: messages, their recipients, and the shared content.

use chrono::Utc;
use mailroom_proto::smtp::{Body, DsnRet, Notify, Status};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_micros, micros, track};
use crate::queue::{
    EnvelopeParams, MessageKind, NewMessage, QueuedMessage, QueuedRecipient, RcptState,
    ReportState, Route, Settle,
};
use crate::store::{SettledAs, StoreError};
use crate::track::{EventBase, EventId};

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

fn report_str(r: &ReportState) -> String {
    match r {
        ReportState::Pending => "pending".into(),
        ReportState::Sent(q) => format!("sent:{q}"),
        ReportState::Absorbed => "absorbed".into(),
        ReportState::NotRequested => "not-requested".into(),
    }
}

fn parse_report(s: &str) -> Option<ReportState> {
    Some(match s {
        "pending" => ReportState::Pending,
        "absorbed" => ReportState::Absorbed,
        "not-requested" => ReportState::NotRequested,
        _ => ReportState::Sent(s.strip_prefix("sent:")?.to_string()),
    })
}

/// Stores a message: content, envelope, recipients and events.
pub(super) fn submit(c: &Connection, m: &NewMessage) -> Result<i64, StoreError> {
    c.prepare_cached("INSERT INTO contents (data, refs) VALUES (?1, 1)")?
        .execute([&m.content])?;
    let content_id = c.last_insert_rowid();
    c.prepare_cached(
        "INSERT INTO queue (queue_id, kind, sender, envid, ret, body, smtputf8, message_id,
                            arrival, client_ip, content_id, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
    ])?;
    let msg = c.last_insert_rowid();
    let now = micros(Utc::now());
    let mut st = c.prepare_cached(
        "INSERT INTO queue_rcpt (msg, address, original, orcpt, notify, route, user_id, state, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'ready', ?8)",
    )?;
    for r in &m.recipients {
        let (route, user) = match r.route {
            Route::Local { user_id } => ("local", Some(user_id)),
            Route::Remote => ("remote", None),
            Route::Unresolved => ("unresolved", None),
        };
        st.execute(params![
            msg,
            r.address,
            r.original,
            r.orcpt,
            r.notify.map(|n| n.to_string()),
            route,
            user,
            now
        ])?;
    }
    track::insert(c, &m.events)?;
    Ok(msg)
}

const MSG_COLS: &str =
    "id, queue_id, kind, sender, envid, ret, body, smtputf8, message_id, arrival, \
                        client_ip, content_id, size";

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
        arrival: from_micros(r.get(9)?),
        client_ip: r.get(10)?,
        content_id: r.get(11)?,
        size: r.get::<_, i64>(12)? as u64,
        recipients: Vec::new(),
    }))
}

fn recipients(c: &Connection, msg: i64) -> Result<Vec<QueuedRecipient>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT id, address, original, orcpt, notify, route, user_id, state, status, reason,
                diagnostic, report, updated
         FROM queue_rcpt WHERE msg = ?1 ORDER BY id",
    )?;
    let mut out = Vec::new();
    let mut rows = st.query([msg])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let bad = |what: &str| StoreError::Corrupt(format!("recipient {id}: {what}"));
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
        let at = from_micros(r.get(12)?);
        let state = match r.get::<_, String>(7)?.as_str() {
            "ready" => RcptState::Ready,
            "delivered" => RcptState::Delivered { at },
            "failed" => {
                let status: Option<String> = r.get(8)?;
                let status = status
                    .as_deref()
                    .and_then(Status::parse)
                    .ok_or_else(|| bad("status"))?;
                let report: Option<String> = r.get(11)?;
                let report = report
                    .as_deref()
                    .and_then(parse_report)
                    .ok_or_else(|| bad("report"))?;
                RcptState::Failed {
                    status,
                    reason: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                    diagnostic: r.get(10)?,
                    at,
                    report,
                }
            }
            _ => return Err(bad("state")),
        };
        out.push(QueuedRecipient {
            id,
            address: r.get(1)?,
            original: r.get(2)?,
            orcpt: r.get(3)?,
            notify,
            route,
            state,
        });
    }
    Ok(out)
}

/// Loads one message with its recipients.
pub(super) fn load(c: &Connection, rowid: i64) -> Result<Option<QueuedMessage>, StoreError> {
    let row = c
        .prepare_cached(&format!("SELECT {MSG_COLS} FROM queue WHERE id = ?1"))?
        .query_row([rowid], message_row)
        .optional()?;
    match row {
        None => Ok(None),
        Some(Err(e)) => Err(StoreError::Corrupt(format!("queue message {rowid}: {e}"))),
        Some(Ok(mut m)) => {
            m.recipients = recipients(c, rowid)?;
            Ok(Some(m))
        }
    }
}

fn load_many(c: &Connection, ids: Vec<i64>) -> Result<Vec<QueuedMessage>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match load(c, id) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            // An unreadable record must not stop the rest of the queue; it stays in place for
            // the operator (quarantine and `queue show --quarantined` come with the queue viewer).
            Err(StoreError::Corrupt(e)) => {
                tracing::error!(error = %e, "unreadable queue record skipped")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Messages with recipients in state Ready.
pub(super) fn ready(
    c: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<QueuedMessage>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT msg FROM queue_rcpt WHERE state = 'ready' AND msg > ?1 ORDER BY msg LIMIT ?2",
    )?;
    let ids: Vec<i64> = st
        .query_map(params![after, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    load_many(c, ids)
}

/// Messages with failures awaiting a report.
pub(super) fn unreported(c: &Connection, limit: usize) -> Result<Vec<QueuedMessage>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT msg FROM queue_rcpt WHERE state = 'failed' AND report = 'pending'
         ORDER BY msg LIMIT ?1",
    )?;
    let ids: Vec<i64> = st
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    load_many(c, ids)
}

/// The content of a message.
pub(super) fn content(c: &Connection, id: i64) -> Result<Vec<u8>, StoreError> {
    c.prepare_cached("SELECT data FROM contents WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("content {id}")))
}

/// Drops one reference to a content, deleting it with the last.
pub(super) fn release_content(c: &Connection, id: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE contents SET refs = refs - 1 WHERE id = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM contents WHERE id = ?1 AND refs <= 0")?
        .execute([id])?;
    Ok(())
}

/// Removes a message once no recipient needs anything more.
fn finish_if_done(c: &Connection, msg: i64) -> Result<(), StoreError> {
    let open: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM queue_rcpt WHERE msg = ?1
             AND (state = 'ready' OR (state = 'failed' AND report = 'pending'))",
        )?
        .query_row([msg], |r| r.get(0))?;
    if open > 0 {
        return Ok(());
    }
    let content: Option<i64> = c
        .prepare_cached("SELECT content_id FROM queue WHERE id = ?1")?
        .query_row([msg], |r| r.get(0))
        .optional()?;
    c.prepare_cached("DELETE FROM queue_rcpt WHERE msg = ?1")?
        .execute([msg])?;
    c.prepare_cached("DELETE FROM queue WHERE id = ?1")?
        .execute([msg])?;
    if let Some(id) = content {
        release_content(c, id)?;
    }
    Ok(())
}

/// Settles recipients (see [`crate::store::Store::settle`]).
pub(super) fn settle(
    c: &Connection,
    msg: i64,
    base: &EventBase,
    results: Vec<(i64, Settle)>,
) -> Result<Vec<(i64, SettledAs)>, StoreError> {
    let Some((content_id, size)) = c
        .prepare_cached("SELECT content_id, size FROM queue WHERE id = ?1")?
        .query_row([msg], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
    else {
        return Ok(results
            .into_iter()
            .map(|(id, _)| (id, SettledAs::AlreadySettled))
            .collect());
    };
    let now = Utc::now();
    let mut out = Vec::with_capacity(results.len());
    let mut events = Vec::new();
    for (rcpt, settle) in results {
        let row: Option<(String, String)> = c
            .prepare_cached("SELECT state, address FROM queue_rcpt WHERE id = ?1 AND msg = ?2")?
            .query_row(params![rcpt, msg], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((state, address)) = row else {
            out.push((rcpt, SettledAs::AlreadySettled));
            continue;
        };
        if state != "ready" {
            out.push((rcpt, SettledAs::AlreadySettled));
            continue;
        }
        let settled = match settle {
            Settle::Delivered(None) => SettledAs::Delivered,
            Settle::Delivered(Some(drop)) => {
                let total = size + drop.prefix.len() as i64;
                match super::mailbox::insert(c, drop.user_id, content_id, &drop.prefix, total, now)?
                {
                    None => SettledAs::Delivered,
                    Some((status, reason)) => SettledAs::Failed { status, reason },
                }
            }
            Settle::Failed {
                status,
                reason,
                diagnostic,
            } => {
                c.prepare_cached("UPDATE queue_rcpt SET diagnostic = ?2 WHERE id = ?1")?
                    .execute(params![rcpt, diagnostic])?;
                SettledAs::Failed {
                    status: status.to_string(),
                    reason,
                }
            }
        };
        match &settled {
            SettledAs::Delivered => {
                c.prepare_cached(
                    "UPDATE queue_rcpt SET state = 'delivered', updated = ?2 WHERE id = ?1",
                )?
                .execute(params![rcpt, micros(now)])?;
                events.push(
                    base.event(EventId::DeliveredLocally, Some(&address))
                        .status("2.0.0"),
                );
            }
            SettledAs::Failed { status, reason } => {
                c.prepare_cached(
                    "UPDATE queue_rcpt SET state = 'failed', status = ?2, reason = ?3,
                     report = 'pending', updated = ?4 WHERE id = ?1",
                )?
                .execute(params![rcpt, status, reason, micros(now)])?;
                events.push(
                    base.event(EventId::RecipientFailed, Some(&address))
                        .status(status.clone())
                        .detail(reason.clone()),
                );
            }
            SettledAs::AlreadySettled => {}
        }
        out.push((rcpt, settled));
    }
    track::insert(c, &events)?;
    finish_if_done(c, msg)?;
    Ok(out)
}

/// Records reports (see [`crate::store::Store::record_reports`]).
pub(super) fn record_reports(
    c: &Connection,
    msg: i64,
    reports: &[(i64, ReportState)],
    report_message: Option<&NewMessage>,
    events: &[crate::track::Event],
) -> Result<Option<i64>, StoreError> {
    let ndr = match report_message {
        Some(m) => Some(submit(c, m)?),
        None => None,
    };
    for (rcpt, state) in reports {
        c.prepare_cached(
            "UPDATE queue_rcpt SET report = ?3 WHERE id = ?1 AND msg = ?2 AND state = 'failed'",
        )?
        .execute(params![rcpt, msg, report_str(state)])?;
    }
    track::insert(c, events)?;
    finish_if_done(c, msg)?;
    Ok(ndr)
}
