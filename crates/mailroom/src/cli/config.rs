//! `config …`: the config store (versions, diffs, rollback, backup, restore, verify, reload),
//! and `status`.
//!
//! Every change goes the same way: the new text is validated (nothing is written when it is
//! invalid), recorded as a version with its origin, written to the file (privately, atomically,
//! with fsync), and the running server, if any, is asked to reload it and says what it applied
//! and what waits for a restart.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use super::ConfigCommand;
use crate::admin::config::{
    apply, file_of, latest, verify_store, write_private, Applied, ReloadOutcome,
};
use crate::config::history::{self, Backup};
use crate::config::Config;
use crate::control;
use crate::store::{BackupRecord, ConfigStore, Store};

/// Prints what [`apply`] did.
fn report(out: &Applied) {
    let v = out.version;
    if !out.new {
        outln!("no change (version {v} is in effect)");
        return;
    }
    outln!("recorded version {v}");
    match &out.reload {
        None => {}
        Some(ReloadOutcome::NotRunning { .. }) => {
            outln!("the server is not running: it applies the change when it starts")
        }
        Some(ReloadOutcome::Unreachable { error }) => {
            outln!("the running server did not apply it: {error}")
        }
        Some(ReloadOutcome::Answered(r)) if !r.ok => outln!(
            "the running server did not apply it: {}",
            r.error.as_deref().unwrap_or("?")
        ),
        Some(ReloadOutcome::Answered(r)) if r.restart_needed.is_empty() => {
            outln!("applied by the running server")
        }
        Some(ReloadOutcome::Answered(r)) => outln!(
            "applied by the running server, except what needs a restart: {}",
            r.restart_needed.join(", ")
        ),
    }
}

fn print_changes(changes: &[history::Change]) {
    if changes.is_empty() {
        outln!("  (no change of any key)");
    }
    for c in changes {
        let o = c.old.as_deref().unwrap_or("(absent)");
        let n = c.new.as_deref().unwrap_or("(absent)");
        outln!("  {}: {o} -> {n}", c.key);
    }
}

