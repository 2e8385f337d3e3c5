//! Mailbox tables: each user's INBOX and the messages in it.

use chrono::{DateTime, Utc};
use mailroom_proto::smtp::Status;
use rusqlite::{params, Connection, OptionalExtension};

use super::micros;
use crate::store::spool::Spool;
use crate::store::{MailEntry, Placement, StoreError, StoredMail, StoredText};

/// Puts a copy of a content into a user's INBOX, unless that would pass the quota.
/// Returns `None` on success, or the failure status and reason.
pub(super) fn insert(
    c: &Connection,
    user_id: i64,
    content_id: i64,
    prefix: &[u8],
    size: i64,
    now: DateTime<Utc>,
) -> Result<Option<(Status, String)>, StoreError> {
    let user: Option<(Option<i64>, i64)> = c
        .prepare_cached("SELECT quota, used FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((quota, used)) = user else {
        return Ok(Some((
            Status::NO_SUCH_MAILBOX,
            "the mailbox no longer exists (the user was deleted after the message was accepted)"
                .into(),
        )));
    };
    if let Some(q) = quota {
        if used + size > q {
            return Ok(Some((
                Status::MAILBOX_FULL,
                format!("the recipient's mailbox is full (quota {q} octets, {used} in use, message {size})"),
            )));
        }
    }
    let (mailbox, uid): (i64, i64) = c
        .prepare_cached("SELECT id, uid_next FROM mailboxes WHERE user_id = ?1 AND name = 'INBOX'")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("user {user_id} has no INBOX")))?;
    let modseq = super::folders::bump(c, mailbox)?;
    c.prepare_cached(
        "INSERT INTO mail (mailbox_id, uid, content_id, prefix, size, internal_date, modseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        mailbox,
        uid,
        content_id,
        prefix,
        size,
        micros(now),
        modseq as i64
    ])?;
    c.prepare_cached("UPDATE mailboxes SET uid_next = uid_next + 1 WHERE id = ?1")?
        .execute([mailbox])?;
    super::folders::touch(user_id);
    c.prepare_cached("UPDATE users SET used = used + ?2, messages = messages + 1 WHERE id = ?1")?
        .execute(params![user_id, size])?;
    c.prepare_cached("UPDATE contents SET refs = refs + 1 WHERE id = ?1")?
        .execute([content_id])?;
    Ok(None)
}

