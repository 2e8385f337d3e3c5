//! This server's own checks: the configuration and its store, the services, the data
//! directories and the store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Code;
use super::{Finder, Finding, Options, Severity};
use crate::config::history;
use crate::config::{
    self, Config, ORG_EXTENSIONS, RETIRED_SERVICES, SERVICES, STANDARD_EXTENSIONS,
};
use crate::control::{self, ControlError};
use crate::org::{Membership, OrgState};
use crate::services::State;
use crate::services::{check_definition, required};
use crate::store::Store;

/// What the other checks work from.
pub struct Context {
    /// The configuration: the file's, or the version in effect when the file does not load.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The running server's status, when it runs.
    pub status: Option<control::Status>,
    /// The organization, when this server is in one.
    pub org: Option<(Membership, OrgState)>,
    /// Builds findings about this server.
    pub f: Finder,
    /// Services already reported from their definitions (not reported again from the status).
    pub reported: Vec<String>,
    /// Why the configured certificate cannot be used, if it cannot.
    pub tls_error: Option<crate::tls::TlsError>,
    /// The version in which an administrator turned extensions off (`smtp.disabled_extensions`),
    /// when the file holds what it recorded: a choice, not damage.
    pub disabled_by: Option<crate::store::ConfigVersion>,
}

impl Context {
    /// The extensions an administrator chose to turn off: not expected of a healthy server.
    /// (Inside an organization its own extensions are never a choice: its servers need them.)
    pub fn chosen_off(&self) -> Vec<String> {
        if self.disabled_by.is_none() {
            return Vec::new();
        }
        self.config
            .smtp
            .disabled_extensions
            .iter()
            .map(|k| k.to_ascii_uppercase())
            .filter(|k| self.org.is_none() || !ORG_EXTENSIONS.contains(&k.as_str()))
            .collect()
    }

    /// This server's name: its name in the organization, or its hostname.
    pub fn me(&self) -> String {
        match &self.org {
            Some((m, _)) => m.me.clone(),
            None => self.config.server.hostname.clone(),
        }
    }
}

/// What [`check`] found, and the context for the other checks (none when the store cannot be
/// opened or no configuration can be found at all).
pub struct Local {
    /// The findings.
    pub findings: Vec<Finding>,
    /// The context.
    pub context: Option<Context>,
}

/// The extensions a healthy server offers: all of them inside an organization, all but the
/// organization's outside one.
pub fn expected_extensions(in_org: bool) -> Vec<&'static str> {
    STANDARD_EXTENSIONS
        .iter()
        .copied()
        .filter(|k| in_org || !ORG_EXTENSIONS.contains(k))
        .collect()
}

/// What a healthy server advertises on its SMTP receive listener, before TLS: no AUTH (it
/// is the submission service's), and STARTTLS where TLS is wanted and can work.
pub fn expected_on_receive(ctx: &Context) -> Vec<&'static str> {
    let starttls = ctx.config.smtp.starttls && ctx.tls_error.is_none();
    let off = ctx.chosen_off();
    expected_extensions(ctx.org.is_some())
        .into_iter()
        .filter(|k| *k != "AUTH" && (*k != "STARTTLS" || starttls))
        .filter(|k| !off.iter().any(|o| o == k))
        .collect()
}

const WHY_VERBS: &str = "an extension that is not registered is neither advertised nor accepted: \
     clients and the other servers of the organization fall back or refuse (the seed's server \
     lost its X- verbs this way, and mail between servers stopped)";

