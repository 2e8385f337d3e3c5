//! The config store's operations: apply a new text (validate, record, write, reload), and
//! verify what is stored. Used by `mailroom config` and `mailroom repair`.

use std::path::Path;

use anyhow::Context as _;

use crate::config::history::{self, Backup};
use crate::config::{self, Config};
use crate::control::{self, ControlError};
use crate::store::{ConfigStore, ConfigVersion};

/// The configuration file of a data directory.
pub fn file_of(data: &Path) -> std::path::PathBuf {
    data.join(config::FILE_NAME)
}

/// Writes a file readable by its owner only: a temporary file, fsync, rename, fsync of the
/// directory (a crash leaves the old file or the new one, never half of one).
///
/// A file that is a symbolic link (the package's `DATA/mailroom.toml` → `/etc/mailroom/…`) is
/// written where the link points, keeping the link, and the file's mode if it had one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = if is_link {
        std::fs::canonicalize(path)
            .with_context(|| format!("{} is a link to nowhere", path.display()))?
    } else {
        path.to_path_buf()
    };
    let mode = std::fs::metadata(&target)
        .map(|m| (m.permissions().mode() & 0o640) | 0o600)
        .unwrap_or(0o600);
    crate::fsutil::write_atomic(&target, bytes, mode)
        .with_context(|| format!("cannot write {}", target.display()))
}

/// The newest version recorded.
pub async fn latest(store: &dyn ConfigStore) -> anyhow::Result<Option<ConfigVersion>> {
    Ok(store.config_versions().await?.pop())
}

/// Records the file as it is now when it differs from the newest version (an edit outside
/// mailroom keeps its own version, so that a change made on top of it can be undone to it).
async fn record_file(data: &Path, store: &dyn ConfigStore) -> anyhow::Result<()> {
    let file = file_of(data);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    if let Ok(cfg) = Config::parse(&text, &file) {
        store
            .config_record(text, "file (found changed)".into(), cfg.config.history)
            .await?;
    }
    Ok(())
}

/// What [`apply`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// The version in effect.
    pub version: i64,
    /// Whether it is a new version (false: the text was the newest already).
    pub new: bool,
    /// What the running server said, when it was asked to reload.
    pub reload: Option<ReloadOutcome>,
}

/// What came of asking the running server to reload. In JSON: `{"running": false}`, the
/// server's answer, or `{"error": …}`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum ReloadOutcome {
    /// No server runs: it applies the file when it starts.
    NotRunning {
        /// Always false.
        running: bool,
    },
    /// The server's answer (`ok` false: it refused, and kept the version it had).
    Answered(control::Reloaded),
    /// It could not be asked.
    Unreachable {
        /// Why.
        error: String,
    },
}

/// Applies a new text: validates, records, writes, and (with `reload`) asks the running
/// server to reload it.
pub async fn apply(
    data: &Path,
    store: &dyn ConfigStore,
    text: String,
    origin: String,
    reload: bool,
) -> anyhow::Result<Applied> {
    let file = file_of(data);
    let cfg = Config::parse(&text, &file).context("refused; nothing was changed")?;
    record_file(data, store).await?;
    let (v, new) = store
        .config_record(text.clone(), origin.clone(), cfg.config.history)
        .await?;
    write_private(&file, text.as_bytes())?;
    let reload = if reload {
        Some(reload_running(data, origin).await)
    } else {
        None
    };
    Ok(Applied {
        version: v.version,
        new,
        reload,
    })
}

/// Asks the running server to reload.
pub async fn reload_running(data: &Path, origin: String) -> ReloadOutcome {
    match control::reload(data, origin).await {
        Ok(r) => ReloadOutcome::Answered(r),
        Err(ControlError::NotRunning(_)) => ReloadOutcome::NotRunning { running: false },
        Err(e) => ReloadOutcome::Unreachable {
            error: e.to_string(),
        },
    }
}

/// What `config verify` (and `doctor`) find wrong with the config store: the newest version
/// against its checksum and the loader, the file against the newest version, each backup
/// made against its checksum.
pub async fn verify_store(data: &Path, store: &dyn ConfigStore) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let file = file_of(data);
    match latest(store).await? {
        None => out.push("no version is recorded yet".to_string()),
        Some(v) => {
            if history::sha256(v.text.as_bytes()) != v.sha256 {
                out.push(format!("version {} does not match its checksum", v.version));
            }
            if let Err(e) = Config::parse(&v.text, &file) {
                out.push(format!("version {} does not load: {e}", v.version));
            }
            match std::fs::read_to_string(&file) {
                Err(e) => out.push(format!("{}: cannot read: {e}", file.display())),
                Ok(t) if t != v.text => out.push(format!(
                    "{} differs from version {} (changed outside mailroom; `mailroom config \
                     diff current file` shows how)",
                    file.display(),
                    v.version
                )),
                Ok(_) => {}
            }
        }
    }
    for b in store.config_backups().await? {
        match std::fs::read(&b.path) {
            Err(e) => out.push(format!("backup {}: cannot read: {e}", b.path)),
            Ok(bytes) if history::sha256(&bytes) != b.sha256 => {
                out.push(format!("backup {}: changed since it was made", b.path))
            }
            Ok(bytes) => {
                if let Err(e) = Backup::decode(&bytes) {
                    out.push(format!("backup {}: {e}", b.path));
                }
            }
        }
    }
    Ok(out)
}

/// The version in which an administrator chose the current value of `key`: the first of the
/// newest run of versions that hold the value the file holds. `None` when the file's value was
/// never recorded (it changed outside mailroom and was not applied), or the key is absent (its
/// default). `doctor` shows such a choice as information and `repair` keeps it (issue 21:
/// `smtp.disabled_extensions` was reported as damage and emptied).
pub fn recorded_choice<'a>(
    versions: &'a [ConfigVersion],
    file_text: &str,
    key: &str,
) -> Option<&'a ConfigVersion> {
    let value = |t: &str| history::flatten(t).remove(key);
    let now = value(file_text)?;
    let mut chosen = None;
    for v in versions.iter().rev() {
        if value(&v.text).as_ref() != Some(&now) {
            break;
        }
        chosen = Some(v);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: i64, origin: &str, text: &str) -> ConfigVersion {
        ConfigVersion {
            version: n,
            time: chrono::Utc::now(),
            origin: origin.into(),
            text: text.into(),
            sha256: history::sha256(text.as_bytes()),
        }
    }

    #[test]
    fn a_choice_is_the_version_that_recorded_the_value_the_file_holds() {
        let off = "[smtp]\ndisabled_extensions = [\"DSN\"]\n";
        let on = "[smtp]\ndisabled_extensions = []\n";
        let vs = [
            version(1, "init", on),
            version(2, "set smtp.disabled_extensions", off),
            version(
                3,
                "set smtp.max_recipients",
                &format!("{off}max_recipients = 5\n"),
            ),
        ];
        let key = "smtp.disabled_extensions";
        assert_eq!(recorded_choice(&vs, off, key).map(|v| v.version), Some(2));
        // Changed outside mailroom, not applied: nobody's recorded choice.
        let other = "[smtp]\ndisabled_extensions = [\"DSN\", \"CHUNKING\"]\n";
        assert!(recorded_choice(&vs, other, key).is_none());
        // Absent: the default, no choice to keep.
        assert!(recorded_choice(&vs, "[smtp]\n", key).is_none());
        assert!(recorded_choice(&[], off, key).is_none());
    }
}
