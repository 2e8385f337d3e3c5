//! `mailroom repair`: puts back what a healthy server has and this one lost, without touching
//! a byte of anyone's mail (the seed's reinstall, which "backfills missing files and metabase
//! entries" and leaves the databases alone).
//!
//! What it puts back: a configuration file that does not load (from the newest version of the
//! config store that does); the extension registrations (`smtp.extensions`, and none left in
//! `smtp.disabled_extensions`); the service definitions, with the right component and enabled
//! for every service mail needs (`pop3` is left as the operator set it); it removes legacy
//! keys without effect and definitions of retired components; it makes the missing data
//! directories; it puts this server's entry back into the organization's directory.
//!
//! It proves it touched no mail: every mailbox message and every queued message (envelope,
//! recipients, the content it names; message text itself is immutable in the store, so its
//! octets need not be read, see `Maintenance::mail_digests`) is hashed before and after its changes (before the running server is
//! asked to reload, which may then let waiting mail flow); a message present both times whose
//! hash differs is an error. Messages the running server delivered or removed meanwhile are
//! counted apart: they are its work, not the repair's. With nothing flowing, the checksums
//! before and after are equal. It is idempotent: a second run finds
//! nothing to do.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::admin::config::{apply, reload_running};
use crate::config::history::{self, get_key};
use crate::config::{
    self, Config, ORG_EXTENSIONS, RETIRED_SERVICES, SERVICES, STANDARD_EXTENSIONS,
};
use crate::services::required;
use crate::store::{Checksums, MailDigests, Store};

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// True when nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// Each change made (or, dry, that would be made), in words.
    pub changed: Vec<String>,
    /// What was found missing but cannot be put back by repair, with what to do instead.
    pub not_repaired: Vec<String>,
    /// The mail's checksums before.
    pub before: Checksums,
    /// The mail's checksums after.
    pub after: Checksums,
    /// Messages the running server delivered (added) or removed while the repair ran: not
    /// the repair's doing, and not counted as changed.
    pub server_added: usize,
    /// See `server_added`.
    pub server_removed: usize,
    /// The new config version, when the configuration changed.
    pub version: Option<i64>,
    /// What the running server said to the reload (`{"running": false}` when none runs).
    pub reload: Option<crate::admin::config::ReloadOutcome>,
}

/// Why repair could not run.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The store could not be used.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// Neither the file nor any stored version loads.
    #[error("no good configuration to put back: {0}")]
    NoGoodConfig(String),
    /// A change could not be written.
    #[error("{0}")]
    Write(String),
    /// Mail present before and after the repair is not the same (never expected: repair
    /// writes no mail; something else rewrote it meanwhile).
    #[error("mail changed during the repair: {0:?}")]
    MailChanged(Vec<String>),
}

/// What repair keeps that a healthy server would not have, because an administrator chose it.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// `smtp.disabled_extensions` holds what a version of the config store recorded (see
    /// [`crate::admin::config::recorded_choice`]): kept, but for the organization's own
    /// extensions inside an organization, which its servers need.
    pub disabled_extensions: bool,
    /// This server is in an organization.
    pub in_org: bool,
    /// Keys the administrator asked to reset to their defaults (`repair --reset KEY`).
    pub reset: Vec<String>,
}