/// Runs the local checks.
pub async fn check(opts: &Options) -> Local {
    let data = &opts.data;
    // Before the store is opened (opening it makes the spool directory).
    let spool_state = spool_state(&data.join(crate::store::spool::DIR_NAME));
    let file = data.join(config::FILE_NAME);
    let mut out = Vec::new();
    let text = std::fs::read_to_string(&file);
    let parsed = text
        .as_ref()
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))
        .and_then(|t| Config::parse(t, &file).map_err(|e| e.to_string()));
    // Read only: doctor reports, it does not create, migrate or write.
    let opened = crate::server::open_store_read_only(data).map_err(|e| e.to_string());
    let store = match opened {
        Ok(s) => s as Arc<dyn Store>,
        Err(e) => {
            let f = Finder::new(
                parsed
                    .as_ref()
                    .map(|c| c.server.hostname.as_str())
                    .unwrap_or("(this server)"),
            );
            out.push(f.find(
                Code::StoreUnreadable,
                "the store cannot be opened",
                vec![e],
                "users, mailboxes, the queue and the config store's versions are all in it: \
                 nothing works without it",
                None,
            ));
            return Local {
                findings: out,
                context: None,
            };
        }
    };
    let unnamed = Finder::new("(this server)");
    let versions = match store.config_versions().await {
        Ok(v) => v,
        Err(e) => {
            out.push(cannot_check(&unnamed, "the config store's versions", &e));
            Vec::new()
        }
    };
    // The file's configuration, or the newest stored version that loads.
    let config = match &parsed {
        Ok(c) => c.clone(),
        Err(e) => match versions
            .iter()
            .rev()
            .find_map(|v| Config::parse(&v.text, &file).ok())
        {
            Some(c) => c,
            None => {
                let mut evidence = vec![e.clone()];
                evidence.extend(versions.iter().rev().take(3).map(|v| {
                    let why = Config::parse(&v.text, &file)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    format!("stored version {}: {why}", v.version)
                }));
                out.push(unnamed.find(
                    Code::ConfigInvalid,
                    if versions.is_empty() {
                        "the configuration file does not load and the config store has no version"
                    } else {
                        "neither the configuration file nor any stored version loads"
                    },
                    evidence,
                    "the server cannot start without a configuration, and doctor cannot check \
                     anything that depends on it",
                    Some(format!(
                        "mailroom init --domain DOMAIN --force --data {}",
                        data.display()
                    )),
                ));
                return Local {
                    findings: out,
                    context: None,
                };
            }
        },
    };
    let org = match store.org().await {
        Ok(o) => o,
        Err(e) => {
            out.push(cannot_check(&unnamed, "the organization's state", &e));
            None
        }
    };
    let f = Finder::new(&match &org {
        Some((m, _)) => m.me.clone(),
        None => config.server.hostname.clone(),
    });
    let tls_error = crate::tls::server_config(
        &data.join(&config.tls.certificate),
        &data.join(&config.tls.private_key),
        config.tls.min_version,
    )
    .err();
    let disabled_by = text
        .as_ref()
        .ok()
        .filter(|_| parsed.is_ok())
        .and_then(|t| {
            crate::admin::config::recorded_choice(&versions, t, "smtp.disabled_extensions")
        })
        .cloned();
    let mut ctx = Context {
        disabled_by,
        config,
        store,
        status: None,
        org,
        f,
        reported: Vec::new(),
        tls_error,
    };
    out.extend(config_store(&ctx, &parsed, &text, &versions).await);
    out.extend(settings(&ctx));
    let (defs, reported) = definitions(&ctx);
    out.extend(defs);
    ctx.reported = reported;
    out.extend(status(&mut ctx, opts).await);
    out.extend(directories(&ctx, opts, spool_state));
    out.extend(local_programs(&ctx, opts).await);
    out.extend(metrics(&ctx).await);
    if ctx.config.tls.acme.is_some() {
        if let Some(crate::tls::acme::Status {
            error: Some(e), at, ..
        }) = crate::tls::acme::status(&opts.data)
        {
            out.push(ctx.f.find(
                Code::AcmeFailed,
                "the certificate could not be got from the ACME CA",
                vec![format!("{at}: {e}")],
                "the certificate in place is kept until it expires; then clients refuse TLS",
                None,
            ));
        }
    }
    out.extend(tls(&ctx));
    out.extend(scram(&ctx).await);
    match ctx.store.integrity().await {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => out.push(
            ctx.f.find(
                Code::StoreIntegrity,
                "the store's consistency check failed",
                problems.into_iter().take(10).collect(),
                "damaged pages lose or garble mail; the queue quarantines what it cannot read",
                Some(
                    "restore the data directory from a backup taken while the server was stopped"
                        .into(),
                ),
            ),
        ),
        Err(e) => out.push(ctx.f.find(
            Code::StoreIntegrity,
            "the store's consistency check could not run",
            vec![e.to_string()],
            "a store that cannot be checked may be damaged",
            None,
        )),
    }
    Local {
        findings: out,
        context: Some(ctx),
    }
}

