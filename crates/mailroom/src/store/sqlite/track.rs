//! The tracking log: events, and the keys messages are found by.

use std::collections::{BTreeSet, HashSet};

use rusqlite::{params, params_from_iter, Connection};

use super::{from_micros, micros};
use crate::store::{StoreError, TrackFilter};
use crate::track::{Event, EventId};

fn bare(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// The search keys of an event: its Message-ID, sender and recipient.
fn keys(e: &Event) -> impl Iterator<Item = String> + '_ {
    let m = e.message_id.as_ref().map(|m| format!("m:{m}"));
    // The null sender is a key too ("s:"): `track --sender ''` finds reports.
    let s = Some(format!("s:{}", e.sender.to_lowercase()));
    let r = e
        .recipient
        .as_ref()
        .map(|r| format!("r:{}", r.to_lowercase()));
    m.into_iter().chain(s).chain(r)
}

pub(super) fn insert(c: &Connection, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut st = c.prepare_cached(
        "INSERT INTO track (time, server, event, queue_id, message_id, sender, recipient, client_ip,
                            size, status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut seen: HashSet<(String, &str)> = HashSet::new();
    let mut key =
        c.prepare_cached("INSERT OR IGNORE INTO track_keys (key, queue_id) VALUES (?1, ?2)")?;
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
        for k in keys(e) {
            if seen.insert((k.clone(), e.queue_id.as_str())) {
                key.execute(params![k, e.queue_id])?;
            }
        }
    }
    Ok(())
}

/// Queue IDs with a key.
fn with_key(c: &Connection, key: &str) -> Result<BTreeSet<String>, StoreError> {
    let mut st = c.prepare_cached("SELECT queue_id FROM track_keys WHERE key = ?1")?;
    let ids = st
        .query_map([key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

pub(super) fn query(c: &Connection, f: &TrackFilter) -> Result<Vec<Event>, StoreError> {
    // First the messages (queue IDs) that match every filter given, then all of their events.
    let mut sets: Vec<BTreeSet<String>> = Vec::new();
    if let Some(m) = &f.message_id {
        let m = bare(m);
        let mut ids = with_key(c, &format!("m:{m}"))?;
        let direct: i64 = c
            .prepare_cached("SELECT count(*) FROM track WHERE queue_id = ?1")?
            .query_row([m.to_uppercase()], |r| r.get(0))?;
        if direct > 0 {
            ids.insert(m.to_uppercase());
        }
        sets.push(ids);
    }
    if let Some(s) = &f.sender {
        sets.push(with_key(c, &format!("s:{}", bare(s).to_lowercase()))?);
    }
    if let Some(r) = &f.recipient {
        sets.push(with_key(c, &format!("r:{}", bare(r).to_lowercase()))?);
    }
    let mut ids: BTreeSet<String> = match sets.split_first() {
        None => {
            let mut st = c.prepare("SELECT DISTINCT queue_id FROM track")?;
            let all = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            all
        }
        Some((first, rest)) => first
            .iter()
            .filter(|q| rest.iter().all(|s| s.contains(*q)))
            .cloned()
            .collect(),
    };
    if let Some(t) = f.since {
        let mut st = c.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM track WHERE queue_id = ?1 AND time >= ?2)",
        )?;
        let mut keep = BTreeSet::new();
        for q in ids {
            if st.query_row(params![q, micros(t)], |r| r.get::<_, bool>(0))? {
                keep.insert(q);
            }
        }
        ids = keep;
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let mut out: Vec<(i64, Event)> = Vec::new();
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT id, time, server, event, queue_id, message_id, sender, recipient, client_ip, size, status, detail
             FROM track WHERE queue_id IN ({marks})"
        );
        let mut st = c.prepare(&sql)?;
        let mut rows = st.query(params_from_iter(chunk.iter()))?;
        while let Some(r) = rows.next()? {
            let n: u16 = r.get(3)?;
            let Ok(event) = EventId::try_from(n) else {
                tracing::warn!(event = n, "tracking event with an unknown ID skipped");
                continue;
            };
            out.push((
                r.get(0)?,
                Event {
                    time: from_micros(r.get(1)?),
                    server: r.get(2)?,
                    event,
                    queue_id: r.get(4)?,
                    message_id: r.get(5)?,
                    sender: r.get(6)?,
                    recipient: r.get(7)?,
                    client_ip: r.get(8)?,
                    size: r.get::<_, Option<i64>>(9)?.map(|s| s as u64),
                    status: r.get(10)?,
                    detail: r.get(11)?,
                },
            ));
        }
    }
    out.sort_by_key(|(id, e)| (e.time, *id));
    Ok(out.into_iter().map(|(_, e)| e).collect())
}
