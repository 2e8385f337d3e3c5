//! Message contents: stored once, shared by reference between the queue and every mailbox copy,
//! either in the database (`data`) or, for large texts, as the fields added here in `data` and
//! the text in a spool file (`file`; see [`crate::store::spool`]).

use std::collections::HashSet;
use std::io::Read;

use rusqlite::{params, Connection, OptionalExtension};

use mailroom_proto::imap::mime::header_block;

use super::schema::HEADER_CAP;
use crate::model::Content;
use crate::store::spool::Spool;
use crate::store::{StoreError, StoredText};

/// Inserts a content with no reference yet, and, when it will be in a mailbox (`for_mailbox`),
/// its header block (see [`super::schema::HEADERS`]); returns its ID. Mail that only passes
/// through the queue to other servers is never searched over IMAP, so it is spared the extra
/// row and, for a spooled text, the extra read of its file. (Should such a content end up in a
/// mailbox after all, it is searched through its text, as contents without a block are.)
pub(super) fn insert(
    c: &Connection,
    spool: &Spool,
    content: &Content,
    for_mailbox: bool,
) -> Result<i64, StoreError> {
    let (prefix, file) = match content {
        Content::Memory(data) => return insert_memory(c, data, for_mailbox),
        Content::Spooled { prefix, file } => (prefix, file),
    };
    c.prepare_cached(
        "INSERT INTO contents (data, refs, file, size, eight_bit) VALUES (?1, 0, ?2, ?3, ?4)",
    )?
    .execute(params![
        prefix,
        file.name,
        content.len() as i64,
        file.eight_bit
    ])?;
    let id = c.last_insert_rowid();
    if !for_mailbox {
        return Ok(id);
    }
    // The file was just written and synced: its start is in the page cache. Without a block
    // the message is read from its file when searched, so a failure here fails nothing.
    let path = spool.path(&file.name);
    match std::fs::File::open(&path).and_then(|f| until_blank_line(prefix.clone(), f, HEADER_CAP)) {
        Ok(Some(block)) => keep_header(c, id, &block)?,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "header of a spool file unread")
        }
    }
    Ok(id)
}

/// Inserts a content held in memory, with no reference yet, and its header block.
pub(super) fn insert_text(c: &Connection, data: &[u8]) -> Result<i64, StoreError> {
    insert_memory(c, data, true)
}

fn insert_memory(c: &Connection, data: &[u8], for_mailbox: bool) -> Result<i64, StoreError> {
    c.prepare_cached("INSERT INTO contents (data, refs) VALUES (?1, 0)")?
        .execute([data])?;
    let id = c.last_insert_rowid();
    if for_mailbox {
        let block = header_block(data);
        if block.len() <= HEADER_CAP {
            keep_header(c, id, block)?;
        }
    }
    Ok(id)
}

fn keep_header(c: &Connection, id: i64, block: &[u8]) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO content_headers (content_id, header) VALUES (?1, ?2)")?
        .execute(params![id, block])?;
    Ok(())
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

/// The first step of reading a text (a header section of a few fields fits); each further
/// step is twice the one before, so a long header costs a few reads, not one per line.
const FIRST_STEP: u64 = 4096;
const MAX_STEP: u64 = 1 << 20;

/// `text` and as much more of `rest` as it takes to see its first empty line: that much (see
/// `header_block`), or `None` once that would pass `cap` octets.
pub(super) fn until_blank_line(
    mut text: Vec<u8>,
    mut rest: impl Read,
    cap: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut step = FIRST_STEP;
    loop {
        // A blank line is judged only once its LF is in: a block shorter than the text is
        // the block of the whole.
        let n = header_block(&text).len();
        if n < text.len() {
            text.truncate(n);
            return Ok(Some(text));
        }
        if n > cap {
            return Ok(None);
        }
        if (&mut rest).take(step).read_to_end(&mut text)? == 0 {
            return Ok((text.len() <= cap).then_some(text));
        }
        step = (step * 2).min(MAX_STEP);
    }
}

#[cfg(test)]
mod tests {
    use super::until_blank_line;

    #[test]
    fn reads_only_as_far_as_the_header_goes() {
        let body = format!("Subject: x\r\n\r\n{}", "b".repeat(100_000));
        let mut src = body.as_bytes();
        let h = until_blank_line(b"Return-Path: <a@b>\r\n".to_vec(), &mut src, usize::MAX);
        assert_eq!(
            h.unwrap().unwrap(),
            b"Return-Path: <a@b>\r\nSubject: x\r\n\r\n"
        );
        assert!(
            src.len() > 90_000,
            "the body was not read: {} left",
            src.len()
        );
        let long = format!("Subject: {}\r\n\r\nbody", "s".repeat(40_000));
        let h = until_blank_line(Vec::new(), long.as_bytes(), usize::MAX);
        assert_eq!(h.unwrap().unwrap().len(), long.len() - 4);
        let h = until_blank_line(Vec::new(), long.as_bytes(), 10_000);
        assert_eq!(h.unwrap(), None, "longer than the cap");
        let all_header = "A: b\r\nC: d\r\n";
        let h = until_blank_line(Vec::new(), all_header.as_bytes(), usize::MAX);
        assert_eq!(h.unwrap().unwrap(), all_header.as_bytes());
    }
}
