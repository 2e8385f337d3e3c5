//! Message contents: stored once, shared by reference between the queue and every mailbox copy,
//! either in the database (`data`) or, for large texts, as the fields added here in `data` and
//! the text in a spool file (`file`; see [`crate::store::spool`]).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::Content;
use crate::store::spool::Spool;
use crate::store::{StoreError, StoredText};

/// Inserts a content with no reference yet; returns its ID.
pub(super) fn insert(c: &Connection, content: &Content) -> Result<i64, StoreError> {
    match content {
        Content::Memory(data) => {
            c.prepare_cached("INSERT INTO contents (data, refs) VALUES (?1, 0)")?
                .execute([data])?;
        }
        Content::Spooled { prefix, file } => {
            c.prepare_cached(
                "INSERT INTO contents (data, refs, file, size, eight_bit) VALUES (?1, 0, ?2, ?3, ?4)",
            )?
            .execute(params![
                prefix,
                file.name,
                content.len() as i64,
                file.eight_bit
            ])?;
        }
    }
    Ok(c.last_insert_rowid())
}

/// The whole content in memory (reports).
pub(super) fn read(c: &Connection, spool: &Spool, id: i64) -> Result<Vec<u8>, StoreError> {
    whole(text(c, spool, id)?)
}

/// The first octets of a content: its octets in the database and at most `limit` of its file's
/// (for a report that quotes the header section, which is at the start).
pub(super) fn head(
    c: &Connection,
    spool: &Spool,
    id: i64,
    limit: u64,
) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let t = text(c, spool, id)?;
    let mut data = t.head;
    if let Some(path) = t.file {
        let f = std::fs::File::open(&path).map_err(|e| {
            StoreError::Corrupt(format!("spool file {} cannot be read: {e}", path.display()))
        })?;
        f.take(limit).read_to_end(&mut data).map_err(|e| {
            StoreError::Corrupt(format!("spool file {} cannot be read: {e}", path.display()))
        })?;
    }
    Ok(data)
}

/// A stored text in memory: its octets in the database, then its file's.
pub(super) fn whole(t: StoredText) -> Result<Vec<u8>, StoreError> {
    let mut data = t.head;
    if let Some(path) = t.file {
        let f = std::fs::read(&path).map_err(|e| {
            StoreError::Corrupt(format!("spool file {} cannot be read: {e}", path.display()))
        })?;
        data.extend_from_slice(&f);
    }
    Ok(data)
}

/// The content as a text to stream (outbound delivery): its bytes in the database, then its
/// file, read as it is sent.
pub(super) fn text(c: &Connection, spool: &Spool, id: i64) -> Result<StoredText, StoreError> {
    c.prepare_cached("SELECT data, file, size, eight_bit FROM contents WHERE id = ?1")?
        .query_row([id], |r| {
            let data: Vec<u8> = r.get(0)?;
            let file: Option<String> = r.get(1)?;
            let size: Option<i64> = r.get(2)?;
            let eight_bit: bool = r.get(3)?;
            Ok(StoredText {
                size: size.map_or(data.len() as u64, |s| s.max(0) as u64),
                eight_bit: eight_bit || !data.is_ascii(),
                file: file.map(|name| spool.path(&name)),
                head: data,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("content {id}")))
}

/// Drops one reference to a content, deleting it with the last; its spool file, if any, becomes
/// garbage, deleted once this transaction has committed.
pub(super) fn release(c: &Connection, id: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE contents SET refs = refs - 1 WHERE id = ?1")?
        .execute([id])?;
    c.prepare_cached(
        "INSERT OR IGNORE INTO spool_garbage (file)
         SELECT file FROM contents WHERE id = ?1 AND refs <= 0 AND file IS NOT NULL",
    )?
    .execute([id])?;
    c.prepare_cached("DELETE FROM contents WHERE id = ?1 AND refs <= 0")?
        .execute([id])?;
    Ok(())
}

/// Garbage spool files, at most `limit`: read on a reader's connection, which sees only
/// committed rows. That is what makes deleting them safe: a row still in a writer's open
/// transaction (a release that may yet be rolled back) is never seen here.
pub(super) fn garbage(c: &Connection, limit: usize) -> Result<Vec<String>, StoreError> {
    let names = c
        .prepare_cached("SELECT file FROM spool_garbage LIMIT ?1")?
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

/// Forgets garbage whose files are deleted.
pub(super) fn forget_garbage(c: &Connection, names: &[String]) -> Result<(), StoreError> {
    for name in names {
        c.prepare_cached("DELETE FROM spool_garbage WHERE file = ?1")?
            .execute([name])?;
    }
    Ok(())
}

/// The spool files that stored contents name: every other file in the spool is either garbage
/// or the text of a message that was never acknowledged.
pub(super) fn referenced(c: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut st = c.prepare("SELECT file FROM contents WHERE file IS NOT NULL")?;
    let names = st
        .query_map([], |r| r.get(0))?
        .collect::<Result<HashSet<String>, _>>()?;
    Ok(names)
}