/// A check that could not run: an error, never silence (what it would have found is unknown).
pub fn cannot_check(f: &Finder, what: &str, e: &dyn std::fmt::Display) -> Finding {
    f.find(
        Code::CheckFailed,
        format!("{what} could not be read: that check did not run"),
        vec![e.to_string()],
        "a problem there would go unseen; doctor says so rather than calling the server healthy",
        None,
    )
}

/// The file against the version in effect; the stored versions and the backups.
async fn config_store(
    ctx: &Context,
    parsed: &Result<Config, String>,
    text: &std::io::Result<String>,
    versions: &[crate::store::ConfigVersion],
) -> Vec<Finding> {
    let f = &ctx.f;
    let mut out = Vec::new();
    let latest = versions.last();
    if let Err(e) = parsed {
        let file = std::path::Path::new(config::FILE_NAME);
        let restore = versions
            .iter()
            .rev()
            .find(|v| Config::parse(&v.text, file).is_ok())
            .map(|v| format!("version {} of the config store", v.version))
            .unwrap_or_else(|| "the defaults".into());
        out.push(f.find(
            Code::ConfigInvalid,
            "the configuration file does not load",
            vec![e.clone()],
            "a reload is refused and the server will not start again until it loads; the \
             running server keeps the version it has",
            Some(format!("mailroom repair   # puts back {restore}")),
        ));
    }
    for v in versions {
        if history::sha256(v.text.as_bytes()) != v.sha256 {
            out.push(f.find(
                Code::ConfigVersionCorrupt,
                format!(
                    "version {} of the configuration does not match its checksum",
                    v.version
                ),
                vec![format!("recorded SHA-256 {}", v.sha256)],
                "a rollback to it would not restore what was recorded",
                None,
            ));
        }
    }
    if let (Ok(_), Ok(t), Some(v)) = (parsed, text, latest) {
        if *t != v.text {
            let changes: Vec<String> = history::diff(&v.text, t)
                .into_iter()
                .map(|c| {
                    format!(
                        "{}: {} -> {}",
                        c.key,
                        c.old.as_deref().unwrap_or("(absent)"),
                        c.new.as_deref().unwrap_or("(absent)")
                    )
                })
                .collect();
            let mut evidence = vec![format!(
                "the file differs from version {} (recorded {}, {})",
                v.version, v.time, v.origin
            )];
            evidence.extend(changes);
            out.push(f.find(
                Code::ConfigChangedOutside,
                "the configuration file was changed outside mailroom and not applied",
                evidence,
                "the running server uses version it was given; the change takes effect, \
                 unreviewed, at the next reload or restart (another program writing the file \
                 is how the seed's metabase was damaged)",
                Some(format!(
                    "mailroom config reload   # to accept it; or: mailroom config rollback {}",
                    v.version
                )),
            ));
        }
    }
    match ctx.store.config_backups().await {
        Ok(b) if b.is_empty() => out.push(f.find(
            Code::ConfigNoBackup,
            "no backup of the configuration was made",
            vec![],
            "a backup restores a damaged configuration without reinstalling",
            Some("mailroom config backup".into()),
        )),
        Ok(backups) => {
            // The newest backup is the one a restore would use; an older one rotated away is
            // no problem (`mailroom config verify` checks them all).
            if let Some(b) = backups.into_iter().last() {
                let problem = match std::fs::read(&b.path) {
                    Err(e) => Some(format!("cannot read it: {e}")),
                    Ok(bytes) if history::sha256(&bytes) != b.sha256 => {
                        Some("it changed since it was made".into())
                    }
                    Ok(bytes) => history::Backup::decode(&bytes).err().map(|e| e.to_string()),
                };
                if let Some(p) = problem {
                    out.push(f.find(
                        Code::ConfigBackupBad,
                        format!("the backup {} cannot be used", b.path),
                        vec![p, format!("made {} of version {}", b.time, b.version)],
                        "a restore from it would be refused",
                        Some("mailroom config backup".into()),
                    ));
                }
            }
        }
        Err(e) => out.push(cannot_check(f, "the configuration backups", &e)),
    }
    out
}

