//! The expunge history of each folder, for QRESYNC (RFC 7162 §3.2.5.1, §3.2.6): which UIDs
//! left a folder at which mod-sequence. It is bounded (`imap.expunge_history`): past the bound
//! the oldest rows are forgotten and the folder's `expunged_floor` rises to the newest
//! mod-sequence forgotten, so that a reader can tell a complete answer from a partial one
//! (see [`super::schema::EXPUNGE_HISTORY`]).

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::StoreError;

/// Records that `uid` left the folder at `modseq` (a UID recorded before, as after an import
/// that kept UIDs, takes the newer mod-sequence).
pub(super) fn record(
    c: &Connection,
    folder_id: i64,
    uid: u32,
    modseq: u64,
) -> Result<(), StoreError> {
    let updated = c
        .prepare_cached("UPDATE expunged SET modseq = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?
        .execute(params![folder_id, uid, modseq as i64])?;
    if updated == 0 {
        c.prepare_cached("INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)")?
            .execute(params![folder_id, uid, modseq as i64])?;
        c.prepare_cached("UPDATE mailboxes SET expunged_rows = expunged_rows + 1 WHERE id = ?1")?
            .execute([folder_id])?;
    }
    Ok(())
}

/// Forgets the oldest rows of a folder past `keep`. To spare every later expunge the same work,
/// it forgets an eighth more than it must; rows that share the last mod-sequence forgotten go
/// together, so the floor is exact.
pub(super) fn trim(c: &Connection, folder_id: i64, keep: u64) -> Result<(), StoreError> {
    let rows: i64 = c
        .prepare_cached("SELECT expunged_rows FROM mailboxes WHERE id = ?1")?
        .query_row([folder_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let rows = rows.max(0) as u64;
    if rows <= keep {
        return Ok(());
    }
    let target = keep - keep / 8;
    let drop = rows - target;
    let cut: Option<i64> = c
        .prepare_cached(
            "SELECT modseq FROM expunged WHERE mailbox_id = ?1 ORDER BY modseq LIMIT 1 OFFSET ?2",
        )?
        .query_row(params![folder_id, (drop - 1) as i64], |r| r.get(0))
        .optional()?;
    let Some(cut) = cut else {
        return Ok(());
    };
    let gone = c
        .prepare_cached("DELETE FROM expunged WHERE mailbox_id = ?1 AND modseq <= ?2")?
        .execute(params![folder_id, cut])?;
    c.prepare_cached(
        "UPDATE mailboxes SET expunged_rows = max(expunged_rows - ?2, 0),
             expunged_floor = max(expunged_floor, ?3) WHERE id = ?1",
    )?
    .execute(params![folder_id, gone as i64, cut])?;
    Ok(())
}

/// The UIDs expunged after `since`, ascending; `None` when the history no longer reaches back
/// that far (some rows after `since` were forgotten).
pub(super) fn since(
    c: &Connection,
    folder_id: i64,
    since: u64,
) -> Result<Option<Vec<u32>>, StoreError> {
    let floor: i64 = c
        .prepare_cached("SELECT expunged_floor FROM mailboxes WHERE id = ?1")?
        .query_row([folder_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if (since as i64) < floor {
        return Ok(None);
    }
    let uids = c
        .prepare_cached(
            "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
        )?
        .query_map(params![folder_id, since as i64], |r| r.get(0))?
        .collect::<Result<Vec<u32>, _>>()?;
    Ok(Some(uids))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::store::prelude::*;
    use crate::store::NewMail;
    use crate::testutil::TempStore;

    fn rows(ts: &TempStore, folder: i64) -> (i64, i64, i64) {
        let c = rusqlite::Connection::open(ts.store.path_for_tests()).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM expunged WHERE mailbox_id = ?1",
                [folder],
                |r| r.get(0),
            )
            .unwrap();
        let (counted, floor) = c
            .query_row(
                "SELECT expunged_rows, expunged_floor FROM mailboxes WHERE id = ?1",
                [folder],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (n, counted, floor)
    }

    /// The history stays within `imap.expunge_history`, its count stays true, and a reader from
    /// before the floor is given the folder's UIDs instead of a partial list.
    #[tokio::test]
    async fn the_history_is_bounded_and_says_when_it_is_partial() {
        let ts = TempStore::new();
        ts.store.set_expunge_history(8);
        let s = ts.store.as_ref();
        let u = s.user_add("u@example.com", None, None).await.unwrap();
        let mail = (0..40)
            .map(|i| NewMail {
                text: crate::model::Content::Memory(
                    format!("Subject: {i}\r\n\r\nx\r\n").into_bytes(),
                ),
                flags: crate::store::flag::DELETED,
                keywords: Vec::new(),
                internal_date: Utc::now(),
            })
            .collect();
        s.mail_append(u, "INBOX".into(), mail).await.unwrap();
        let sel = s
            .folder_select(u, "INBOX".into(), false)
            .await
            .unwrap()
            .unwrap();
        let folder = sel.status.info.id;
        let start = sel.status.highest_modseq;
        let mut modseqs = Vec::new();
        for uid in 1..=30u32 {
            s.mail_expunge(folder, Some(vec![uid])).await.unwrap();
            let (n, counted, _) = rows(&ts, folder);
            assert!(n <= 8, "{n} rows after UID {uid}");
            assert_eq!(n, counted);
            modseqs.push(s.folder_changes(folder, 0).await.unwrap().highest_modseq);
        }
        let (_, _, floor) = rows(&ts, folder);
        assert!(floor as u64 > start);
        // From before the floor: no list, the UIDs still there.
        let old = s.folder_changes(folder, start).await.unwrap();
        assert!(old.expunged.is_empty());
        assert_eq!(old.present, Some((31..=40).collect::<Vec<u32>>()));
        assert_eq!(old.uid_next, 41);
        // From within the history: exactly what went since.
        let recent = s.folder_changes(folder, modseqs[26]).await.unwrap();
        assert_eq!(recent.present, None);
        assert_eq!(recent.expunged, vec![28, 29, 30]);
        // POP3's deletes and MOVE count and trim the same way.
        let ids: Vec<i64> = s
            .folder_select(u, "INBOX".into(), false)
            .await
            .unwrap()
            .unwrap()
            .mail
            .iter()
            .take(5)
            .map(|m| m.id)
            .collect();
        s.mail_delete(u, ids).await.unwrap();
        s.mail_copy(u, folder, vec![36, 37, 38], "Trash".into(), true)
            .await
            .unwrap();
        let (n, counted, _) = rows(&ts, folder);
        assert!(n <= 8 && n == counted, "{n} rows, {counted} counted");
        let last = s.folder_changes(folder, modseqs[29]).await.unwrap();
        assert_eq!(
            last.present,
            Some(vec![39, 40]),
            "the history dropped some of 31..38"
        );
    }

    /// Migration 10 -> 11 counts the rows a folder already has, so the bound holds from the
    /// first expunge after it.
    #[tokio::test]
    async fn the_migration_counts_the_history_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v10.db");
        let folder = {
            let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
            let u = s.user_add("u@example.com", None, None).await.unwrap();
            let sel = s
                .folder_select(u, "INBOX".into(), false)
                .await
                .unwrap()
                .unwrap();
            sel.status.info.id
        };
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "DROP INDEX expunged_modseq;
             ALTER TABLE mailboxes DROP COLUMN expunged_floor;
             ALTER TABLE mailboxes DROP COLUMN expunged_rows;
             INSERT INTO expunged (mailbox_id, uid, modseq) VALUES ({folder}, 7, 2), ({folder}, 9, 3);
             UPDATE mailboxes SET highest_modseq = 5 WHERE id = {folder};
             ALTER TABLE users DROP COLUMN uid_validity_max;
             DROP TRIGGER contents_immutable;
             DROP TABLE folder_keywords;
             UPDATE meta SET value = '10' WHERE key = 'schema_version';"
        ))
        .unwrap();
        drop(c);
        let s = crate::store::sqlite::SqliteStore::open(&path).unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        let counted: i64 = c
            .query_row(
                "SELECT expunged_rows FROM mailboxes WHERE id = ?1",
                [folder],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counted, 2);
        assert_eq!(
            s.folder_changes(folder, 1).await.unwrap().expunged,
            vec![7, 9]
        );
    }
}
