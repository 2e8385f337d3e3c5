//! Integrity check and checksums (see [`crate::store::Maintenance`]).

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::store::spool::Spool;
use crate::store::{FailedRecipient, MailDigests, StoreError};

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

/// The spooled contents' files, by content id: each file's length and modification time. The
/// octets of a content are not read: the schema refuses any rewrite of a content
/// (`contents_immutable`), so a message whose row names the same content has the same octets,
/// and only a spool file (outside the database) is looked at, by its metadata. The proof then
/// costs one row per message, not a read of the whole store (issue 21). The partial index
/// `contents_file` lists the spooled contents without reading the others.
fn spool_files(
    c: &Connection,
    spool: &Spool,
) -> Result<std::collections::HashMap<i64, String>, StoreError> {
    let mut st = c.prepare("SELECT id, file FROM contents WHERE file IS NOT NULL")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, name) = row?;
        let seen = match std::fs::metadata(spool.path(&name)) {
            Ok(m) => {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!("{name} {} {mtime:?}", m.len())
            }
            Err(e) => format!("{name} unreadable: {e}"),
        };
        out.insert(id, seen);
    }
    Ok(out)
}

/// Hashes each row of `sql` (every column after the first, and the spool file of the content
/// whose id is in column `content_col`, if it is spooled), keyed by the first column.
fn digest(
    c: &Connection,
    files: &std::collections::HashMap<i64, String>,
    sql: &str,
    content_col: usize,
    out: &mut std::collections::BTreeMap<String, Sha256>,
) -> Result<(), StoreError> {
    let mut st = c.prepare(sql)?;
    let cols = st.column_count();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let key = String::from_utf8_lossy(&value(r.get_ref(0)?)).into_owned();
        let h = out.entry(key).or_default();
        for i in 1..cols {
            put(h, &value(r.get_ref(i)?));
        }
        if let Some(file) = files.get(&r.get::<_, i64>(content_col)?) {
            put(h, file.as_bytes());
        }
    }
    Ok(())
}

/// Hashes each row of `sql` (every column after the first), keyed by the first column.
fn digest_rows(
    c: &Connection,
    sql: &str,
    out: &mut std::collections::BTreeMap<String, Sha256>,
) -> Result<(), StoreError> {
    let mut st = c.prepare(sql)?;
    let cols = st.column_count();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let key = String::from_utf8_lossy(&value(r.get_ref(0)?)).into_owned();
        let h = out.entry(key).or_default();
        for i in 1..cols {
            put(h, &value(r.get_ref(i)?));
        }
    }
    Ok(())
}

pub(super) fn mail_digests(c: &Connection, spool: &Spool) -> Result<MailDigests, StoreError> {
    let tx = c.unchecked_transaction()?;
    let files = spool_files(&tx, spool)?;
    let mut boxes = std::collections::BTreeMap::new();
    digest(
        &tx,
        &files,
        "SELECT m.id, u.address, b.name, b.uid_validity, m.uid, m.internal_date, m.size, \
         m.prefix, m.content_id FROM mail m JOIN mailboxes b ON b.id = m.mailbox_id \
         JOIN users u ON u.id = b.user_id",
        8,
        &mut boxes,
    )?;
    // A queued message: its envelope and bytes, and its recipients' addresses and requests;
    // not their delivery state, which the running server moves on as it works.
    let mut queue = std::collections::BTreeMap::new();
    digest(
        &tx,
        &files,
        "SELECT queue_id, kind, sender, envid, ret, body, smtputf8, message_id, arrival, \
         client_ip, size, org_meta, content_id FROM queue",
        12,
        &mut queue,
    )?;
    digest_rows(
        &tx,
        "SELECT q.queue_id, r.id, r.address, r.original, r.orcpt, r.notify, r.route \
         FROM queue_rcpt r JOIN queue q ON q.id = r.msg ORDER BY q.queue_id, r.id",
        &mut queue,
    )?;
    tx.finish()?;
    let hex = |m: std::collections::BTreeMap<String, Sha256>| {
        m.into_iter()
            .map(|(k, h)| (k, hex::encode(h.finalize())))
            .collect()
    };
    Ok(MailDigests {
        mailboxes: hex(boxes),
        queue: hex(queue),
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
