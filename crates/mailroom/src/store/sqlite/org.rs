//! The organization's row: membership and replicated state, as JSON.

use rusqlite::{params, Connection, OptionalExtension};

use super::micros;
use crate::model::{NewMessage, OrgMeta};
use crate::org::{Membership, OrgState};
use crate::store::StoreError;
use crate::track::{Event, EventBase, EventId};

fn read(c: &Connection) -> Result<Option<(Membership, OrgState)>, StoreError> {
    let row: Option<(String, String)> = c
        .query_row("SELECT membership, state FROM org WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((m, s)) = row else {
        return Ok(None);
    };
    let m: Membership = serde_json::from_str(&m)
        .map_err(|e| StoreError::Corrupt(format!("the organization membership: {e}")))?;
    let s: OrgState = serde_json::from_str(&s)
        .map_err(|e| StoreError::Corrupt(format!("the organization state: {e}")))?;
    Ok(Some((m, s)))
}

pub(super) fn changed_at(c: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(
        c.query_row("SELECT updated FROM org WHERE id = 1", [], |r| r.get(0))
            .optional()?,
    )
}

pub(super) fn load(c: &Connection) -> Result<Option<(Membership, OrgState)>, StoreError> {
    read(c)
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Engine(format!("cannot encode: {e}")))
}

pub(super) fn init(c: &Connection, m: &Membership, s: &OrgState) -> Result<(), StoreError> {
    if let Some((old, _)) = read(c)? {
        return Err(StoreError::Exists(format!(
            "membership of organization {}",
            old.org
        )));
    }
    c.execute(
        "INSERT INTO org (id, membership, state, updated) VALUES (1, ?1, ?2, ?3)",
        params![json(m)?, json(s)?, micros(chrono::Utc::now())],
    )?;
    Ok(())
}

pub(super) fn merge(c: &Connection, s: &OrgState) -> Result<(OrgState, bool), StoreError> {
    let Some((_, mut current)) = read(c)? else {
        return Err(StoreError::NotFound(
            "this server's organization (mailroom org create or org join)".into(),
        ));
    };
    if current.id != s.id {
        return Err(StoreError::Conflict(format!(
            "the state is of organization {}, this server is in {}",
            s.id, current.id
        )));
    }
    let changed = current.merge(s);
    if changed {
        c.execute(
            "UPDATE org SET state = ?1, updated = max(updated + 1, ?2) WHERE id = 1",
            params![json(&current)?, micros(chrono::Utc::now())],
        )?;
    }
    Ok((current, changed))
}

pub(super) fn leave(c: &Connection) -> Result<(), StoreError> {
    c.execute("DELETE FROM org", [])?;
    Ok(())
}

/// Records the (organization id, recipient) pairs of a message from the organization; returns
/// the message without the recipients already seen (and with event 2020 for each), or `None`
/// when none was.
pub(super) fn dedup(
    c: &Connection,
    m: &NewMessage,
    meta: &OrgMeta,
) -> Result<Option<NewMessage>, StoreError> {
    let now = micros(chrono::Utc::now());
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO org_seen (org_id, rcpt, time) VALUES (?1, ?2, ?3)",
    )?;
    let mut fresh = Vec::with_capacity(m.recipients.len());
    for r in &m.recipients {
        fresh.push(st.execute(params![meta.org_id, r.address.to_lowercase(), now])? == 1);
    }
    if fresh.iter().all(|f| *f) {
        return Ok(None);
    }
    let mut out = NewMessage {
        recipients: Vec::new(),
        ..m.clone()
    };
    for (r, f) in m.recipients.iter().zip(fresh) {
        if f {
            out.recipients.push(r.clone());
        } else {
            let mut e = out.events.first().cloned().unwrap_or_else(|| base_event(m));
            e.event = EventId::DuplicateDropped;
            e.recipient = Some(r.address.clone());
            e.status = None;
            e.detail = Some(format!(
                "{} was already accepted here for this recipient (organization id {}); this copy is dropped",
                meta.origin_queue_id, meta.org_id
            ));
            out.events.push(e);
        }
    }
    Ok(Some(out))
}

fn base_event(m: &NewMessage) -> Event {
    EventBase {
        server: String::new(),
        queue_id: m.queue_id.to_string(),
        message_id: m.message_id.clone(),
        sender: m.sender.clone(),
        client_ip: m.client_ip.clone(),
        size: Some(m.content.len()),
    }
    .event(EventId::DuplicateDropped, None)
}

/// Records that this server is finished with a message from the organization: the server it
/// came from is told, and lets its shadow copy go.
pub(super) fn discharge(c: &Connection, meta: &OrgMeta) -> Result<(), StoreError> {
    let Some(from) = meta.hops.last() else {
        return Ok(());
    };
    c.prepare_cached("INSERT OR IGNORE INTO org_discharge (server, org_id) VALUES (?1, ?2)")?
        .execute(params![from.to_lowercase(), meta.org_id])?;
    Ok(())
}

/// Discharges to send: (server, organization ids), at most `limit` ids.
pub(super) fn discharges(
    c: &Connection,
    limit: usize,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT server, org_id FROM org_discharge ORDER BY server LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for row in rows {
        let (server, id) = row?;
        match out.last_mut() {
            Some((s, ids)) if *s == server => ids.push(id),
            _ => out.push((server, vec![id])),
        }
    }
    Ok(out)
}

/// Forgets discharges that were sent.
pub(super) fn discharged(c: &Connection, server: &str, ids: &[String]) -> Result<(), StoreError> {
    let mut st = c.prepare_cached("DELETE FROM org_discharge WHERE server = ?1 AND org_id = ?2")?;
    for id in ids {
        st.execute(params![server, id])?;
    }
    Ok(())
}
