//! The queue viewer's queries and the operator's actions.

use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{from_micros, micros, queue, track};
use crate::model::{hold_for, Hold, QueueKind};
use crate::store::{
    AdminAction, ControlChange, QuarantineEntry, QueueFilter, QueueInfo, QueueState, StoreError,
    SummaryRow, SUMMARY_BUCKETS,
};
use crate::track::{Event, EventId};

/// The SQL condition (on `queue q`) and arguments for a filter.
fn condition(f: &QueueFilter) -> (String, Vec<String>) {
    let mut cond = vec!["1".to_string()];
    let mut args: Vec<String> = Vec::new();
    let arg = |v: String, args: &mut Vec<String>| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(q) = &f.queue_id {
        let a = arg(q.to_uppercase(), &mut args);
        cond.push(format!("q.queue_id = {a}"));
    }
    if let Some(m) = &f.message_id {
        let a = arg(
            m.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
            &mut args,
        );
        cond.push(format!("q.message_id = {a}"));
    }
    if let Some(k) = &f.queue {
        let a = arg(k.key(), &mut args);
        cond.push(format!(
            "EXISTS (SELECT 1 FROM queue_rcpt r WHERE r.msg = q.id AND r.queue = {a})"
        ));
    }
    if let Some(s) = &f.sender {
        let a = arg(
            s.trim_start_matches('<').trim_end_matches('>').to_string(),
            &mut args,
        );
        cond.push(format!("q.sender = {a} COLLATE NOCASE"));
    }
    if let Some(r) = &f.recipient {
        let a = arg(
            r.trim_start_matches('<').trim_end_matches('>').to_string(),
            &mut args,
        );
        cond.push(format!(
            "EXISTS (SELECT 1 FROM queue_rcpt r WHERE r.msg = q.id AND (r.address = {a} COLLATE NOCASE OR r.original = {a} COLLATE NOCASE))"
        ));
    }
    if let Some(d) = &f.domain {
        let a = arg(format!("%@{}", d.to_lowercase()), &mut args);
        cond.push(format!(
            "EXISTS (SELECT 1 FROM queue_rcpt r WHERE r.msg = q.id AND r.address LIKE {a})"
        ));
    }
    if let Some(t) = f.older_than {
        let a = arg(micros(t).to_string(), &mut args);
        cond.push(format!("q.arrival <= CAST({a} AS INTEGER)"));
    }
    (cond.join(" AND "), args)
}

