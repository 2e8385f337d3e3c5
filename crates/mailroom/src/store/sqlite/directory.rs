//! Directory tables: users, aliases and distribution lists.

use rusqlite::{params, Connection, OptionalExtension};

use super::micros;
use crate::store::{DirEntry, StoreError, User};

/// Aliases and lists share their shape: a name with several targets.
#[derive(Debug, Clone, Copy)]
pub(super) enum Group {
    Alias,
    List,
}

impl Group {
    fn table(self) -> &'static str {
        match self {
            Group::Alias => "aliases",
            Group::List => "lists",
        }
    }
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            Group::Alias => ("alias", "target"),
            Group::List => ("list", "member"),
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Group::Alias => "alias",
            Group::List => "list",
        }
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        address: r.get(1)?,
        quota: r.get::<_, Option<i64>>(2)?.map(|q| q as u64),
        used: r.get::<_, i64>(3)? as u64,
        messages: r.get::<_, i64>(4)? as u64,
    })
}

const USER_COLS: &str = "id, address, quota, used, messages";

fn members(c: &Connection, g: Group, name: &str) -> Result<Vec<String>, StoreError> {
    let (k, v) = g.columns();
    let mut st = c.prepare_cached(&format!(
        "SELECT {v} FROM {} WHERE {k} = ?1 ORDER BY {v}",
        g.table()
    ))?;
    let rows = st.query_map([name], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What kind of entry `address` is, if any (for collision checks).
fn kind_of(c: &Connection, address: &str) -> Result<Option<&'static str>, StoreError> {
    Ok(match lookup(c, address)? {
        Some(DirEntry::User(_)) => Some("user"),
        Some(DirEntry::Alias(_)) => Some("alias"),
        Some(DirEntry::List(_)) => Some("list"),
        None => None,
    })
}

pub(super) fn lookup(c: &Connection, address: &str) -> Result<Option<DirEntry>, StoreError> {
    let user = c
        .prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE address = ?1"))?
        .query_row([address], user_row)
        .optional()?;
    if let Some(u) = user {
        return Ok(Some(DirEntry::User(u)));
    }
    let a = members(c, Group::Alias, address)?;
    if !a.is_empty() {
        return Ok(Some(DirEntry::Alias(a)));
    }
    let l = members(c, Group::List, address)?;
    if !l.is_empty() {
        return Ok(Some(DirEntry::List(l)));
    }
    Ok(None)
}

pub(super) fn user_auth(
    c: &Connection,
    address: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let r = c
        .prepare_cached(&format!(
            "SELECT {USER_COLS}, password FROM users WHERE address = ?1"
        ))?
        .query_row([address], |r| {
            Ok((user_row(r)?, r.get::<_, Option<String>>(5)?))
        })
        .optional()?;
    Ok(r.and_then(|(u, p)| p.map(|p| (u, p))))
}

pub(super) fn user_add(
    c: &Connection,
    address: &str,
    hash: Option<&str>,
    quota: Option<u64>,
) -> Result<i64, StoreError> {
    if let Some(kind) = kind_of(c, address)? {
        return Err(StoreError::Exists(format!("{kind} {address}")));
    }
    let now = micros(chrono::Utc::now());
    c.execute(
        "INSERT INTO users (address, password, quota, created) VALUES (?1, ?2, ?3, ?4)",
        params![address, hash, quota.map(|q| q as i64), now],
    )?;
    let id = c.last_insert_rowid();
    super::folders::make_standard(c, id)?;
    Ok(id)
}

pub(super) fn user_del(c: &Connection, address: &str, purge: bool) -> Result<(), StoreError> {
    let user = c
        .query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE address = ?1"),
            [address],
            user_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {address}")))?;
    if user.messages > 0 && !purge {
        return Err(StoreError::Conflict(format!(
            "user {address} has {} message(s) in their mailbox; use --purge to delete them too",
            user.messages
        )));
    }
    // Release the content references of the mailbox copies, then the rows.
    let mut st = c.prepare(
        "SELECT mail.content_id FROM mail JOIN mailboxes ON mail.mailbox_id = mailboxes.id
         WHERE mailboxes.user_id = ?1",
    )?;
    let contents: Vec<i64> = st
        .query_map([user.id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    c.execute(
        "DELETE FROM mail WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE user_id = ?1)",
        [user.id],
    )?;
    for id in contents {
        super::content::release(c, id)?;
    }
    c.execute("DELETE FROM mailboxes WHERE user_id = ?1", [user.id])?;
    c.execute("DELETE FROM users WHERE id = ?1", [user.id])?;
    Ok(())
}

pub(super) fn user_list(c: &Connection) -> Result<Vec<User>, StoreError> {
    let mut st = c.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY address"))?;
    let rows = st.query_map([], user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn user_passwd(c: &Connection, address: &str, hash: &str) -> Result<(), StoreError> {
    let n = c.execute(
        "UPDATE users SET password = ?2 WHERE address = ?1",
        params![address, hash],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {address}")));
    }
    Ok(())
}

pub(super) fn user_quota(
    c: &Connection,
    address: &str,
    quota: Option<u64>,
) -> Result<(), StoreError> {
    let n = c.execute(
        "UPDATE users SET quota = ?2 WHERE address = ?1",
        params![address, quota.map(|q| q as i64)],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {address}")));
    }
    Ok(())
}

pub(super) fn group_add(
    c: &Connection,
    g: Group,
    name: &str,
    targets: &[String],
) -> Result<(), StoreError> {
    match kind_of(c, name)? {
        Some(kind) if kind != g.noun() => {
            return Err(StoreError::Exists(format!("{kind} {name}")));
        }
        _ => {}
    }
    let (k, v) = g.columns();
    let mut st = c.prepare(&format!(
        "INSERT OR IGNORE INTO {} ({k}, {v}) VALUES (?1, ?2)",
        g.table()
    ))?;
    for t in targets {
        st.execute(params![name, t.to_lowercase()])?;
    }
    Ok(())
}

pub(super) fn group_del(
    c: &Connection,
    g: Group,
    name: &str,
    targets: &[String],
) -> Result<(), StoreError> {
    let (k, v) = g.columns();
    let n = if targets.is_empty() {
        c.execute(&format!("DELETE FROM {} WHERE {k} = ?1", g.table()), [name])?
    } else {
        let mut n = 0;
        for t in targets {
            n += c.execute(
                &format!("DELETE FROM {} WHERE {k} = ?1 AND {v} = ?2", g.table()),
                params![name, t.to_lowercase()],
            )?;
        }
        n
    };
    if n == 0 {
        return Err(StoreError::NotFound(format!("{} {name}", g.noun())));
    }
    if g.noun() == "list" {
        // A list that is gone takes its policy with it (a new list of the name starts open).
        c.execute(
            "DELETE FROM list_policy WHERE list = ?1
             AND NOT EXISTS (SELECT 1 FROM lists WHERE list = ?1)",
            [name],
        )?;
    }
    Ok(())
}

/// A list's policy, the default when none was set; `None` when `list` is not a list.
pub(super) fn list_policy(
    c: &Connection,
    list: &str,
) -> Result<Option<crate::model::ListPolicy>, StoreError> {
    if kind_of(c, list)? != Some("list") {
        return Ok(None);
    }
    let row: Option<(String, bool)> = c
        .query_row(
            "SELECT post, outside_members FROM list_policy WHERE list = ?1",
            [list],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((post, outside_members)) = row else {
        return Ok(Some(crate::model::ListPolicy::default()));
    };
    let post = serde_json::from_value(serde_json::Value::String(post.clone())).map_err(|_| {
        StoreError::Corrupt(format!("list {list}: unknown posting policy {post:?}"))
    })?;
    Ok(Some(crate::model::ListPolicy {
        post,
        outside_members,
    }))
}

pub(super) fn list_set_policy(
    c: &Connection,
    list: &str,
    policy: crate::model::ListPolicy,
) -> Result<(), StoreError> {
    if kind_of(c, list)? != Some("list") {
        return Err(StoreError::NotFound(format!("list {list}")));
    }
    let post = serde_json::to_value(policy.post)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "anyone".into());
    c.execute(
        "INSERT INTO list_policy (list, post, outside_members) VALUES (?1, ?2, ?3)
         ON CONFLICT (list) DO UPDATE SET post = ?2, outside_members = ?3",
        params![list, post, policy.outside_members],
    )?;
    Ok(())
}

pub(super) fn group_list(
    c: &Connection,
    g: Group,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let (k, v) = g.columns();
    let mut st = c.prepare(&format!(
        "SELECT {k}, {v} FROM {} ORDER BY {k}, {v}",
        g.table()
    ))?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (name, target) = row?;
        match out.last_mut() {
            Some((n, ts)) if *n == name => ts.push(target),
            _ => out.push((name, vec![target])),
        }
    }
    Ok(out)
}