/// Legacy keys, retired or unknown services, conflicting listeners, missing registrations.
fn settings(ctx: &Context) -> Vec<Finding> {
    let (f, c) = (&ctx.f, &ctx.config);
    let mut out = Vec::new();
    for (key, advice) in c.legacy_settings() {
        out.push(f.find(
            Code::ConfigLegacyKey,
            format!("{key} is a setting of an older version"),
            vec![format!(
                "{key} = {}",
                history::get_key(c, key).unwrap_or_default()
            )],
            advice,
            Some(format!("mailroom config unset {key}")),
        ));
    }
    for (name, def) in c.services.iter().flatten() {
        if SERVICES.contains(&name.as_str()) {
            continue;
        }
        let evidence = vec![format!(
            "[services.{name}] enabled = {}, runs = {:?}",
            def.enabled, def.runs
        )];
        match RETIRED_SERVICES.iter().find(|(n, _)| n == name) {
            Some((_, why)) => out.push(f.find(
                Code::ConfigRetiredService,
                format!("the retired component {name} is still defined"),
                evidence,
                why,
                Some("mailroom repair".into()),
            )),
            None => out.push(f.find(
                Code::ConfigUnknownService,
                format!("services.{name} is not a mailroom service"),
                evidence,
                "nothing runs it; a typo here may hide a service that should be defined",
                Some(format!("mailroom config unset services.{name}")),
            )),
        }
    }
    let mut seen: BTreeMap<u16, Vec<(String, SocketAddr)>> = BTreeMap::new();
    for (svc, a) in c
        .smtp
        .listen
        .iter()
        .map(|a| ("smtp.listen", a))
        .chain(c.submission.listen.iter().map(|a| ("submission.listen", a)))
        .chain(
            c.submission
                .tls_listen
                .iter()
                .map(|a| ("submission.tls_listen", a)),
        )
        .chain(c.pop3.listen.iter().map(|a| ("pop3.listen", a)))
        .chain(c.pop3.tls_listen.iter().map(|a| ("pop3.tls_listen", a)))
        .chain(c.imap.listen.iter().map(|a| ("imap.listen", a)))
        .chain(c.imap.tls_listen.iter().map(|a| ("imap.tls_listen", a)))
    {
        seen.entry(a.port())
            .or_default()
            .push((svc.to_string(), *a));
    }
    for (port, users) in seen {
        for (i, (k1, a1)) in users.iter().enumerate() {
            for (k2, a2) in &users[i + 1..] {
                if a1.ip() == a2.ip() || a1.ip().is_unspecified() || a2.ip().is_unspecified() {
                    out.push(f.find(
                        Code::ConfigListenerConflict,
                        format!("two listeners on port {port}"),
                        vec![format!("{k1} has {a1}"), format!("{k2} has {a2}")],
                        "only one can bind the address; the other service fails to start",
                        Some(format!("mailroom config set {k2} '[\"ADDRESS:PORT\"]'")),
                    ));
                }
            }
        }
    }
    let in_org = ctx.org.is_some();
    let registered = c.registered_extensions();
    let off = ctx.chosen_off();
    let (chosen, missing): (Vec<&str>, Vec<&str>) = expected_extensions(in_org)
        .into_iter()
        .filter(|k| !registered.iter().any(|r| r == k))
        .partition(|k| off.iter().any(|o| o == k));
    if let (false, Some(v)) = (chosen.is_empty(), &ctx.disabled_by) {
        out.push(f.find(
            Code::ExtensionDisabled,
            format!("turned off by the administrator: {}", chosen.join(" ")),
            vec![format!(
                "smtp.disabled_extensions = {:?}, recorded in version {} ({}, {})",
                c.smtp.disabled_extensions, v.version, v.origin, v.time
            )],
            "a choice recorded in the config store: clients do without these extensions; \
             repair keeps it",
            Some(
                "mailroom config set smtp.disabled_extensions '[]'   # or: mailroom repair --reset \
                 smtp.disabled_extensions"
                    .into(),
            ),
        ));
    }
    if !missing.is_empty() {
        let org_missing = missing.iter().any(|k| ORG_EXTENSIONS.contains(k));
        let mut finding = f.find(
            Code::ExtensionUnregistered,
            format!(
                "extensions missing from the registrations: {}",
                missing.join(" ")
            ),
            vec![
                format!(
                    "smtp.extensions = {}",
                    history::get_key(c, "smtp.extensions").unwrap_or_else(|| "(standard)".into())
                ),
                format!(
                    "smtp.disabled_extensions = {:?}",
                    c.smtp.disabled_extensions
                ),
            ],
            WHY_VERBS,
            Some("mailroom repair".into()),
        );
        if !org_missing {
            finding.severity = Severity::Warning;
        }
        out.push(finding);
    }
    out
}