fn matching(c: &Connection, f: &QueueFilter) -> Result<Vec<i64>, StoreError> {
    let (cond, args) = condition(f);
    let mut st = c.prepare(&format!(
        "SELECT q.id FROM queue q WHERE {cond} ORDER BY q.id"
    ))?;
    let ids = st
        .query_map(params_from_iter(args.iter()), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Every queue with its figures: counts from `queue_stats` (kept by triggers), the rest from
/// one index seek each, so that the answer takes the same time for ten messages or a million.
/// Queues an administrator has disabled or scheduled are shown even when empty.
pub(super) fn queues(c: &Connection, now: DateTime<Utc>) -> Result<Vec<QueueInfo>, StoreError> {
    let mut st = c.prepare(
        "SELECT queue, recipients, messages, size, last_error FROM queue_stats
         WHERE recipients > 0
         UNION SELECT queue, 0, 0, 0, NULL FROM queue_control
         WHERE queue != '*' AND queue NOT IN (SELECT queue FROM queue_stats WHERE recipients > 0)
         ORDER BY 1",
    )?;
    let rows: Vec<(String, i64, i64, i64, Option<String>)> = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let controls = queue::controls(c)?;
    let mut out: Vec<QueueInfo> = Vec::new();
    for (key, recipients, messages, size, last_error) in rows {
        let kind = QueueKind::parse(&key);
        let remote = matches!(kind, QueueKind::Link(_) | QueueKind::Unreachable);
        let hold = hold_for(&controls, &key, remote, now);
        let oldest: Option<i64> = c
            .prepare_cached(
                "SELECT q.arrival FROM queue_rcpt r JOIN queue q ON q.id = r.msg
                 WHERE r.queue = ?1 ORDER BY r.id LIMIT 1",
            )?
            .query_row([&key], |r| r.get(0))
            .optional()?;
        let next: Option<i64> = c
            .prepare_cached(
                "SELECT next_attempt FROM queue_rcpt INDEXED BY queue_rcpt_queue_next
                 WHERE queue = ?1 AND next_attempt IS NOT NULL AND state = 'deferred'
                 ORDER BY next_attempt LIMIT 1",
            )?
            .query_row([&key], |r| r.get(0))
            .optional()?;
        let active: i64 = c
            .prepare_cached("SELECT count(*) FROM queue_active WHERE queue = ?1")?
            .query_row([&key], |r| r.get(0))?;
        let state = if active > 0 {
            QueueState::Active
        } else if recipients <= 0 && hold.is_none() {
            QueueState::Empty
        } else {
            match &hold {
                Some(Hold::Disabled { .. }) => QueueState::Disabled,
                Some(Hold::Scheduled { .. }) => QueueState::Scheduled,
                None => flow_state(c, &key, now)?,
            }
        };
        out.push(QueueInfo {
            kind,
            state,
            messages: messages.max(0) as u64,
            recipients: recipients.max(0) as u64,
            size: size.max(0) as u64,
            oldest: oldest.map(from_micros),
            next_retry: next.map(from_micros),
            last_error,
            active: active.max(0) as u64,
            hold,
        });
    }
    for sys in QueueKind::system() {
        if !out.iter().any(|q| q.kind == sys) {
            let remote = sys == QueueKind::Unreachable;
            let hold = hold_for(&controls, &sys.key(), remote, now);
            out.push(QueueInfo {
                kind: sys,
                state: match hold {
                    Some(Hold::Disabled { .. }) => QueueState::Disabled,
                    _ => QueueState::Empty,
                },
                messages: 0,
                recipients: 0,
                size: 0,
                oldest: None,
                next_retry: None,
                last_error: None,
                active: 0,
                hold,
            });
        }
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind));
    Ok(out)
}

/// The state of a queue that nothing holds: Ready when work is due, Retry when everything waits
/// for its next attempt, Frozen when everything is frozen.
fn flow_state(c: &Connection, key: &str, now: DateTime<Utc>) -> Result<QueueState, StoreError> {
    let due: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM queue_rcpt r INDEXED BY queue_rcpt_queue_next
             JOIN queue q ON q.id = r.msg
             WHERE r.queue = ?1 AND (r.next_attempt IS NULL OR r.next_attempt <= ?2)
               AND (r.state IN ('ready', 'deferred') OR r.report = 'pending') AND q.frozen = 0)",
        )?
        .query_row(rusqlite::params![key, micros(now)], |r| r.get(0))?;
    if due {
        return Ok(QueueState::Ready);
    }
    let thawed: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM queue_rcpt r JOIN queue q ON q.id = r.msg
             WHERE r.queue = ?1 AND q.frozen = 0)",
        )?
        .query_row([key], |r| r.get(0))?;
    Ok(if thawed {
        QueueState::Retry
    } else {
        QueueState::Frozen
    })
}

/// Applies an administrator's change to an outbound queue's setting (or to all, `*`).
pub(super) fn control(
    c: &Connection,
    queue: &str,
    change: ControlChange,
    by: &str,
) -> Result<(), StoreError> {
    let now = micros(Utc::now());
    c.execute(
        "INSERT INTO queue_control (queue, by) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![queue, by],
    )?;
    match change {
        ControlChange::Disable => c.execute(
            "UPDATE queue_control SET disabled_since = coalesce(disabled_since, ?2), by = ?3
             WHERE queue = ?1",
            params![queue, now, by],
        )?,
        ControlChange::Enable => c.execute(
            "UPDATE queue_control SET disabled_since = NULL, by = ?2 WHERE queue = ?1",
            params![queue, by],
        )?,
        ControlChange::Schedule(t) => c.execute(
            "UPDATE queue_control SET scheduled_until = ?2, by = ?3 WHERE queue = ?1",
            params![queue, micros(t), by],
        )?,
        ControlChange::Unschedule => c.execute(
            "UPDATE queue_control SET scheduled_until = NULL, by = ?2 WHERE queue = ?1",
            params![queue, by],
        )?,
    };
    // A setting with nothing left in force is forgotten (a schedule that has passed is too, by
    // the next change).
    c.execute(
        "DELETE FROM queue_control WHERE queue = ?1 AND disabled_since IS NULL
         AND (scheduled_until IS NULL OR scheduled_until <= ?2)",
        params![queue, now],
    )?;
    Ok(())
}