/// The configuration text with the registrations and definitions a healthy server has, and
/// what was changed, in words. Pure: the table tests drive it.
pub fn heal_config(
    text: &str,
    config: &Config,
    choices: &Choices,
) -> Result<(String, Vec<String>), RepairError> {
    let edit_err = |e: history::EditError| RepairError::Write(e.to_string());
    let mut t = text.to_string();
    let mut changed = Vec::new();
    for key in &choices.reset {
        let (x, was) = history::unset_key(&t, key).map_err(edit_err)?;
        if !was {
            return Err(RepairError::Write(format!(
                "--reset {key}: the file does not set {key} (it is at its default already)"
            )));
        }
        t = x;
        changed.push(format!("reset {key} to its default, as asked"));
    }
    // (Reset keys take their defaults from here on.)
    let reparsed;
    let config = if choices.reset.is_empty() {
        config
    } else {
        reparsed = Config::parse(&t, Path::new(config::FILE_NAME))
            .map_err(|e| RepairError::Write(format!("after --reset: {e}")))?;
        &reparsed
    };
    let listed = config.smtp.extensions.clone();
    let missing: Vec<&str> = STANDARD_EXTENSIONS
        .iter()
        .copied()
        .filter(|k| !listed.iter().flatten().any(|l| l.eq_ignore_ascii_case(k)))
        .collect();
    if listed.is_none() || !missing.is_empty() {
        let list = format!(
            "[{}]",
            STANDARD_EXTENSIONS
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        t = history::set_key(&t, "smtp.extensions", &list).map_err(edit_err)?;
        changed.push(if listed.is_none() {
            "wrote the extension registrations into the config store (smtp.extensions)".into()
        } else {
            format!("registered again: {}", missing.join(" "))
        });
    }
    let disabled = &config.smtp.disabled_extensions;
    let needed = |k: &String| {
        !choices.disabled_extensions
            || (choices.in_org && ORG_EXTENSIONS.contains(&k.to_ascii_uppercase().as_str()))
    };
    let (back, kept): (Vec<&String>, Vec<&String>) = disabled.iter().partition(|k| needed(k));
    if !back.is_empty() {
        let list = format!(
            "[{}]",
            kept.iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        t = history::set_key(&t, "smtp.disabled_extensions", &list).map_err(edit_err)?;
        let why = if choices.disabled_extensions {
            "the organization's servers need them"
        } else {
            "no version of the config store recorded it: not an administrator's choice"
        };
        changed.push(format!(
            "unregistered no longer: {} (removed from smtp.disabled_extensions; {why})",
            back.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let defs = config.services.clone().unwrap_or_default();
    for name in SERVICES {
        let key = |k: &str| format!("services.{name}.{k}");
        match defs.get(*name) {
            None => {
                t = history::set_key(&t, &key("enabled"), "true").map_err(edit_err)?;
                t = history::set_key(&t, &key("runs"), &format!("\"{name}\"")).map_err(edit_err)?;
                changed.push(format!("put back the definition of the {name} service"));
            }
            Some(d) => {
                if d.runs != *name {
                    t = history::set_key(&t, &key("runs"), &format!("\"{name}\""))
                        .map_err(edit_err)?;
                    changed.push(format!(
                        "the {name} service runs in {name} again (its definition said {:?})",
                        d.runs
                    ));
                }
                if !d.enabled && required(name) {
                    t = history::set_key(&t, &key("enabled"), "true").map_err(edit_err)?;
                    changed.push(format!("enabled the {name} service (mail needs it)"));
                }
            }
        }
    }
    for (name, _) in RETIRED_SERVICES {
        if defs.contains_key(*name) {
            let (x, _) = history::unset_key(&t, &format!("services.{name}")).map_err(edit_err)?;
            t = x;
            changed.push(format!(
                "removed the definition of the retired component {name}"
            ));
        }
    }
    for (key, _) in config.legacy_settings() {
        let value = get_key(config, key).unwrap_or_default();
        let (x, _) = history::unset_key(&t, key).map_err(edit_err)?;
        t = x;
        changed.push(format!(
            "removed the legacy key {key} (= {value}; it had no effect)"
        ));
    }
    Ok((t, changed))
}

/// Runs a repair of the data directory `data`; `reset` names keys to put back to their
/// defaults besides (`repair --reset KEY`).
pub async fn run(data: &Path, dry_run: bool, reset: &[String]) -> Result<Outcome, RepairError> {
    // Looked at before the store is opened: opening it makes the directory.
    let spool = data.join(crate::store::spool::DIR_NAME);
    let spool_missing = !spool.is_dir();
    let db = data.join(crate::store::sqlite::FILE_NAME);
    if !db.exists() {
        return Err(RepairError::Write(format!(
            "there is no store at {}: repair puts back what a store lost, it does not make one \
             (`mailroom init`)",
            db.display()
        )));
    }
    let store: Arc<dyn Store> =
        crate::server::open_store_as_is(data).map_err(|e| RepairError::Write(e.to_string()))?;
    let before = store.mail_digests().await?;
    let mut changed = Vec::new();
    let mut not_repaired = Vec::new();
    let file = data.join(config::FILE_NAME);
    let on_disk = std::fs::read_to_string(&file);
    let versions = store.config_versions().await?;
    let (good, base) = match on_disk.as_ref().map(|t| Config::parse(t, &file)) {
        Ok(Ok(c)) => (c, on_disk.as_ref().map(|t| t.clone()).unwrap_or_default()),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("{}: {e}", file.display()),
                Ok(Ok(_)) => String::new(),
            };
            let Some((v, c)) = versions
                .iter()
                .rev()
                .find_map(|v| Config::parse(&v.text, &file).ok().map(|c| (v, c)))
            else {
                return Err(RepairError::NoGoodConfig(why));
            };
            changed.push(format!(
                "put back the configuration file from version {} (the file did not load: {why})",
                v.version
            ));
            (c, v.text.clone())
        }
    };
    let choices = Choices {
        disabled_extensions: crate::admin::config::recorded_choice(
            &versions,
            &base,
            "smtp.disabled_extensions",
        )
        .is_some(),
        in_org: store.org().await?.is_some(),
        reset: reset.to_vec(),
    };
    let (text, edits) = heal_config(&base, &good, &choices)?;
    changed.extend(edits);
    let config_changed = on_disk.as_ref().ok() != Some(&text);
    let mut version = None;
    if config_changed && !dry_run {
        let out = apply(data, store.as_ref(), text, "repair".into(), false)
            .await
            .map_err(|e| RepairError::Write(format!("{e:#}")))?;
        version = Some(out.version);
    }
    if spool_missing {
        if !dry_run && !spool.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&spool)
                .map_err(|e| {
                    RepairError::Write(format!("cannot create {}: {e}", spool.display()))
                })?;
        }
        changed.push(format!("made the missing directory {}", spool.display()));
    }
    let drop = data.join(crate::receive::maildrop::DIR);
    if maildrop_wrong(data) {
        if !dry_run {
            crate::receive::maildrop::prepare(data).map_err(|e| {
                RepairError::Write(format!("cannot make {} (mode 1733): {e}", drop.display()))
            })?;
        }
        changed.push(format!(
            "made the maildrop {} open to local programs (mode 1733, data directory o+x)",
            drop.display()
        ));
    }
    let (cert, key) = (
        data.join(&good.tls.certificate),
        data.join(&good.tls.private_key),
    );
    if !cert.exists() && !key.exists() {
        if !dry_run {
            crate::tls::self_signed(&good.server.hostname, &cert, &key)
                .map_err(|e| RepairError::Write(e.to_string()))?;
        }
        changed.push(format!(
            "made a self-signed certificate for {} in {} (the running server uses it at once; \
             replace it with your own)",
            good.server.hostname,
            cert.display()
        ));
    } else if let Err(e) = crate::tls::server_config(&cert, &key, good.tls.min_version) {
        not_repaired.push(format!(
            "TLS cannot be used: {e}. Repair does not replace a certificate someone put there: \
             put a matching PEM certificate chain and key in those files, or remove both and \
             repair again for a self-signed one"
        ));
    }
    if let Some((m, state)) = store.org().await? {
        if state.dir.server(&m.me).is_none() {
            let group = crate::org::dir::live(&state.dir.groups)
                .find(|(_, g)| g.master == m.me)
                .or_else(|| crate::org::dir::live(&state.dir.groups).next())
                .map(|(n, _)| n.clone());
            let address = good
                .smtp
                .listen
                .first()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| a.to_string());
            match (group, address) {
                (_, None) => not_repaired.push(format!(
                    "this server is missing from the organization's directory, but smtp.listen \
                     ({:?}) gives no address the other servers can connect to: on a server of \
                     the organization, `mailroom org join` this one again with --address HOST:PORT",
                    good.smtp.listen
                )),
                (Some(group), Some(address)) => {
                    if !dry_run {
                        let mut s = state.clone();
                        s.set_server(&m.me, &m.me, &group, &address);
                        store.org_merge(s).await?;
                    }
                    changed.push(format!(
                        "put this server ({}) back into the organization's directory, in group \
                         {group}, at {address}",
                        m.me
                    ));
                }
                (None, Some(_)) => not_repaired.push(
                    "this server is missing from the organization's directory, and no group \
                     is left to put it in: `mailroom org group add`, then repair again"
                        .into(),
                ),
            }
        }
    }
    let after = store.mail_digests().await?;
    let changed_mail = after.changed_since(&before);
    if !changed_mail.is_empty() {
        return Err(RepairError::MailChanged(changed_mail));
    }
    let count = |a: &MailDigests, b: &MailDigests| {
        a.mailboxes
            .keys()
            .filter(|k| !b.mailboxes.contains_key(*k))
            .count()
            + a.queue.keys().filter(|k| !b.queue.contains_key(*k)).count()
    };
    let (server_added, server_removed) = (count(&after, &before), count(&before, &after));
    let reload = if !dry_run && !changed.is_empty() {
        Some(reload_running(data, "repair".into()).await)
    } else {
        None
    };
    Ok(Outcome {
        dry_run,
        changed,
        not_repaired,
        before: before.checksums(),
        after: after.checksums(),
        server_added,
        server_removed,
        version,
        reload,
    })
}

