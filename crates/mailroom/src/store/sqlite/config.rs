//! The configuration's versions and backups.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{from_micros, micros};
use crate::store::{BackupRecord, ConfigVersion, StoreError};

/// SHA-256 of a text, in hex.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConfigVersion> {
    Ok(ConfigVersion {
        version: r.get(0)?,
        time: from_micros(r.get(1)?),
        origin: r.get(2)?,
        text: r.get(3)?,
        sha256: r.get(4)?,
    })
}

const COLUMNS: &str = "version, time, origin, text, sha256";

fn latest(c: &Connection) -> Result<Option<ConfigVersion>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM config_version ORDER BY version DESC LIMIT 1"),
        [],
        row,
    )
    .optional()?)
}

pub(super) fn record(
    c: &Connection,
    text: &str,
    origin: &str,
    keep: usize,
) -> Result<(ConfigVersion, bool), StoreError> {
    if let Some(v) = latest(c)? {
        if v.text == text {
            return Ok((v, false));
        }
    }
    c.execute(
        "INSERT INTO config_version (time, origin, text, sha256) VALUES (?1, ?2, ?3, ?4)",
        params![
            micros(chrono::Utc::now()),
            origin,
            text,
            sha256(text.as_bytes())
        ],
    )?;
    c.execute(
        "DELETE FROM config_version WHERE version <= (SELECT max(version) FROM config_version) - ?1",
        [keep.max(1) as i64],
    )?;
    let v =
        latest(c)?.ok_or_else(|| StoreError::Engine("a version just written is gone".into()))?;
    Ok((v, true))
}

pub(super) fn versions(c: &Connection) -> Result<Vec<ConfigVersion>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT {COLUMNS} FROM config_version ORDER BY version"
    ))?;
    let out = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

pub(super) fn backup_record(c: &Connection, b: &BackupRecord) -> Result<(), StoreError> {
    c.execute(
        "INSERT OR REPLACE INTO config_backup (path, time, version, sha256) VALUES (?1, ?2, ?3, ?4)",
        params![b.path, micros(b.time), b.version, b.sha256],
    )?;
    Ok(())
}

pub(super) fn backups(c: &Connection) -> Result<Vec<BackupRecord>, StoreError> {
    let mut st =
        c.prepare("SELECT path, time, version, sha256 FROM config_backup ORDER BY time")?;
    let out = st
        .query_map([], |r| {
            Ok(BackupRecord {
                path: r.get(0)?,
                time: from_micros(r.get(1)?),
                version: r.get(2)?,
                sha256: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}
