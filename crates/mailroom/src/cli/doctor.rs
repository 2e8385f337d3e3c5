//! `doctor` and `repair`.

use std::path::Path;

use anyhow::Context as _;

use super::DoctorArgs;
use crate::doctor::{self, Options, Severity};

/// `mailroom doctor`: prints the findings; fails (exit status 1) unless healthy.
pub async fn doctor(data: &Path, a: &DoctorArgs) -> anyhow::Result<()> {
    let mut opts = Options::new(data);
    opts.servers = a.servers.clone();
    opts.org = a.org;
    opts.mailflow = a.mailflow;
    opts.mailflow_timeout = humantime::parse_duration(&a.mailflow_timeout)
        .with_context(|| format!("--mailflow-timeout {:?}", a.mailflow_timeout))?;
    opts.queue_age = humantime::parse_duration(&a.queue_age)
        .with_context(|| format!("--queue-age {:?}", a.queue_age))?;
    let report = doctor::run(&opts).await;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.findings.is_empty() {
        outln!("healthy: nothing found");
    } else {
        for f in &report.findings {
            let sev = match f.severity {
                Severity::Info => "info",
                Severity::Warning => "WARNING",
                Severity::Error => "ERROR",
            };
            outln!("{sev} [{}] {}: {}", f.code, f.server, f.summary);
            for e in &f.evidence {
                outln!("    seen: {e}");
            }
            outln!("    why:  {}", f.why);
            if let Some(fix) = &f.fix {
                outln!("    fix:  {fix}");
            }
        }
        outln!(
            "{}",
            if report.healthy {
                "healthy (only information above)"
            } else {
                "NOT healthy"
            }
        );
    }
    if !report.healthy {
        std::process::exit(1);
    }
    Ok(())
}

/// `mailroom repair`.
pub async fn repair(
    data: &Path,
    dry_run: bool,
    reset: &[String],
    json: bool,
) -> anyhow::Result<()> {
    let out = crate::repair::run(data, dry_run, reset).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "mailboxes before: {} ({} messages); queue before: {} ({} messages)",
        out.before.mailboxes,
        out.before.mailbox_messages,
        out.before.queue,
        out.before.queued_messages
    );
    if out.changed.is_empty() {
        outln!("nothing to repair");
    }
    for c in &out.changed {
        outln!("{}{c}", if dry_run { "would: " } else { "repaired: " });
    }
    for n in &out.not_repaired {
        outln!("not repaired: {n}");
    }
    if let Some(v) = out.version {
        outln!("recorded configuration version {v}");
    }
    use crate::admin::config::ReloadOutcome;
    match &out.reload {
        None => {}
        Some(ReloadOutcome::NotRunning { .. }) => {
            outln!("the server is not running: the repair applies when it starts")
        }
        Some(ReloadOutcome::Answered(r)) if r.ok => outln!("applied by the running server"),
        Some(ReloadOutcome::Answered(r)) => outln!(
            "the running server did not apply it: {}",
            r.error.as_deref().unwrap_or("?")
        ),
        Some(ReloadOutcome::Unreachable { error }) => {
            outln!("the running server did not apply it: {error}")
        }
    }
    outln!(
        "mailboxes after:  {} ({} messages); queue after:  {} ({} messages)",
        out.after.mailboxes,
        out.after.mailbox_messages,
        out.after.queue,
        out.after.queued_messages
    );
    if out.server_added + out.server_removed > 0 {
        outln!(
            "meanwhile the running server delivered {} and removed {} message(s), as it does",
            out.server_added,
            out.server_removed
        );
    }
    outln!("mail untouched: no message present before and after changed by one byte");
    Ok(())
}