/// A version named on the command line: a number, `current` (the newest) or `file`.
async fn text_of(data: &Path, store: &dyn ConfigStore, v: &str) -> anyhow::Result<String> {
    if v == "file" {
        let f = file_of(data);
        return std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()));
    }
    let all = store.config_versions().await?;
    let found = if v == "current" {
        all.last()
    } else {
        let n: i64 = v
            .parse()
            .with_context(|| format!("{v:?} is not a version (a number, current or file)"))?;
        all.iter().find(|x| x.version == n)
    };
    match found {
        Some(x) => Ok(x.text.clone()),
        None => bail!(
            "no version {v} in the config store (kept: {})",
            all.iter()
                .map(|x| x.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `mailroom config …`.
pub async fn config(data: &Path, c: ConfigCommand) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = crate::server::open_store(data)?;
    let store = store.as_ref();
    let file = file_of(data);
    let read = || {
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))
    };
    match c {
        ConfigCommand::Show { non_default } => {
            let cfg = match Config::parse(&read()?, &file) {
                Ok(c) => c,
                Err(e) => bail!("{e} (`mailroom repair` puts back the last good version)"),
            };
            for line in history::show(&cfg, non_default) {
                outln!("{line}");
            }
        }
        ConfigCommand::Get { key } => {
            let cfg = match Config::parse(&read()?, &file) {
                Ok(c) => c,
                Err(e) => bail!("{e} (`mailroom repair` puts back the last good version)"),
            };
            match history::get_key(&cfg, &key) {
                Some(v) => outln!("{v}"),
                None => bail!("no key {key} in the configuration"),
            }
        }
        ConfigCommand::Set { key, value } => {
            let text = history::set_key(&read()?, &key, &value)?;
            report(&apply(data, store, text, format!("set {key}"), true).await?);
        }
        ConfigCommand::Unset { key } => {
            let (text, was) = history::unset_key(&read()?, &key)?;
            if !was {
                outln!("{key} is not in the file; nothing changed");
                return Ok(());
            }
            report(&apply(data, store, text, format!("unset {key}"), true).await?);
        }
        ConfigCommand::History { json } => {
            let all = store.config_versions().await?;
            if json {
                let rows: Vec<serde_json::Value> = all
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let before = if i == 0 { "" } else { all[i - 1].text.as_str() };
                        serde_json::json!({
                            "version": v.version,
                            "time": v.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "origin": v.origin,
                            "sha256": v.sha256,
                            "changes": if i == 0 { Vec::new() } else { history::diff(before, &v.text) },
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if all.is_empty() {
                outln!("no versions recorded yet (the server records the file when it starts)");
            }
            for (i, v) in all.iter().enumerate() {
                outln!(
                    "version {}  {}  {}",
                    v.version,
                    v.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    v.origin
                );
                if i > 0 {
                    print_changes(&history::diff(&all[i - 1].text, &v.text));
                }
            }
        }
        ConfigCommand::Diff { from, to } => {
            let a = text_of(data, store, &from).await?;
            let b = text_of(data, store, &to).await?;
            outln!("from {from} to {to}:");
            print_changes(&history::diff(&a, &b));
        }
        ConfigCommand::Rollback { version } => {
            let text = text_of(data, store, &version.to_string()).await?;
            report(&apply(data, store, text, format!("rollback {version}"), true).await?);
        }
        ConfigCommand::Backup { file: out } => {
            let Some(v) = latest(store).await? else {
                bail!("no version recorded yet: start the server once, or change a key");
            };
            let cfg = Config::parse(&v.text, &file)?;
            let out = out.unwrap_or_else(|| {
                data.join("backups").join(format!(
                    "config-v{}-{}.json",
                    v.version,
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let bytes = Backup::new(&cfg.server.hostname, v.version, &v.text).encode();
            write_private(&out, &bytes)?;
            let path = std::fs::canonicalize(&out).unwrap_or(out);
            let sha = history::sha256(&bytes);
            store
                .config_backup_record(BackupRecord {
                    path: path.display().to_string(),
                    time: chrono::Utc::now(),
                    version: v.version,
                    sha256: sha.clone(),
                })
                .await?;
            outln!(
                "wrote {} (version {}, SHA-256 {sha})",
                path.display(),
                v.version
            );
        }
        ConfigCommand::Restore {
            file: from,
            allow_other_server,
        } => {
            let bytes =
                std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
            let (b, _) = Backup::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was changed", from.display()))?;
            let here = Config::parse(&read()?, &file)
                .map(|c| c.server.hostname)
                .ok()
                .or(latest(store)
                    .await?
                    .and_then(|v| Config::parse(&v.text, &file).ok())
                    .map(|c| c.server.hostname));
            if let Some(here) = here {
                if here != b.server && !allow_other_server {
                    bail!(
                        "{} is a backup of {}, not of this server ({here}); nothing was changed \
                         (--allow-other-server restores it anyway)",
                        from.display(),
                        b.server
                    );
                }
            }
            outln!(
                "restoring version {} of {}, made {}",
                b.version,
                b.server,
                b.created
            );
            let origin = format!("restore {}", from.display());
            report(&apply(data, store, b.config, origin, true).await?);
        }
        ConfigCommand::Verify { file: Some(f) } => {
            let bytes =
                std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
            let (b, _) =
                Backup::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            outln!(
                "{}: a good backup of version {} of {}, made {} (SHA-256 {})",
                f.display(),
                b.version,
                b.server,
                b.created,
                history::sha256(&bytes)
            );
        }
        ConfigCommand::Verify { file: None } => {
            let problems = verify_store(data, store).await?;
            if problems.is_empty() {
                outln!("the config store verifies");
            } else {
                for p in &problems {
                    outln!("{p}");
                }
                bail!(
                    "the config store does not verify ({} problem(s))",
                    problems.len()
                );
            }
        }
        ConfigCommand::Reload => {
            let r = control::reload(data, "config reload".into()).await?;
            if !r.ok {
                bail!(
                    "reload refused: {}; the configuration in effect (version {}) is unchanged",
                    r.error.as_deref().unwrap_or("?"),
                    r.version
                );
            }
            outln!("version {} in effect", r.version);
            print_changes(&r.changes);
            if !r.restart_needed.is_empty() {
                outln!(
                    "needs a restart to take effect: {}",
                    r.restart_needed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// `mailroom status`.
pub async fn status(data: &Path, json: bool) -> anyhow::Result<()> {
    let s = control::status(data).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    outln!(
        "{} (pid {}, since {}): configuration version {}, file {}",
        s.server,
        s.pid,
        s.started,
        s.config_version,
        s.config_file
    );
    if !s.restart_needed.is_empty() {
        outln!("waiting for a restart: {}", s.restart_needed.join(", "));
    }
    for svc in &s.services {
        let state = serde_json::to_value(svc.state).unwrap_or_default();
        let mut line = format!("  {:<15} {:<8}", svc.name, state.as_str().unwrap_or("?"));
        if !svc.listen.is_empty() {
            line.push_str(&format!(" {}", svc.listen.join(" ")));
        }
        if let Some(r) = &svc.reason {
            line.push_str(&format!(" ({r})"));
        }
        outln!("{line}");
    }
    Ok(())
}