/// The service definitions; the services reported (so the status does not repeat them).
fn definitions(ctx: &Context) -> (Vec<Finding>, Vec<String>) {
    let defs = ctx.config.service_defs();
    let mut out = Vec::new();
    let mut reported = Vec::new();
    for name in SERVICES {
        match check_definition(name, defs.get(*name)) {
            Ok(true) => {}
            Ok(false) => {
                let mut finding = ctx.f.find(
                    Code::ServiceDisabled,
                    format!("the {name} service is disabled"),
                    vec![format!("services.{name}.enabled = false")],
                    if required(name) {
                        "mail that needs it waits in its queue until it runs"
                    } else {
                        "its clients cannot connect"
                    },
                    Some(format!("mailroom config set services.{name}.enabled true")),
                );
                if !required(name) {
                    finding.severity = Severity::Info;
                }
                out.push(finding);
                reported.push(name.to_string());
            }
            Err(why) => {
                out.push(ctx.f.find(
                    Code::ServiceDefinition,
                    format!("the {name} service cannot start: its definition is broken"),
                    vec![why],
                    "the service does not run; what needs it waits (Exchange: \"Routing Engine \
                     service could not start. Error 1083\")",
                    Some("mailroom repair".into()),
                ));
                reported.push(name.to_string());
            }
        }
    }
    (out, reported)
}

/// The running server's status: is it running, which services failed and why.
async fn status(ctx: &mut Context, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let s = match control::status(&opts.data).await {
        Ok(s) => s,
        Err(e) => {
            let evidence = vec![e.to_string()];
            let why = "nothing receives, delivers or routes mail on this server";
            let fix = Some(format!("mailroom --data {} serve", opts.data.display()));
            let summary = match e {
                ControlError::NotRunning(_) => "the server is not running",
                ControlError::Broken(_) => "the server does not answer its control socket",
            };
            out.push(
                ctx.f
                    .find(Code::ServerNotRunning, summary, evidence, why, fix),
            );
            return out;
        }
    };
    for svc in &s.services {
        let name = svc.name.clone();
        let degraded = match svc.state {
            State::Failed => false,
            State::Degraded => true,
            _ => continue,
        };
        if ctx.reported.contains(&name) {
            continue;
        }
        let state = if degraded { "degraded" } else { "failed" };
        let reason = svc.reason.clone().unwrap_or_default();
        let since = svc.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let evidence = vec![format!("{name}: {state} since {since}: {reason}")];
        if reason.contains("cannot listen") && reason.contains("in use") {
            let key = listen_key(&ctx.config, &name, &reason);
            let summary = if degraded {
                format!(
                    "{name} cannot listen on one of its addresses: it is taken (the others serve)"
                )
            } else {
                format!("{name} cannot listen: its address is taken")
            };
            out.push(ctx.f.find(
                Code::PortInUse,
                summary,
                evidence,
                "nothing can connect to this service; the supervisor tries again every \
                 supervisor.restart_interval, so it starts once the address is free",
                Some(format!(
                    "stop the process holding the address, or move the listener: mailroom \
                     config set {key} '[\"ADDRESS:PORT\"]'"
                )),
            ));
        } else {
            out.push(ctx.f.find(
                Code::ServiceFailed,
                format!("the {name} service failed"),
                evidence,
                "what needs it waits until it runs",
                None,
            ));
        }
        ctx.reported.push(name);
    }
    if !s.restart_needed.is_empty() {
        out.push(ctx.f.find(
            Code::ConfigRestartNeeded,
            "changes applied to the file wait for a restart",
            s.restart_needed.clone(),
            "the running server still uses the old values of these keys",
            Some("restart the server (SIGTERM, then mailroom serve)".into()),
        ));
    }
    ctx.status = Some(s);
    out
}

