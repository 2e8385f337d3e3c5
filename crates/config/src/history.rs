//! The config store's pure parts: key-level diffs between versions, editing one key of the file
//! without losing its comments, which changes a running server applies at once, and the backup
//! format with its checks.
//!
//! A version is the whole file, as text: what an operator reads and edits is exactly what is
//! kept, diffed and restored. Diffs are computed between the flattened keys (`smtp.listen`), so
//! a reordering or a comment is not a change of meaning, and a value is compared as TOML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::Config;

/// SHA-256 of bytes, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True for keys whose values are never printed: by their last part, `secret`, `password`,
/// `private_key` or a name ending in `_secret`, `_password`, `_private_key`
/// (`server.max_password_checks` is no secret).
pub fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["secret", "password", "private_key", "token"]
        .iter()
        .any(|s| last == *s || last.ends_with(&format!("_{s}")))
}

/// A value as printed: itself, or a mask for a secret.
pub fn shown(key: &str, value: &str) -> String {
    if is_secret(key) {
        "(secret, not shown)".into()
    } else {
        value.to_string()
    }
}

/// The file's keys, flattened (`smtp.max_recipients` → `100`), values in TOML syntax. A text
/// that does not parse as TOML has no keys.
pub fn flatten(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(v) = text.parse::<toml::Table>() {
        walk("", &toml::Value::Table(v), &mut out);
    }
    out
}

fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// One key that differs between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The dotted key.
    pub key: String,
    /// Its value before (`None`: absent), masked when secret.
    pub old: Option<String>,
    /// Its value after (`None`: removed), masked when secret.
    pub new: Option<String>,
}

/// The keys that differ from `old` to `new`, in key order.
pub fn diff(old: &str, new: &str) -> Vec<Change> {
    let (a, b) = (flatten(old), flatten(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            key: k.clone(),
            old: a.get(k).map(|v| shown(k, v)),
            new: b.get(k).map(|v| shown(k, v)),
        })
        .collect()
}

/// The changed keys that a running server applies only when it restarts. Everything a session
/// or a service reads when it starts is applied at a reload: the SMTP settings and the
/// listeners' addresses (the service is restarted on its new addresses), the extension
/// registrations, the service definitions. The rest (identity, the POP3 limits, held with its
/// mailbox locks, queue, outbound, DNS, the organization's timers) is held by long-running
/// parts and needs a restart.
pub fn needs_restart(changes: &[Change]) -> Vec<String> {
    const LIVE: &[&str] = &[
        "smtp.",
        "pop3.listen",
        "pop3.tls_listen",
        "imap.listen",
        "imap.tls_listen",
        "submission.listen",
        "submission.tls_listen",
        "submission.max_connections",
        "submission.check_sender",
        "sender_auth.",
        "dkim.",
        "outbound.",
        "services.",
        "supervisor.",
        "config.",
    ];
    changes
        .iter()
        .map(|c| &c.key)
        .filter(|k| !LIVE.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect()
}

/// Why a key could not be set.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EditError {
    /// The file is not TOML.
    #[error("the configuration file is not valid TOML: {0}")]
    Syntax(String),
    /// The key names something that is not a table on the way.
    #[error("{0}: a part of this key is a value, not a table")]
    NotATable(String),
    /// The key is empty or malformed.
    #[error("{0:?} is not a key (up to 4 dotted names of letters, digits, _ and -, like smtp.max_recipients)")]
    BadKey(String),
}

/// The deepest key accepted (`services.smtp-receive.enabled` is 3).
pub const MAX_KEY_DEPTH: usize = 4;

/// The file as an editable document, the key's tables and its last part (`smtp.listen`:
/// `[smtp]`, `listen`).
fn document<'k>(
    text: &str,
    key: &'k str,
) -> Result<(toml_edit::DocumentMut, Vec<&'k str>, &'k str), EditError> {
    let doc = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Syntax(e.message().to_string()))?;
    // Every key of the configuration is a TOML bare key: letters, digits, `_` and `-`.
    let mut p: Vec<&str> = key.split('.').collect();
    let bare = |s: &&str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    // No key of the configuration is deeper than `services.NAME.enabled`.
    if p.len() > MAX_KEY_DEPTH || !p.iter().all(bare) {
        return Err(EditError::BadKey(key.into()));
    }
    let last = p.pop().ok_or_else(|| EditError::BadKey(key.into()))?;
    Ok((doc, p, last))
}

