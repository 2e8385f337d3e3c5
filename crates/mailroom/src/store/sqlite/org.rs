//! The organization's row: membership and replicated state, as JSON.

use rusqlite::{params, Connection, OptionalExtension};

use super::micros;
use crate::org::{Membership, OrgState};
use crate::store::StoreError;

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
            "UPDATE org SET state = ?1, updated = ?2 WHERE id = 1",
            params![json(&current)?, micros(chrono::Utc::now())],
        )?;
    }
    Ok((current, changed))
}

pub(super) fn leave(c: &Connection) -> Result<(), StoreError> {
    c.execute("DELETE FROM org", [])?;
    Ok(())
}