/// The messages matching a filter.
pub(super) fn messages(
    c: &Connection,
    f: &QueueFilter,
) -> Result<Vec<crate::model::QueuedMessage>, StoreError> {
    let ids = matching(c, f)?;
    let loaded = queue::load_many(c, ids, Utc::now())?;
    let mut msgs = loaded.messages;
    for (id, reason) in loaded.unreadable {
        tracing::warn!(message = id, %reason, "unreadable queue record not shown");
    }
    msgs.sort_by_key(|m| m.rowid);
    Ok(msgs)
}

/// Applies an operator's action; returns the number of messages touched.
pub(super) fn act(
    c: &Connection,
    f: &QueueFilter,
    action: AdminAction,
    server: &str,
) -> Result<usize, StoreError> {
    let ids = matching(c, f)?;
    let now = Utc::now();
    let mut touched = 0;
    for id in ids {
        let (qid, mid, sender): (String, Option<String>, String) = c.query_row(
            "SELECT queue_id, message_id, sender FROM queue WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let changed = match action {
            AdminAction::Freeze => c.execute(
                "UPDATE queue SET frozen = 1 WHERE id = ?1 AND frozen = 0",
                [id],
            )?,
            AdminAction::Thaw => c.execute(
                "UPDATE queue SET frozen = 0 WHERE id = ?1 AND frozen = 1",
                [id],
            )?,
            // A retry of a queue retries the recipients waiting in it; of a message, all of its.
            AdminAction::Retry => c.execute(
                "UPDATE queue_rcpt SET state = 'ready', next_attempt = NULL
                 WHERE msg = ?1 AND state = 'deferred' AND (?2 IS NULL OR queue = ?2)",
                params![id, f.queue.as_ref().map(QueueKind::key)],
            )?,
            AdminAction::Delete { ndr: false } => {
                queue::remove(c, id)?;
                1
            }
            AdminAction::Delete { ndr: true } => {
                let n = c.execute(
                    "UPDATE queue_rcpt SET state = 'failed', queue = 'dsn', status = '5.3.2',
                     reason = 'the message was deleted from the queue by an administrator before it could be delivered',
                     diagnostic = NULL, report = 'pending', updated = ?2
                     WHERE msg = ?1 AND state IN ('ready', 'deferred')",
                    rusqlite::params![id, micros(now)],
                )?;
                // A frozen message is thawed so that its report can go out.
                c.execute("UPDATE queue SET frozen = 0 WHERE id = ?1", [id])?;
                queue::finish_if_done(c, id)?;
                n
            }
        };
        if changed == 0 {
            continue;
        }
        touched += 1;
        let e = Event {
            time: now,
            server: server.to_string(),
            event: EventId::AdminAction,
            queue_id: qid,
            message_id: mid,
            sender,
            recipient: None,
            client_ip: None,
            size: None,
            status: None,
            detail: Some(action.describe().to_string()),
        };
        track::insert(c, &[e])?;
    }
    Ok(touched)
}

/// Recipients waiting, by domain and age.
pub(super) fn summary(c: &Connection, now: DateTime<Utc>) -> Result<Vec<SummaryRow>, StoreError> {
    let mut st = c.prepare(
        "SELECT lower(substr(r.address, instr(r.address, '@') + 1)), q.arrival
         FROM queue_rcpt r JOIN queue q ON q.id = r.msg WHERE r.state IN ('ready', 'deferred')",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out: Vec<SummaryRow> = Vec::new();
    for row in rows {
        let (domain, arrival) = row?;
        let age_min = ((now - from_micros(arrival)).num_seconds().max(0) / 60) as u64;
        let bucket = SUMMARY_BUCKETS
            .iter()
            .position(|&b| age_min < b)
            .unwrap_or(SUMMARY_BUCKETS.len());
        let i = match out.iter().position(|s| s.domain == domain) {
            Some(i) => i,
            None => {
                out.push(SummaryRow {
                    domain,
                    total: 0,
                    buckets: [0; 9],
                });
                out.len() - 1
            }
        };
        out[i].total += 1;
        out[i].buckets[bucket] += 1;
    }
    out.sort_by(|a, b| b.total.cmp(&a.total).then(a.domain.cmp(&b.domain)));
    Ok(out)
}

/// Quarantined records, newest first.
pub(super) fn quarantined(c: &Connection) -> Result<Vec<QuarantineEntry>, StoreError> {
    let mut st =
        c.prepare("SELECT time, queue_id, reason, record FROM quarantine ORDER BY id DESC")?;
    let rows = st.query_map([], |r| {
        Ok(QuarantineEntry {
            time: from_micros(r.get(0)?),
            queue_id: r.get(1)?,
            reason: r.get(2)?,
            record: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