pub(super) fn list(c: &Connection, user_id: i64) -> Result<Vec<MailEntry>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT mail.id, mail.size, mailboxes.uid_validity, mail.uid FROM mail
         JOIN mailboxes ON mail.mailbox_id = mailboxes.id
         WHERE mailboxes.user_id = ?1 AND mailboxes.name = 'INBOX' ORDER BY mail.uid",
    )?;
    let rows = st.query_map([user_id], |r| {
        Ok(MailEntry {
            id: r.get(0)?,
            size: r.get::<_, i64>(1)? as u64,
            uidl: format!("{:x}.{:x}", r.get::<_, i64>(2)?, r.get::<_, i64>(3)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A message as delivered, to stream: its own header lines and the content's octets in the
/// database first, then the content's spool file, if any.
pub(super) fn text(
    c: &Connection,
    spool: &Spool,
    user_id: i64,
    mail_id: i64,
) -> Result<StoredText, StoreError> {
    let row: Option<(Vec<u8>, i64)> = c
        .prepare_cached(
            "SELECT mail.prefix, mail.content_id FROM mail
             JOIN mailboxes ON mail.mailbox_id = mailboxes.id
             WHERE mail.id = ?1 AND mailboxes.user_id = ?2",
        )?
        .query_row(params![mail_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut prefix, content) =
        row.ok_or_else(|| StoreError::NotFound(format!("message {mail_id}")))?;
    let t = super::content::text(c, spool, content)?;
    let size = t.size + prefix.len() as u64;
    prefix.extend_from_slice(&t.head);
    Ok(StoredText {
        head: prefix,
        file: t.file,
        size,
        eight_bit: t.eight_bit,
    })
}

/// A message as delivered, whole in memory.
pub(super) fn read(
    c: &Connection,
    spool: &Spool,
    user_id: i64,
    mail_id: i64,
) -> Result<Vec<u8>, StoreError> {
    super::content::whole(text(c, spool, user_id, mail_id)?)
}

/// Deletes messages by store ID (POP3's DELE at QUIT): they are expunged as IMAP sees it.
pub(super) fn delete(
    c: &Connection,
    user_id: i64,
    ids: &[i64],
    keep: u64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut folders = std::collections::BTreeSet::new();
    for &id in ids {
        let row: Option<(i64, u32)> = c
            .prepare_cached(
                "SELECT mail.mailbox_id, mail.uid FROM mail
                 JOIN mailboxes ON mail.mailbox_id = mailboxes.id
                 WHERE mail.id = ?1 AND mailboxes.user_id = ?2",
            )?
            .query_row(params![id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((folder, uid)) = row else { continue };
        n += super::folders::remove(c, folder, &[uid])?.len();
        folders.insert(folder);
    }
    for folder in folders {
        super::expunged::trim(c, folder, keep)?;
    }
    Ok(n)
}

/// Imports a message into a user's folder (see [`crate::store::Mailboxes::mail_import`]).
pub(super) fn import(
    c: &Connection,
    user_id: i64,
    text: &[u8],
    key: &str,
    place: &Placement,
) -> Result<bool, StoreError> {
    let fresh = c
        .prepare_cached("INSERT OR IGNORE INTO org_seen (org_id, rcpt, time) VALUES (?1, ?2, ?3)")?
        .execute(params![key, format!("user:{user_id}"), micros(Utc::now())])?;
    if fresh == 0 {
        return Ok(false);
    }
    let exists: Option<i64> = c
        .prepare_cached("SELECT id FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("user {user_id}")));
    }
    let folder = place.folder.as_deref().unwrap_or(crate::store::INBOX);
    let found: Option<i64> = c
        .prepare_cached("SELECT id FROM mailboxes WHERE user_id = ?1 AND name = ?2")?
        .query_row(params![user_id, folder], |r| r.get(0))
        .optional()?;
    if found.is_none() {
        super::folders::create(c, user_id, folder, place.special_use.as_deref())?;
    }
    let content = super::content::insert_text(c, text)?;
    // The quota does not refuse a mailbox that is moving: it was within it where it came from.
    let date = place.internal_date.unwrap_or_else(|| micros(Utc::now()));
    super::folders::import_into(c, user_id, folder, content, text.len() as i64, place, date)?;
    Ok(true)
}

/// Every message of a user, every folder, with what `user move` carries across.
pub(super) fn all(c: &Connection, user_id: i64) -> Result<Vec<StoredMail>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT mail.id, mailboxes.uid_validity, mail.uid, mailboxes.name, mailboxes.special_use,
                mail.flags, mail.keywords, mail.internal_date
         FROM mail JOIN mailboxes ON mail.mailbox_id = mailboxes.id
         WHERE mailboxes.user_id = ?1 ORDER BY mailboxes.name, mail.uid",
    )?;
    let rows = st.query_map([user_id], |r| {
        let name: String = r.get(3)?;
        let uidl = format!("{:x}.{:x}", r.get::<_, i64>(1)?, r.get::<_, i64>(2)?);
        let inbox = name == crate::store::INBOX;
        Ok(StoredMail {
            id: r.get(0)?,
            uidl: if inbox {
                uidl
            } else {
                format!("{name}/{uidl}")
            },
            place: Placement {
                folder: (!inbox).then_some(name),
                special_use: r.get(4)?,
                flags: r.get(5)?,
                keywords: r
                    .get::<_, String>(6)?
                    .split_ascii_whitespace()
                    .map(String::from)
                    .collect(),
                internal_date: Some(r.get(7)?),
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