/// The value a `config set` argument means: TOML (`50`, `true`, `["a", "b"]`, `"x"`), or else
/// the argument as a string (`mx.example.com`).
fn value_of(arg: &str) -> toml_edit::Value {
    match arg.parse::<toml_edit::Value>() {
        Ok(v) => v,
        Err(_) => toml_edit::Value::from(arg),
    }
}

/// The file with `key` set to `value`, its comments and layout otherwise kept.
pub fn set_key(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    let (mut doc, path, last) = document(text, key)?;
    let mut item = doc.as_item_mut();
    for part in path {
        let t = item
            .as_table_like_mut()
            .ok_or_else(|| EditError::NotATable(key.into()))?;
        if t.get(part).is_none() {
            // Implicit: only the table that gets the value is written with a header.
            let mut new = toml_edit::Table::new();
            new.set_implicit(true);
            t.insert(part, toml_edit::Item::Table(new));
        }
        item = t
            .get_mut(part)
            .ok_or_else(|| EditError::NotATable(key.into()))?;
    }
    let t = item
        .as_table_like_mut()
        .ok_or_else(|| EditError::NotATable(key.into()))?;
    let mut v = value_of(value);
    if let Some(old) = t.get(last).and_then(|i| i.as_value()) {
        // Keep the comment that followed the old value on its line.
        *v.decor_mut() = old.decor().clone();
    }
    t.insert(last, toml_edit::Item::Value(v));
    let out = doc.to_string();
    // What is written must read back (an edit never leaves a file that does not parse).
    out.parse::<toml::Table>().map_err(|e| {
        EditError::Syntax(format!("the edited file would not parse: {}", e.message()))
    })?;
    Ok(out)
}

/// The file without `key` (nothing changes when it is absent); the second value says whether
/// it was there.
pub fn unset_key(text: &str, key: &str) -> Result<(String, bool), EditError> {
    let (mut doc, path, last) = document(text, key)?;
    let mut item = doc.as_item_mut();
    for part in path {
        let Some(next) = item.as_table_like_mut().and_then(|t| t.get_mut(part)) else {
            return Ok((text.to_string(), false));
        };
        item = next;
    }
    let removed = item
        .as_table_like_mut()
        .and_then(|t| t.remove(last))
        .is_some();
    Ok((doc.to_string(), removed))
}

/// The value of `key` in effect (defaults included), in TOML syntax; `None` when no such key.
pub fn get_key(config: &Config, key: &str) -> Option<String> {
    let table = toml::Value::try_from(config).ok()?;
    let mut v = &table;
    for part in key.split('.') {
        v = v.as_table()?.get(part)?;
    }
    if let toml::Value::Table(_) = v {
        // A whole table: one `key = value` line each, secrets masked.
        let mut out = BTreeMap::new();
        walk(key, v, &mut out);
        return Some(
            out.iter()
                .map(|(k, x)| format!("{k} = {}", shown(k, x)))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    Some(shown(key, &v.to_string()))
}

/// The whole configuration in effect as `key = value` lines in key order, defaults included,
/// secrets masked (Postfix's `postconf`). With `non_default`, only the keys whose value is not
/// the default, and the server's identity, which has none (`postconf -n`).
pub fn show(config: &Config, non_default: bool) -> Vec<String> {
    let flat = |c: &Config| {
        let mut out = BTreeMap::new();
        if let Ok(v) = toml::Value::try_from(c) {
            walk("", &v, &mut out);
        }
        out
    };
    let all = flat(config);
    let defaults = if non_default {
        flat(&Config::new(
            config.primary_domain(),
            &config.server.hostname,
        ))
    } else {
        BTreeMap::new()
    };
    all.iter()
        .filter(|(k, v)| {
            !non_default
                || k.as_str() == "server.hostname"
                || k.as_str() == "server.domains"
                || defaults.get(*k) != Some(*v)
        })
        .map(|(k, v)| format!("{k} = {}", shown(k, v)))
        .collect()
}

/// The format name a backup starts with; anything else is not a mailroom config backup.
pub const BACKUP_FORMAT: &str = "mailroom-config-backup";
/// The backup schema this mailroom writes and reads.
pub const BACKUP_SCHEMA: u32 = 1;

/// A backup of the configuration: the file's text with what it takes to trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_SCHEMA`] when written.
    pub schema: u32,
    /// The server it was made on (`server.hostname`).
    pub server: String,
    /// The config store version it holds.
    pub version: i64,
    /// When it was made (RFC 3339).
    pub created: String,
    /// SHA-256 of `config` (hex).
    pub sha256: String,
    /// The configuration file.
    pub config: String,
}

/// Why a backup cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackupError {
    /// Not a mailroom config backup at all.
    #[error("not a mailroom config backup ({0})")]
    Foreign(String),
    /// Cut short or damaged: it does not parse.
    #[error("the backup is truncated or damaged: {0}")]
    Damaged(String),
    /// Made by a newer mailroom.
    #[error("the backup has schema {0}; this mailroom reads schema {BACKUP_SCHEMA}")]
    Schema(u32),
    /// The configuration inside does not match its checksum.
    #[error("the backup is corrupt: its configuration's SHA-256 is {actual}, the backup says {expected}")]
    Checksum {
        /// What the backup says.
        expected: String,
        /// What its content has.
        actual: String,
    },
    /// The configuration inside is not valid.
    #[error("the backup's configuration is not valid: {0}")]
    Invalid(String),
}