/// The certificate of the TLS listeners.
/// Users whose credential has no SCRAM-SHA-256 secret (set before mailroom knew SCRAM): a
/// client that always picks the strongest mechanism (msmtp's `auth on`) cannot log them in.
/// The key that holds the address a listener service could not bind (named in `reason` as
/// `cannot listen on ADDR`): its `listen` or its `tls_listen`.
fn listen_key(config: &Config, service: &str, reason: &str) -> String {
    let (section, tls): (&str, &[std::net::SocketAddr]) = match service {
        "pop3" => ("pop3", &config.pop3.tls_listen),
        "imap" => ("imap", &config.imap.tls_listen),
        "submission" => ("submission", &config.submission.tls_listen),
        _ => ("smtp", &[]),
    };
    // ("cannot listen on 127.0.0.1:2995: Address in use …": the address ends at ": ".)
    let failed: Option<std::net::SocketAddr> = reason
        .split("cannot listen on ")
        .nth(1)
        .and_then(|r| r.split(": ").next())
        .and_then(|a| a.parse().ok());
    match failed {
        Some(a) if tls.contains(&a) => format!("{section}.tls_listen"),
        _ => format!("{section}.listen"),
    }
}

async fn scram(ctx: &Context) -> Option<Finding> {
    let creds = match ctx.store.user_credentials().await {
        Ok(c) => c,
        Err(e) => return Some(cannot_check(&ctx.f, "the users' credentials", &e)),
    };
    let old: Vec<String> = creds
        .into_iter()
        .filter(|(_, c)| crate::directory::password::scram_secret(c).is_none())
        .map(|(a, _)| a)
        .collect();
    if old.is_empty() {
        return None;
    }
    let mut evidence: Vec<String> = old.iter().take(10).cloned().collect();
    if old.len() > 10 {
        evidence.push(format!("... and {} more", old.len() - 10));
    }
    Some(ctx.f.find(
        Code::UsersWithoutScram,
        format!(
            "{} user(s) have a password set before SCRAM-SHA-256: it fails for them until they \
             log in once with PLAIN or LOGIN",
            old.len()
        ),
        evidence,
        "mail programs that always choose the strongest mechanism offered (msmtp with `auth on`, \
         mutt with Cyrus SASL) are refused for these users on submission and POP3",
        Some(
            "have each log in once with PLAIN (msmtp: `auth plain`), or set the password again: \
             mailroom user passwd ADDRESS"
                .into(),
        ),
    ))
}

fn tls(ctx: &Context) -> Option<Finding> {
    let e = ctx.tls_error.as_ref()?;
    let t = &ctx.config.tls;
    let missing = matches!(e, crate::tls::TlsError::Read { .. });
    Some(ctx.f.find(
        Code::TlsUnavailable,
        "TLS cannot be used: the certificate does not load",
        vec![
            e.to_string(),
            format!(
                "tls.certificate = {:?}",
                t.certificate.display().to_string()
            ),
            format!(
                "tls.private_key = {:?}",
                t.private_key.display().to_string()
            ),
        ],
        "STARTTLS and STLS are not offered, nobody can log in on the submission service (AUTH \
         needs TLS), passwords cannot be sent safely, and the implicit-TLS listeners refuse \
         every connection",
        Some(if missing {
            "mailroom repair  # makes a self-signed certificate where none exists; or put your \
             own PEM files there"
                .into()
        } else {
            "put a matching certificate chain and private key (PEM) in those files".into()
        }),
    ))
}

/// What is wrong with the spool directory, if anything. Asked of the kernel (access(2)), not
/// by writing a file: doctor writes nothing (a read-only file system answers EROFS).
fn spool_state(spool: &std::path::Path) -> Option<&'static str> {
    use rustix::fs::{access, Access};
    if !spool.is_dir() {
        return Some("does not exist");
    }
    access(spool, Access::WRITE_OK | Access::EXEC_OK)
        .is_err()
        .then_some("exists but cannot be written")
}

/// Each address of `metrics.listen` answers `/metrics` (with the token), while the server runs.
async fn metrics(ctx: &Context) -> Vec<Finding> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut out = Vec::new();
    if ctx.status.is_none() {
        return out;
    }
    for addr in &ctx.config.metrics.listen {
        let mut to = *addr;
        if to.ip().is_unspecified() {
            to.set_ip(match to {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let auth = ctx
            .config
            .metrics
            .token
            .as_deref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let probe = async {
            let mut c = tokio::net::TcpStream::connect(to).await?;
            c.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\n{auth}\r\n").as_bytes())
                .await?;
            let mut head = [0u8; 12];
            c.read_exact(&mut head).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&head).into_owned())
        };
        let seen = match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
            Ok(Ok(h)) if h.starts_with("HTTP/1.1 200") => continue,
            Ok(Ok(h)) => format!("{addr}: answered {h:?}"),
            Ok(Err(e)) => format!("{addr}: {e}"),
            Err(_) => format!("{addr}: no answer in 5 s"),
        };
        out.push(ctx.f.find(
            Code::MetricsUnreachable,
            format!("/metrics does not answer on {addr}"),
            vec![seen],
            "Prometheus sees no metrics from this server, and its alerts (queue, links, \
             services) stay silent",
            Some("free the port and restart the server".into()),
        ));
    }
    out
}

