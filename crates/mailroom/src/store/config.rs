//! The config store's part of the store: every version of the configuration file, and the
//! backups made of it (see [`crate::config::history`]).

use chrono::{DateTime, Utc};

use super::StoreFuture;

/// One version of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigVersion {
    /// Its number: never reused, growing with each change.
    pub version: i64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// What made it: `init`, `set KEY`, `file` (an edit outside mailroom, then a reload or a
    /// start), `rollback N`, `restore FILE`, `repair`.
    pub origin: String,
    /// The whole file.
    #[serde(skip)]
    pub text: String,
    /// SHA-256 of `text` as it was recorded (hex): what `config verify` checks it against.
    pub sha256: String,
}

/// A backup this server made (`config backup`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupRecord {
    /// Where it was written.
    pub path: String,
    /// When.
    pub time: DateTime<Utc>,
    /// The version it holds.
    pub version: i64,
    /// SHA-256 of the backup file (hex).
    pub sha256: String,
}

/// The versions of the configuration and its backups.
pub trait ConfigStore: Send + Sync {
    /// Records `text` as the newest version unless it already is; keeps the newest `keep`.
    /// Returns the newest version and whether it is new.
    fn config_record(
        &self,
        text: String,
        origin: String,
        keep: usize,
    ) -> StoreFuture<'_, (ConfigVersion, bool)>;
    /// Every version kept, oldest first.
    fn config_versions(&self) -> StoreFuture<'_, Vec<ConfigVersion>>;
    /// Notes a backup made.
    fn config_backup_record(&self, backup: BackupRecord) -> StoreFuture<'_, ()>;
    /// The backups made, oldest first.
    fn config_backups(&self) -> StoreFuture<'_, Vec<BackupRecord>>;
}
