//! Folders, flags and mod-sequences (see [`crate::store::Folders`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::keywords::{Defined, KeywordLimits};
use super::micros;
use crate::store::{
    flag, Changes, Copied, FlagOp, FolderInfo, FolderStatus, MailAttrs, MailMeta, NewMail,
    Selected, StoreError, Stored, DELIMITER, INBOX,
};

/// Remembers that `user_id`'s mailbox changed, to be announced once the batch commits.
pub(super) fn touch(user_id: i64) {
    super::TOUCHED.with(|t| t.borrow_mut().push(user_id));
}

/// Takes the folder's mod-sequence one up; returns the new value.
pub(super) fn bump(c: &Connection, folder_id: i64) -> Result<u64, StoreError> {
    let m: i64 = c
        .prepare_cached(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?1
             RETURNING highest_modseq",
        )?
        .query_row([folder_id], |r| r.get(0))?;
    Ok(m as u64)
}

fn owner(c: &Connection, folder_id: i64) -> Result<i64, StoreError> {
    c.prepare_cached("SELECT user_id FROM mailboxes WHERE id = ?1")?
        .query_row([folder_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound("the folder (it was deleted)".into()))
}

/// A UIDVALIDITY for a folder made now: the time, and above every value the user's folders have
/// had (`users.uid_validity_max`, which outlives deleted folders), so that a folder deleted and
/// made again within a second still gets a new one.
fn new_uid_validity(c: &Connection, user_id: i64) -> Result<i64, StoreError> {
    let top: i64 = c
        .prepare_cached(
            "SELECT max(u.uid_validity_max, coalesce(max(m.uid_validity), 0)) FROM users u
             LEFT JOIN mailboxes m ON m.user_id = u.id WHERE u.id = ?1",
        )?
        .query_row([user_id], |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0);
    let now = Utc::now().timestamp();
    let v = now.max(top + 1) & 0xffff_ffff;
    c.prepare_cached("UPDATE users SET uid_validity_max = ?2 WHERE id = ?1")?
        .execute(params![user_id, v])?;
    Ok(v)
}

/// Makes the INBOX, the special-use folders and their subscriptions of a new user.
pub(super) fn make_standard(c: &Connection, user_id: i64) -> Result<(), StoreError> {
    let v = new_uid_validity(c, user_id)?;
    c.execute(
        "INSERT INTO mailboxes (user_id, name, uid_validity, uid_next) VALUES (?1, 'INBOX', ?2, 1)",
        params![user_id, v],
    )?;
    for (name, use_) in crate::store::SPECIAL_USE {
        c.execute(
            "INSERT INTO mailboxes (user_id, name, uid_validity, uid_next, special_use)
             VALUES (?1, ?2, ?3, 1, ?4)",
            params![user_id, name, v, use_],
        )?;
    }
    c.execute(
        "INSERT OR IGNORE INTO subscriptions (user_id, name) SELECT user_id, name FROM mailboxes
         WHERE user_id = ?1",
        [user_id],
    )?;
    Ok(())
}

pub(super) fn list(c: &Connection, user_id: i64) -> Result<Vec<FolderInfo>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT id, name, special_use FROM mailboxes WHERE user_id = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([user_id], |r| {
        Ok(FolderInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            special_use: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn find(c: &Connection, user_id: i64, name: &str) -> Result<Option<FolderInfo>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT id, name, special_use FROM mailboxes WHERE user_id = ?1 AND name = ?2",
    )?
    .query_row(params![user_id, name], |r| {
        Ok(FolderInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            special_use: r.get(2)?,
        })
    })
    .optional()?)
}

fn require(c: &Connection, user_id: i64, name: &str) -> Result<FolderInfo, StoreError> {
    find(c, user_id, name)?.ok_or_else(|| StoreError::NotFound(format!("folder {name}")))
}

