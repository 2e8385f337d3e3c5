//! Integrity check and checksums (see [`crate::store::Maintenance`]).

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::content;
use crate::store::spool::Spool;
use crate::store::{Checksums, FailedRecipient, StoreError};

pub(super) fn integrity(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare("PRAGMA quick_check")?;
    let rows: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// One field into the hash, length-prefixed so that fields cannot run into each other.
fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn value(v: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => b"\0null".to_vec(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
    }
}

/// Hashes each row of `sql` (every column, then the bytes of the content whose id is in the
/// column named `content_id`); the hex digest and the number of rows.
fn digest(
    c: &Connection,
    spool: &Spool,
    sql: &str,
    content_col: Option<usize>,
) -> Result<(String, u64), StoreError> {
    let mut h = Sha256::new();
    let mut st = c.prepare(sql)?;
    let cols = st.column_count();
    let mut rows = st.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        n += 1;
        for i in 0..cols {
            put(&mut h, &value(r.get_ref(i)?));
        }
        if let Some(col) = content_col {
            let id: i64 = r.get(col)?;
            match content::read(c, spool, id) {
                Ok(bytes) => put(&mut h, &bytes),
                Err(e) => put(&mut h, format!("\0unreadable: {e}").as_bytes()),
            }
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

pub(super) fn checksums(c: &Connection, spool: &Spool) -> Result<Checksums, StoreError> {
    let tx = c.unchecked_transaction()?;
    let (mailboxes, mailbox_messages) = digest(
        &tx,
        spool,
        "SELECT u.address, b.name, b.uid_validity, m.uid, m.internal_date, m.size, m.prefix, \
         m.content_id FROM mail m JOIN mailboxes b ON b.id = m.mailbox_id \
         JOIN users u ON u.id = b.user_id ORDER BY u.address, b.name, m.uid",
        Some(7),
    )?;
    let (msgs, queued_messages) = digest(
        &tx,
        spool,
        "SELECT queue_id, kind, sender, envid, ret, body, smtputf8, message_id, arrival, \
         client_ip, size, frozen, org_meta, content_id FROM queue ORDER BY queue_id",
        Some(13),
    )?;
    let (rcpts, _) = digest(
        &tx,
        spool,
        "SELECT q.queue_id, r.address, r.original, r.orcpt, r.notify, r.route, r.state, \
         r.queue, r.next_attempt, r.attempts, r.status, r.reason, r.diagnostic, r.report \
         FROM queue_rcpt r JOIN queue q ON q.id = r.msg ORDER BY q.queue_id, r.id",
        None,
    )?;
    tx.finish()?;
    let queue = hex::encode(Sha256::digest(format!("{msgs}{rcpts}").as_bytes()));
    Ok(Checksums {
        mailboxes,
        mailbox_messages,
        queue,
        queued_messages,
    })
}

pub(super) fn failures_since(
    c: &Connection,
    since: chrono::DateTime<chrono::Utc>,
    limit: usize,
) -> Result<Vec<FailedRecipient>, StoreError> {
    let mut st = c.prepare(
        "SELECT time, recipient, status, detail FROM track WHERE event = ?1 AND time >= ?2 \
         ORDER BY id DESC LIMIT ?3",
    )?;
    let id = u16::from(crate::track::EventId::RecipientFailed);
    let rows = st
        .query_map(
            rusqlite::params![id, super::micros(since), limit as i64],
            |r| {
                Ok(FailedRecipient {
                    time: super::from_micros(r.get(0)?),
                    recipient: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    status: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    detail: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