/// What local programs need: a maildrop they can write into, and someone who reads root's mail.
async fn local_programs(ctx: &Context, opts: &Options) -> Vec<Finding> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let drop = opts.data.join(crate::receive::maildrop::DIR);
    let modes =
        std::fs::metadata(&drop).and_then(|d| std::fs::metadata(&opts.data).map(|data| (d, data)));
    let wrong = match &modes {
        Err(e) => Some(format!("{}: {e}", drop.display())),
        Ok((d, _)) if !d.is_dir() => Some(format!("{} is not a directory", drop.display())),
        Ok((d, _)) if d.permissions().mode() & 0o7777 != 0o1733 => Some(format!(
            "{} has mode {:o}, not 1733",
            drop.display(),
            d.permissions().mode() & 0o7777
        )),
        Ok((_, data)) if data.permissions().mode() & 0o011 != 0o011 => Some(format!(
            "{} has mode {:o}: other users cannot reach the maildrop in it",
            opts.data.display(),
            data.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
    };
    if let Some(why) = wrong {
        out.push(ctx.f.find(
            Code::MaildropUnusable,
            "local programs cannot leave mail with sendmail",
            vec![why],
            "cron, smartd and every program that mails through sendmail fail (exit 69 or 77), \
             and their mail is lost to them",
            Some("mailroom repair".into()),
        ));
    }
    let quarantine = opts.data.join(crate::receive::maildrop::QUARANTINE);
    match std::fs::read_dir(&quarantine) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => out.push(cannot_check(&ctx.f, "the maildrop's quarantine", &e)),
        Ok(entries) => {
            let names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect();
            if !names.is_empty() {
                out.push(ctx.f.find(
                    Code::MaildropQuarantined,
                    format!("{} file(s) from local programs were not sent", names.len()),
                    names.into_iter().take(10).collect(),
                    "those messages went nowhere; the log says why each was not taken",
                    None,
                ));
            }
        }
    }
    let root = format!("root@{}", ctx.config.origin());
    match crate::directory::resolve(ctx.store.as_ref(), &ctx.config, &root).await {
        Err(e) => out.push(cannot_check(&ctx.f, &format!("where {root} goes"), &e)),
        Ok(crate::model::Resolution::Targets { targets, .. })
            if targets
                .iter()
                .any(|t| !matches!(t.route, crate::model::Route::Unresolved)) => {}
        Ok(r) => out.push(ctx.f.find(
            Code::RootUnrouted,
            format!("mail to {root} reaches nobody"),
            vec![format!("{root}: {r:?}")],
            "what cron, smartd and other local programs send to root bounces",
            Some(format!(
                "mailroom alias add {root} postmaster@{}",
                ctx.config.primary_domain()
            )),
        )),
    }
    out
}

/// The data directories, and free space for the spool.
fn directories(ctx: &Context, opts: &Options, spool_state: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    let spool = opts.data.join(crate::store::spool::DIR_NAME);
    if let Some(seen) = spool_state {
        out.push(ctx.f.find(
            Code::DataDirMissing,
            format!("the spool directory {} {seen}", spool.display()),
            vec![format!("{} {seen}", spool.display())],
            "messages larger than smtp.spool_threshold are written there as they arrive: \
             they are refused with a temporary error until it is back",
            Some("mailroom repair".into()),
        ));
    }
    match rustix::fs::statvfs(&opts.data) {
        Err(e) => out.push(cannot_check(
            &ctx.f,
            "the free space of the data directory",
            &e,
        )),
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let need = ctx.config.smtp.max_message_size.saturating_mul(10);
            if free < need {
                out.push(ctx.f.find(
                    Code::DiskLow,
                    "little free space for the spool and the store",
                    vec![format!(
                        "{free} octets free in {}; 10 × smtp.max_message_size is {need}",
                        opts.data.display()
                    )],
                    "a full disk makes the server refuse mail with 452 until space returns",
                    None,
                ));
            }
        }
    }
    out
}