/// True when the maildrop is missing or not open to local programs (see
/// [`crate::receive::maildrop::prepare`]).
fn maildrop_wrong(data: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
    let drop = data.join(crate::receive::maildrop::DIR);
    !drop.is_dir()
        || mode(&drop).ok() != Some(0o1733)
        || mode(data).map_or(true, |m| m & 0o011 != 0o011)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healed(text: &str) -> (String, Vec<String>) {
        let cfg = Config::parse(text, Path::new("t.toml")).unwrap();
        let (t, changed) = heal_config(text, &cfg, &Choices::default()).unwrap();
        let again = Config::parse(&t, Path::new("t.toml")).unwrap();
        let (t2, twice) = heal_config(&t, &again, &Choices::default()).unwrap();
        assert!(
            twice.is_empty() && t2 == t,
            "a second repair changes nothing: {twice:?}"
        );
        (t, changed)
    }

    #[test]
    fn a_healthy_file_is_left_alone() {
        let text = config::template(
            "example.com",
            "mx.example.com",
            &crate::config::Listen::default(),
        );
        let (t, changed) = healed(&text);
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(t, text);
    }

    #[test]
    fn lost_registrations_and_definitions_come_back() {
        let text = config::template(
            "example.com",
            "mx.example.com",
            &crate::config::Listen::default(),
        )
        .replace(
            &format!(
                "extensions = [{}]",
                STANDARD_EXTENSIONS
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "extensions = [\"SIZE\", \"PIPELINING\"]",
        )
        .replace(
            "disabled_extensions = []",
            "disabled_extensions = [\"DSN\"]",
        )
        .replace(
            "[services.routing-engine]\nenabled = true\nruns = \"routing-engine\"",
            "[services.routing-engine]\nenabled = false\nruns = \"smtp-receive\"",
        )
        .replace(
            "[services.pop3]\nenabled = true",
            "[services.pop3]\nenabled = false",
        )
        .replace(
            "[services.smtp-send]\nenabled = true\nruns = \"smtp-send\"\n",
            "",
        ) + "\n[services.imc]\nenabled = true\nruns = \"imc\"\n";
        let text = text.replace("[queue]\n", "[queue]\nscan_interval = \"5s\"\n");
        let (t, changed) = healed(&text);
        let cfg = Config::parse(&t, Path::new("t.toml")).unwrap();
        assert_eq!(cfg.registered_extensions(), STANDARD_EXTENSIONS);
        let defs = cfg.service_defs();
        assert_eq!(defs["routing-engine"].runs, "routing-engine");
        assert!(defs["routing-engine"].enabled && defs["smtp-send"].enabled);
        assert!(!defs["pop3"].enabled, "pop3 stays as the operator set it");
        assert!(!defs.contains_key("imc"));
        assert!(cfg.legacy_settings().is_empty());
        let said = changed.join("\n");
        for want in [
            "registered again: 8BITMIME",
            "unregistered no longer: DSN (removed from smtp.disabled_extensions; no version",
            "routing-engine service runs in routing-engine again",
            "enabled the routing-engine service",
            "put back the definition of the smtp-send service",
            "retired component imc",
            "legacy key queue.scan_interval",
        ] {
            assert!(said.contains(want), "{want}:\n{said}");
        }
        assert!(t.contains("# mailroom configuration."), "the comments stay");
    }

    /// Issue 21: an administrator's recorded choice to turn extensions off is kept (but the
    /// organization's own, inside one); `--reset` puts a key back to its default.
    #[test]
    fn a_recorded_choice_is_kept_unless_reset() {
        let text = config::template(
            "example.com",
            "mx.example.com",
            &crate::config::Listen::default(),
        )
        .replace(
            "disabled_extensions = []",
            "disabled_extensions = [\"DSN\", \"X-ORG-META\"]",
        );
        let cfg = Config::parse(&text, Path::new("t.toml")).unwrap();
        let chosen = Choices {
            disabled_extensions: true,
            ..Choices::default()
        };
        let (t, changed) = heal_config(&text, &cfg, &chosen).unwrap();
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(t, text);
        let in_org = Choices {
            in_org: true,
            ..chosen.clone()
        };
        let (t, changed) = heal_config(&text, &cfg, &in_org).unwrap();
        let healed = Config::parse(&t, Path::new("t.toml")).unwrap();
        assert_eq!(healed.smtp.disabled_extensions, ["DSN"]);
        assert!(
            changed[0].contains("X-ORG-META") && changed[0].contains("need them"),
            "{changed:?}"
        );
        let reset = Choices {
            reset: vec!["smtp.disabled_extensions".into()],
            ..chosen
        };
        let (t, changed) = heal_config(&text, &cfg, &reset).unwrap();
        let healed = Config::parse(&t, Path::new("t.toml")).unwrap();
        assert!(healed.smtp.disabled_extensions.is_empty());
        assert_eq!(
            changed,
            ["reset smtp.disabled_extensions to its default, as asked"]
        );
        let again = heal_config(&t, &healed, &reset).unwrap_err();
        assert!(
            again.to_string().contains("at its default already"),
            "{again}"
        );
    }
}
