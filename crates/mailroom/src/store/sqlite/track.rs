//! The tracking log table.

use rusqlite::{params, Connection};

use super::{from_micros, micros};
use crate::store::{StoreError, TrackFilter};
use crate::track::{Event, EventId};

pub(super) fn insert(c: &Connection, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut st = c.prepare_cached(
        "INSERT INTO track (time, server, event, queue_id, message_id, sender, recipient, client_ip,
                            size, status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for e in events {
        st.execute(params![
            micros(e.time),
            e.server,
            e.event.number(),
            e.queue_id,
            e.message_id,
            e.sender,
            e.recipient,
            e.client_ip,
            e.size.map(|s| s as i64),
            e.status,
            e.detail,
        ])?;
    }
    Ok(())
}

pub(super) fn query(c: &Connection, f: &TrackFilter) -> Result<Vec<Event>, StoreError> {
    // First the messages (queue IDs) that match, then all of their events.
    let mut cond = Vec::new();
    let mut args: Vec<String> = Vec::new();
    if let Some(m) = &f.message_id {
        let bare = m
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        args.push(bare.clone());
        args.push(bare);
        cond.push(format!(
            "(message_id = ?{} OR queue_id = ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    if let Some(s) = &f.sender {
        args.push(
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        );
        cond.push(format!("sender = ?{} COLLATE NOCASE", args.len()));
    }
    if let Some(r) = &f.recipient {
        args.push(
            r.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        );
        cond.push(format!("recipient = ?{} COLLATE NOCASE", args.len()));
    }
    if let Some(t) = f.since {
        args.push(micros(t).to_string());
        cond.push(format!("time >= CAST(?{} AS INTEGER)", args.len()));
    }
    let filter = if cond.is_empty() {
        "1".to_string()
    } else {
        cond.join(" AND ")
    };
    let sql = format!(
        "SELECT time, server, event, queue_id, message_id, sender, recipient, client_ip, size, status, detail
         FROM track WHERE queue_id IN (SELECT DISTINCT queue_id FROM track WHERE {filter})
         ORDER BY time, id"
    );
    let mut st = c.prepare(&sql)?;
    let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let n: u16 = r.get(2)?;
        let Ok(event) = EventId::try_from(n) else {
            tracing::warn!(event = n, "tracking event with an unknown ID skipped");
            continue;
        };
        out.push(Event {
            time: from_micros(r.get(0)?),
            server: r.get(1)?,
            event,
            queue_id: r.get(3)?,
            message_id: r.get(4)?,
            sender: r.get(5)?,
            recipient: r.get(6)?,
            client_ip: r.get(7)?,
            size: r.get::<_, Option<i64>>(8)?.map(|s| s as u64),
            status: r.get(9)?,
            detail: r.get(10)?,
        });
    }
    Ok(out)
}
