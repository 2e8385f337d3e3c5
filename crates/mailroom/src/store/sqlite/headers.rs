//! The header sections of stored messages, read without their bodies (see
//! [`crate::store::Folders::mail_headers`]).
//!
//! SEARCH on a header field and a client's FETCH of header fields touch every message of a
//! folder, and a body can be megabytes. Dovecot answers them from a cache file of the fields
//! clients asked for before. Here each content's header block is kept beside it when it is
//! stored (`content_headers`, see [`super::schema::HEADERS`]): a small row, many to a page,
//! where reading the content's own row would copy the whole text. A message's header section
//! is its own fields (`mail.prefix`) and that block, cut as the whole text would be. A content
//! without a block is read from its start instead: the octets in the database through a blob
//! handle (SQLite's incremental I/O, as far as the header goes), then its spool file.

use std::io::Read;

use mailroom_proto::imap::mime::header_section;
use rusqlite::blob::Blob;
use rusqlite::{params, Connection, DatabaseName, OptionalExtension};

use super::folders::uid_ranges;
use crate::store::spool::Spool;
use crate::store::StoreError;

/// The header sections of messages by UID (those that still exist), in UID order.
pub(super) fn read(
    c: &Connection,
    spool: &Spool,
    folder_id: i64,
    uids: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    let mut wanted = uids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut st = c.prepare_cached(
        "SELECT mail.uid, mail.prefix, mail.content_id, content_headers.header
         FROM mail LEFT JOIN content_headers ON content_headers.content_id = mail.content_id
         WHERE mail.mailbox_id = ?1 AND mail.uid BETWEEN ?2 AND ?3 ORDER BY mail.uid",
    )?;
    let mut blob = None;
    let mut out = Vec::with_capacity(wanted.len());
    for (lo, hi) in uid_ranges(&wanted) {
        let mut rows = st.query(params![folder_id, lo, hi])?;
        while let Some(r) = rows.next()? {
            let uid: u32 = r.get(0)?;
            if wanted.binary_search(&uid).is_err() {
                continue;
            }
            let bad = |e: rusqlite::types::FromSqlError| {
                StoreError::Corrupt(format!("message {uid} in folder {folder_id}: {e}"))
            };
            let prefix = r.get_ref(1)?.as_blob().map_err(bad)?;
            let block = r.get_ref(3)?.as_blob_or_null().map_err(bad)?;
            let mut text = match block {
                // The message's own fields are whole lines: the block stands for the content.
                Some(b) if prefix.is_empty() || prefix.ends_with(b"\n") => {
                    let mut t = Vec::with_capacity(prefix.len() + b.len());
                    t.extend_from_slice(prefix);
                    t.extend_from_slice(b);
                    t
                }
                _ => {
                    let content: i64 = r.get(2)?;
                    from_text(c, spool, &mut blob, content, prefix.to_vec())?
                }
            };
            let n = header_section(&text).len();
            text.truncate(n);
            out.push((uid, text));
        }
    }
    Ok(out)
}

/// `prefix` and the start of content `id`, through its first empty line.
fn from_text<'c>(
    c: &'c Connection,
    spool: &Spool,
    blob: &mut Option<Blob<'c>>,
    id: i64,
    prefix: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("the text of content {id}: {e}"));
    let file: Option<Option<String>> = c
        .prepare_cached("SELECT file FROM contents WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(file) = file else {
        return Err(StoreError::NotFound(format!("content {id}")));
    };
    let file: Box<dyn Read> = match file {
        Some(name) => {
            let path = spool.path(&name);
            let f = std::fs::File::open(&path)
                .map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
            Box::new(f)
        }
        None => Box::new(std::io::empty()),
    };
    let data = match blob.as_mut() {
        Some(b) => {
            b.reopen(id)?;
            b
        }
        None => blob.insert(c.blob_open(DatabaseName::Main, "contents", "data", id, true)?),
    };
    let text = super::content::until_blank_line(prefix, data.chain(file), usize::MAX)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(text.unwrap_or_default())
}