pub(super) fn status(
    c: &Connection,
    user_id: i64,
    name: &str,
) -> Result<Option<FolderStatus>, StoreError> {
    let Some(info) = find(c, user_id, name)? else {
        return Ok(None);
    };
    let (uid_validity, uid_next, highest_modseq, recent_uid): (i64, i64, i64, i64) = c
        .prepare_cached(
            "SELECT uid_validity, uid_next, highest_modseq, recent_uid FROM mailboxes WHERE id = ?1",
        )?
        .query_row([info.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let (messages, unseen, deleted, size, recent): (i64, i64, i64, i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum((flags & 1) = 0), 0), coalesce(sum((flags & 8) != 0), 0),
                    coalesce(sum(size), 0), coalesce(sum(uid >= ?2), 0)
             FROM mail WHERE mailbox_id = ?1",
        )?
        .query_row(params![info.id, recent_uid], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    Ok(Some(FolderStatus {
        info,
        uid_validity: uid_validity as u32,
        uid_next: uid_next as u32,
        highest_modseq: highest_modseq as u64,
        messages: messages as u32,
        unseen: unseen as u32,
        deleted: deleted as u32,
        size: size as u64,
        recent: recent as u32,
    }))
}

pub(super) fn create(
    c: &Connection,
    user_id: i64,
    name: &str,
    special_use: Option<&str>,
) -> Result<(), StoreError> {
    if find(c, user_id, name)?.is_some() {
        return Err(StoreError::Exists(format!("folder {name}")));
    }
    // The parents the name implies are not made: they are listed as `\Noselect` while they have
    // children (RFC 9051 §6.3.4 leaves it to the server; Dovecot does the same), so that sync
    // clients do not make empty folders on the other side, and a later CREATE makes them.
    let v = new_uid_validity(c, user_id)?;
    c.prepare_cached(
        "INSERT INTO mailboxes (user_id, name, uid_validity, uid_next, special_use)
         VALUES (?1, ?2, ?3, 1, ?4)",
    )?
    .execute(params![user_id, name, v, special_use])?;
    touch(user_id);
    Ok(())
}

/// Removes every message of a folder (releasing content references and the quota).
fn empty(c: &Connection, user_id: i64, folder_id: i64) -> Result<(), StoreError> {
    let (n, size): (i64, i64) = c
        .prepare_cached("SELECT count(*), coalesce(sum(size), 0) FROM mail WHERE mailbox_id = ?1")?
        .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let contents: Vec<i64> = c
        .prepare_cached("SELECT content_id FROM mail WHERE mailbox_id = ?1")?
        .query_map([folder_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    c.prepare_cached("DELETE FROM mail WHERE mailbox_id = ?1")?
        .execute([folder_id])?;
    for content in contents {
        super::content::release(c, content)?;
    }
    c.prepare_cached("UPDATE users SET used = used - ?2, messages = messages - ?3 WHERE id = ?1")?
        .execute(params![user_id, size, n])?;
    Ok(())
}

pub(super) fn delete(c: &Connection, user_id: i64, name: &str) -> Result<(), StoreError> {
    if name == INBOX {
        return Err(StoreError::Conflict("the INBOX cannot be deleted".into()));
    }
    let f = require(c, user_id, name)?;
    empty(c, user_id, f.id)?;
    c.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?
        .execute([f.id])?;
    touch(user_id);
    Ok(())
}

/// The folders below `name` (their names start with `name/`), as (id, name): a range of the
/// binary order, `name/` up to `name0` (the character after the delimiter), so that a name of
/// any characters is matched exactly and by the index.
fn children(c: &Connection, user_id: i64, name: &str) -> Result<Vec<(i64, String)>, StoreError> {
    let after = char::from_u32(DELIMITER as u32 + 1).unwrap_or(DELIMITER);
    Ok(c.prepare_cached(
        "SELECT id, name FROM mailboxes WHERE user_id = ?1 AND name >= ?2 AND name < ?3",
    )?
    .query_map(
        params![
            user_id,
            format!("{name}{DELIMITER}"),
            format!("{name}{after}")
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .collect::<Result<_, _>>()?)
}

pub(super) fn rename(c: &Connection, user_id: i64, from: &str, to: &str) -> Result<(), StoreError> {
    let below = children(c, user_id, from)?;
    // A name that is only a parent (never made, or deleted) is renamed with the folders under
    // it, as Dovecot does (RFC 9051 §6.3.6: "inferior hierarchical names MUST also be renamed").
    let f = match find(c, user_id, from)? {
        Some(f) => Some(f),
        None if !below.is_empty() => None,
        None => return Err(StoreError::NotFound(format!("folder {from}"))),
    };
    if find(c, user_id, to)?.is_some() {
        return Err(StoreError::Exists(format!("folder {to}")));
    }
    if to.starts_with(&format!("{from}{DELIMITER}")) {
        return Err(StoreError::Conflict(format!(
            "{from} cannot become its own child {to}"
        )));
    }
    if let (INBOX, Some(f)) = (from, &f) {
        // RFC 9051 §6.3.6: the messages move to a new folder; the INBOX stays, empty.
        create(c, user_id, to, None)?;
        let target = require(c, user_id, to)?;
        let uids: Vec<u32> = c
            .prepare_cached("SELECT uid FROM mail WHERE mailbox_id = ?1 ORDER BY uid")?
            .query_map([f.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        move_rows(c, f.id, target.id, &uids)?;
        return Ok(());
    }
    // (The parents of the new name are implied, as CREATE leaves them.)
    let mut renames: Vec<(i64, String)> = Vec::with_capacity(below.len() + 1);
    if let Some(f) = f {
        renames.push((f.id, to.to_string()));
    }
    for (id, name) in below {
        // (Each child's name starts with `from` and the delimiter.)
        let rest = name.strip_prefix(from).unwrap_or_default();
        let renamed = format!("{to}{rest}");
        if find(c, user_id, &renamed)?.is_some() {
            return Err(StoreError::Exists(format!("folder {renamed}")));
        }
        renames.push((id, renamed));
    }
    for (id, name) in renames {
        c.prepare_cached("UPDATE mailboxes SET name = ?2 WHERE id = ?1")?
            .execute(params![id, name])?;
    }
    touch(user_id);
    Ok(())
}

pub(super) fn subscriptions(c: &Connection, user_id: i64) -> Result<Vec<String>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT name FROM subscriptions WHERE user_id = ?1 ORDER BY name")?;
    let rows = st.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn subscribe(
    c: &Connection,
    user_id: i64,
    name: &str,
    on: bool,
) -> Result<(), StoreError> {
    if on {
        c.prepare_cached("INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?1, ?2)")?
            .execute(params![user_id, name])?;
    } else {
        c.prepare_cached("DELETE FROM subscriptions WHERE user_id = ?1 AND name = ?2")?
            .execute(params![user_id, name])?;
    }
    Ok(())
}

fn keywords_of(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(String::from).collect()
}

fn meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailMeta> {
    Ok(MailMeta {
        id: r.get(0)?,
        uid: r.get(1)?,
        flags: r.get(2)?,
        keywords: keywords_of(&r.get::<_, String>(3)?),
        modseq: r.get::<_, i64>(4)? as u64,
    })
}

const META: &str = "id, uid, flags, keywords, modseq";

pub(super) fn select(
    c: &Connection,
    user_id: i64,
    name: &str,
    claim_recent: bool,
) -> Result<Option<Selected>, StoreError> {
    let Some(status) = status(c, user_id, name)? else {
        return Ok(None);
    };
    let recent_from: i64 = c
        .prepare_cached("SELECT recent_uid FROM mailboxes WHERE id = ?1")?
        .query_row([status.info.id], |r| r.get(0))?;
    if claim_recent {
        c.prepare_cached("UPDATE mailboxes SET recent_uid = uid_next WHERE id = ?1")?
            .execute([status.info.id])?;
    }
    let mail = c
        .prepare_cached(&format!(
            "SELECT {META} FROM mail WHERE mailbox_id = ?1 ORDER BY uid"
        ))?
        .query_map([status.info.id], meta_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let keywords = super::keywords::of_folder(c, status.info.id)?;
    Ok(Some(Selected {
        status,
        keywords,
        mail,
        recent_from: recent_from as u32,
    }))
}

/// See [`crate::store::Folders::folder_claim_recent`]: the mark moves to `up_to` (never back),
/// and what it was is the caller's first recent UID.
pub(super) fn claim_recent(c: &Connection, folder_id: i64, up_to: u32) -> Result<u32, StoreError> {
    let from: Option<i64> = c
        .prepare_cached("SELECT recent_uid FROM mailboxes WHERE id = ?1")?
        .query_row([folder_id], |r| r.get(0))
        .optional()?;
    let Some(from) = from else {
        return Err(StoreError::NotFound("the folder (it was deleted)".into()));
    };
    if i64::from(up_to) > from {
        c.prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")?
            .execute(params![folder_id, up_to])?;
        return Ok(from as u32);
    }
    Ok(up_to)
}

pub(super) fn changes(c: &Connection, folder_id: i64, since: u64) -> Result<Changes, StoreError> {
    let row: Option<(i64, u32)> = c
        .prepare_cached("SELECT highest_modseq, uid_next FROM mailboxes WHERE id = ?1")?
        .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((highest, uid_next)) = row else {
        return Err(StoreError::NotFound("the folder (it was deleted)".into()));
    };
    if highest as u64 <= since {
        return Ok(Changes {
            highest_modseq: highest as u64,
            uid_next,
            ..Changes::default()
        });
    }
    let changed = c
        .prepare_cached(&format!(
            "SELECT {META} FROM mail WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"
        ))?
        .query_map(params![folder_id, since as i64], meta_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let (expunged, present) = match super::expunged::since(c, folder_id, since)? {
        Some(uids) => (uids, None),
        None => {
            let present = c
                .prepare_cached("SELECT uid FROM mail WHERE mailbox_id = ?1 ORDER BY uid")?
                .query_map([folder_id], |r| r.get(0))?
                .collect::<Result<Vec<u32>, _>>()?;
            (Vec::new(), Some(present))
        }
    };
    Ok(Changes {
        highest_modseq: highest as u64,
        uid_next,
        changed,
        expunged,
        present,
    })
}

pub(super) fn attrs(
    c: &Connection,
    folder_id: i64,
    uids: &[u32],
) -> Result<Vec<MailAttrs>, StoreError> {
    let mut wanted = uids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut st = c.prepare_cached(&format!(
        "SELECT {META}, size, internal_date FROM mail
         WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid"
    ))?;
    let mut out = Vec::with_capacity(wanted.len());
    for (lo, hi) in uid_ranges(&wanted) {
        let rows = st.query_map(params![folder_id, lo, hi], |r| {
            Ok(MailAttrs {
                meta: meta_row(r)?,
                size: r.get::<_, i64>(5)? as u64,
                internal_date: DateTime::from_timestamp_micros(r.get(6)?).unwrap_or_default(),
            })
        })?;
        for a in rows {
            let a = a?;
            if wanted.binary_search(&a.meta.uid).is_ok() {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// UIDs not further apart than this share a range (what lies between is read and skipped).
const RANGE_GAP: u32 = 64;

/// Sorted UIDs as the ranges to read them with `uid BETWEEN`: one pass for `1:*` or a folder
/// with a few expunged messages, one lookup each for UIDs far apart.
pub(super) fn uid_ranges(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &uid in sorted {
        match out.last_mut() {
            Some((_, hi)) if uid <= hi.saturating_add(RANGE_GAP) => *hi = uid.max(*hi),
            _ => out.push((uid, uid)),
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub(super) fn store(
    c: &Connection,
    folder_id: i64,
    uids: &[u32],
    op: FlagOp,
    flags: u8,
    keywords: &[String],
    unchanged_since: Option<u64>,
    limits: KeywordLimits,
) -> Result<Stored, StoreError> {
    let mut out = Stored::default();
    let mut modseq = None;
    // Keywords to add are defined in the folder (within its bounds) and spelled as it spells
    // them; those to remove are compared without case.
    let mut defined = if keywords.is_empty() || op == FlagOp::Remove {
        None
    } else {
        Some(Defined::load(c, folder_id, limits)?)
    };
    let removed: HashSet<String> = if op == FlagOp::Remove {
        keywords.iter().map(|k| k.to_ascii_lowercase()).collect()
    } else {
        HashSet::new()
    };
    let mut get = c.prepare_cached(&format!(
        "SELECT {META} FROM mail WHERE mailbox_id = ?1 AND uid = ?2"
    ))?;
    for &uid in uids {
        let Some(mut m) = get
            .query_row(params![folder_id, uid], meta_row)
            .optional()?
        else {
            continue;
        };
        if unchanged_since.is_some_and(|u| m.modseq > u) {
            out.modified.push(uid);
            continue;
        }
        let (new_flags, new_keywords) = match (op, defined.as_mut()) {
            (FlagOp::Replace, Some(d)) => (flags, d.admit(c, keywords.to_vec())?),
            (FlagOp::Replace, None) => (flags, Vec::new()),
            (FlagOp::Add, Some(d)) => {
                let mut k = m.keywords.clone();
                k.extend(keywords.iter().cloned());
                (m.flags | flags, d.admit(c, k)?)
            }
            (FlagOp::Add, None) => (m.flags | flags, m.keywords.clone()),
            (FlagOp::Remove, _) => {
                let k = m
                    .keywords
                    .iter()
                    .filter(|k| !removed.contains(&k.to_ascii_lowercase()))
                    .cloned()
                    .collect();
                (m.flags & !flags, k)
            }
        };
        if new_flags == m.flags && new_keywords == m.keywords {
            // Unchanged: with UNCHANGEDSINCE it still counts as stored (RFC 7162 §3.1.3).
            continue;
        }
        let ms = match modseq {
            Some(ms) => ms,
            None => {
                let ms = bump(c, folder_id)?;
                modseq = Some(ms);
                ms
            }
        };
        c.prepare_cached(
            "UPDATE mail SET flags = ?3, keywords = ?4, modseq = ?5 WHERE mailbox_id = ?1 AND uid = ?2",
        )?
        .execute(params![folder_id, uid, new_flags, new_keywords.join(" "), ms as i64])?;
        m.flags = new_flags;
        m.keywords = new_keywords;
        m.modseq = ms;
        out.changed.push(m);
    }
    if modseq.is_some() {
        touch(owner(c, folder_id)?);
    }
    Ok(out)
}

fn check_quota(c: &Connection, user_id: i64, more: i64) -> Result<(), StoreError> {
    let (quota, used): (Option<i64>, i64) = c
        .prepare_cached("SELECT quota, used FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound("the user".into()))?;
    match quota {
        Some(q) if used + more > q => Err(StoreError::OverQuota(format!(
            "the mailbox is full (quota {q} octets, {used} in use, {more} more asked for)"
        ))),
        _ => Ok(()),
    }
}

/// Takes the next UID of a folder.
fn next_uid(c: &Connection, folder_id: i64) -> Result<u32, StoreError> {
    let uid: i64 = c
        .prepare_cached(
            "UPDATE mailboxes SET uid_next = uid_next + 1 WHERE id = ?1 RETURNING uid_next - 1",
        )?
        .query_row([folder_id], |r| r.get(0))?;
    u32::try_from(uid).map_err(|_| StoreError::Conflict("the folder has run out of UIDs".into()))
}

pub(super) fn append(
    c: &Connection,
    spool: &crate::store::spool::Spool,
    user_id: i64,
    name: &str,
    mail: &[NewMail],
    limits: KeywordLimits,
) -> Result<Copied, StoreError> {
    let f = require(c, user_id, name)?;
    let total: i64 = mail.iter().map(|m| m.text.len() as i64).sum();
    check_quota(c, user_id, total)?;
    let mut defined = Defined::load(c, f.id, limits)?;
    let modseq = bump(c, f.id)?;
    let mut uids = Vec::with_capacity(mail.len());
    for m in mail {
        let content = super::content::insert(c, spool, &m.text, true)?;
        c.prepare_cached("UPDATE contents SET refs = refs + 1 WHERE id = ?1")?
            .execute([content])?;
        let uid = next_uid(c, f.id)?;
        c.prepare_cached(
            "INSERT INTO mail (mailbox_id, uid, content_id, prefix, size, internal_date, flags, keywords, modseq)
             VALUES (?1, ?2, ?3, x'', ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            f.id,
            uid,
            content,
            m.text.len() as i64,
            micros(m.internal_date),
            m.flags,
            defined.admit(c, m.keywords.clone())?.join(" "),
            modseq as i64
        ])?;
        uids.push((0, uid));
    }
    c.prepare_cached("UPDATE users SET used = used + ?2, messages = messages + ?3 WHERE id = ?1")?
        .execute(params![user_id, total, mail.len() as i64])?;
    touch(user_id);
    let v: i64 = c
        .prepare_cached("SELECT uid_validity FROM mailboxes WHERE id = ?1")?
        .query_row([f.id], |r| r.get(0))?;
    Ok(Copied {
        uid_validity: v as u32,
        uids,
    })
}

/// Puts an imported content (a mailbox moving here) into a folder with its flags and date,
/// outside the quota.
pub(super) fn import_into(
    c: &Connection,
    user_id: i64,
    name: &str,
    content: i64,
    size: i64,
    place: &crate::store::Placement,
    date: i64,
) -> Result<(), StoreError> {
    let f = require(c, user_id, name)?;
    // A mailbox moving here keeps the keywords it had, whatever this server's bounds.
    let unbounded = KeywordLimits {
        per_folder: u32::MAX,
        per_message: u32::MAX,
    };
    let keywords = Defined::load(c, f.id, unbounded)?.admit(c, place.keywords.clone())?;
    let modseq = bump(c, f.id)?;
    let uid = next_uid(c, f.id)?;
    c.prepare_cached(
        "INSERT INTO mail (mailbox_id, uid, content_id, prefix, size, internal_date, flags, keywords, modseq)
         VALUES (?1, ?2, ?3, x'', ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        f.id,
        uid,
        content,
        size,
        date,
        place.flags,
        keywords.join(" "),
        modseq as i64
    ])?;
    c.prepare_cached("UPDATE users SET used = used + ?2, messages = messages + 1 WHERE id = ?1")?
        .execute(params![user_id, size])?;
    c.prepare_cached("UPDATE contents SET refs = refs + 1 WHERE id = ?1")?
        .execute([content])?;
    touch(user_id);
    Ok(())
}

/// Moves rows from one folder to another with new UIDs; the source records them as expunged.
fn move_rows(
    c: &Connection,
    from: i64,
    to: i64,
    uids: &[u32],
) -> Result<Vec<(u32, u32)>, StoreError> {
    let mut pairs = Vec::with_capacity(uids.len());
    if uids.is_empty() {
        return Ok(pairs);
    }
    let out_modseq = bump(c, from)?;
    let in_modseq = bump(c, to)?;
    for &uid in uids {
        let new = next_uid(c, to)?;
        let n = c
            .prepare_cached(
                "UPDATE mail SET mailbox_id = ?3, uid = ?4, modseq = ?5 WHERE mailbox_id = ?1 AND uid = ?2",
            )?
            .execute(params![from, uid, to, new, in_modseq as i64])?;
        if n == 0 {
            continue;
        }
        super::expunged::record(c, from, uid, out_modseq)?;
        pairs.push((uid, new));
    }
    touch(owner(c, from)?);
    Ok(pairs)
}

pub(super) fn copy(
    c: &Connection,
    user_id: i64,
    folder_id: i64,
    uids: &[u32],
    to: &str,
    move_: bool,
    limits: KeywordLimits,
) -> Result<Copied, StoreError> {
    if owner(c, folder_id)? != user_id {
        return Err(StoreError::NotFound("the folder".into()));
    }
    let target = require(c, user_id, to)?;
    let v: i64 = c
        .prepare_cached("SELECT uid_validity FROM mailboxes WHERE id = ?1")?
        .query_row([target.id], |r| r.get(0))?;
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    let mut defined = Defined::load(c, target.id, limits)?;
    if move_ && target.id != folder_id {
        // The keywords the messages carry are defined in the target (and spelled as it does).
        let mut st = c.prepare_cached(
            "SELECT keywords FROM mail WHERE mailbox_id = ?1 AND uid = ?2 AND keywords != ''",
        )?;
        for &uid in &uids {
            let Some(k) = st
                .query_row(params![folder_id, uid], |r| r.get::<_, String>(0))
                .optional()?
            else {
                continue;
            };
            let spelled = defined.admit(c, keywords_of(&k))?.join(" ");
            if spelled != k {
                c.prepare_cached(
                    "UPDATE mail SET keywords = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
                )?
                .execute(params![folder_id, uid, spelled])?;
            }
        }
        let pairs = move_rows(c, folder_id, target.id, &uids)?;
        return Ok(Copied {
            uid_validity: v as u32,
            uids: pairs,
        });
    }
    let mut rows = Vec::new();
    {
        let mut st = c.prepare_cached(
            "SELECT uid, content_id, prefix, size, internal_date, flags, keywords FROM mail
             WHERE mailbox_id = ?1 AND uid = ?2",
        )?;
        for &uid in &uids {
            let row = st
                .query_row(params![folder_id, uid], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, u8>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })
                .optional()?;
            rows.extend(row);
        }
    }
    let total: i64 = rows.iter().map(|r| r.3).sum();
    check_quota(c, user_id, total)?;
    let modseq = bump(c, target.id)?;
    let mut pairs = Vec::with_capacity(rows.len());
    for (uid, content, prefix, size, date, flags, keywords) in rows {
        let keywords = if keywords.is_empty() {
            keywords
        } else {
            defined.admit(c, keywords_of(&keywords))?.join(" ")
        };
        let new = next_uid(c, target.id)?;
        c.prepare_cached(
            "INSERT INTO mail (mailbox_id, uid, content_id, prefix, size, internal_date, flags, keywords, modseq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![target.id, new, content, prefix, size, date, flags, keywords, modseq as i64])?;
        c.prepare_cached("UPDATE contents SET refs = refs + 1 WHERE id = ?1")?
            .execute([content])?;
        pairs.push((uid, new));
    }
    c.prepare_cached("UPDATE users SET used = used + ?2, messages = messages + ?3 WHERE id = ?1")?
        .execute(params![user_id, total, pairs.len() as i64])?;
    touch(user_id);
    Ok(Copied {
        uid_validity: v as u32,
        uids: pairs,
    })
}

/// Removes messages by UID from a folder, recording them as expunged; returns the UIDs removed.
pub(super) fn remove(c: &Connection, folder_id: i64, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
    let user_id = owner(c, folder_id)?;
    let mut removed = Vec::new();
    let mut modseq = None;
    for &uid in uids {
        let row: Option<(i64, i64)> = c
            .prepare_cached("SELECT content_id, size FROM mail WHERE mailbox_id = ?1 AND uid = ?2")?
            .query_row(params![folder_id, uid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((content, size)) = row else { continue };
        let ms = match modseq {
            Some(m) => m,
            None => {
                let m = bump(c, folder_id)?;
                modseq = Some(m);
                m
            }
        };
        c.prepare_cached("DELETE FROM mail WHERE mailbox_id = ?1 AND uid = ?2")?
            .execute(params![folder_id, uid])?;
        super::expunged::record(c, folder_id, uid, ms)?;
        c.prepare_cached(
            "UPDATE users SET used = used - ?2, messages = messages - 1 WHERE id = ?1",
        )?
        .execute(params![user_id, size])?;
        super::content::release(c, content)?;
        removed.push(uid);
    }
    if !removed.is_empty() {
        touch(user_id);
    }
    Ok(removed)
}

pub(super) fn expunge(
    c: &Connection,
    folder_id: i64,
    uids: Option<&[u32]>,
) -> Result<Vec<u32>, StoreError> {
    let deleted: Vec<u32> = c
        .prepare_cached(&format!(
            "SELECT uid FROM mail WHERE mailbox_id = ?1 AND (flags & {}) != 0 ORDER BY uid",
            flag::DELETED
        ))?
        .query_map([folder_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let chosen: Vec<u32> = match uids {
        Some(u) => deleted
            .into_iter()
            .filter(|d| u.binary_search(d).is_ok())
            .collect(),
        None => deleted,
    };
    remove(c, folder_id, &chosen)
}

#[cfg(test)]
mod tests {
    use super::uid_ranges;

    #[test]
    fn uids_as_ranges() {
        assert_eq!(uid_ranges(&[]), vec![]);
        assert_eq!(uid_ranges(&[1, 2, 3, 10, 70]), vec![(1, 70)]);
        assert_eq!(uid_ranges(&[1, 2, 100, 101]), vec![(1, 2), (100, 101)]);
        assert_eq!(
            uid_ranges(&[5, u32::MAX]),
            vec![(5, 5), (u32::MAX, u32::MAX)]
        );
        assert_eq!(
            uid_ranges(&[u32::MAX - 1, u32::MAX]),
            vec![(u32::MAX - 1, u32::MAX)]
        );
    }
}