impl Backup {
    /// A backup of `text` (version `version` of `server`).
    pub fn new(server: &str, version: i64, text: &str) -> Backup {
        Backup {
            format: BACKUP_FORMAT.into(),
            schema: BACKUP_SCHEMA,
            server: server.into(),
            version,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sha256: sha256(text.as_bytes()),
            config: text.into(),
        }
    }

    /// The backup file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads and checks a backup: the format, the schema, the checksum, and that the
    /// configuration inside loads. Anything that fails is refused, saying what.
    pub fn decode(bytes: &[u8]) -> Result<(Backup, Config), BackupError> {
        let v: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) if e.is_eof() => return Err(BackupError::Damaged(e.to_string())),
            Err(e) if bytes.trim_ascii_start().starts_with(b"{") => {
                return Err(BackupError::Damaged(e.to_string()))
            }
            Err(_) => return Err(BackupError::Foreign("it is not JSON".into())),
        };
        match v.get("format").and_then(|f| f.as_str()) {
            Some(BACKUP_FORMAT) => {}
            Some(other) => return Err(BackupError::Foreign(format!("its format is {other:?}"))),
            None => return Err(BackupError::Foreign("it has no format field".into())),
        }
        if let Some(s) = v.get("schema").and_then(|s| s.as_u64()) {
            if s > u64::from(BACKUP_SCHEMA) {
                return Err(BackupError::Schema(u32::try_from(s).unwrap_or(u32::MAX)));
            }
        }
        let b: Backup =
            serde_json::from_value(v).map_err(|e| BackupError::Damaged(e.to_string()))?;
        let actual = sha256(b.config.as_bytes());
        if actual != b.sha256 {
            return Err(BackupError::Checksum {
                expected: b.sha256,
                actual,
            });
        }
        let cfg = Config::parse(&b.config, std::path::Path::new("(backup)"))
            .map_err(|e| BackupError::Invalid(e.to_string()))?;
        Ok((b, cfg))
    }
}

/// The config store's invariants over arbitrary input, for the `config_store` fuzz target and
/// its corpus replay: reading a backup never panics, and one that is accepted survives being
/// written again; setting a key (input `KEY\0VALUE\0FILE`) never panics, gives a file that
/// parses, and changes that key (and what was under it) only.
pub fn check(data: &[u8]) {
    if let Ok((b, _)) = Backup::decode(data) {
        let again = Backup::decode(&b.encode()).map(|(x, _)| x);
        assert_eq!(
            again.as_ref(),
            Ok(&b),
            "an accepted backup does not survive re-encoding"
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let (Some(key), Some(value), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if file.parse::<toml::Table>().is_err() {
        return;
    }
    if let Ok(out) = set_key(file, key, value) {
        assert!(
            out.parse::<toml::Table>().is_ok(),
            "setting {key:?} made a file that does not parse:\n{out}"
        );
        for c in diff(file, &out) {
            assert!(
                c.key == key
                    || c.key.starts_with(&format!("{key}."))
                    || key.starts_with(&format!("{}.", c.key)),
                "setting {key:?} changed {:?}",
                c.key
            );
        }
    }
    if let Ok((out, _)) = unset_key(file, key) {
        assert!(
            out.parse::<toml::Table>().is_ok(),
            "unsetting {key:?} broke the file"
        );
    }
}

#[cfg(test)]
mod tests;
