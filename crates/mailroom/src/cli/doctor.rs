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
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.findings.is_empty() {
        println!("healthy: nothing found");
    } else {
        for f in &report.findings {
            let sev = match f.severity {
                Severity::Info => "info",
                Severity::Warning => "WARNING",
                Severity::Error => "ERROR",
            };
            println!("{sev} [{}] {}: {}", f.code, f.server, f.summary);
            for e in &f.evidence {
                println!("    seen: {e}");
            }
            println!("    why:  {}", f.why);
            if let Some(fix) = &f.fix {
                println!("    fix:  {fix}");
            }
        }
        println!(
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
pub async fn repair(data: &Path, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let out = crate::repair::run(data, dry_run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "mailboxes before: {} ({} messages); queue before: {} ({} messages)",
        out.before.mailboxes,
        out.before.mailbox_messages,
        out.before.queue,
        out.before.queued_messages
    );
    if out.changed.is_empty() {
        println!("nothing to repair");
    }
    for c in &out.changed {
        println!("{}{c}", if dry_run { "would: " } else { "repaired: " });
    }
    for n in &out.not_repaired {
        println!("not repaired: {n}");
    }
    if let Some(v) = out.version {
        println!("recorded configuration version {v}");
    }
    if let Some(r) = &out.reload {
        if r["running"] == false {
            println!("the server is not running: the repair applies when it starts");
        } else if r["ok"] == true {
            println!("applied by the running server");
        } else {
            println!("the running server did not apply it: {r}");
        }
    }
    println!(
        "mailboxes after:  {} ({} messages); queue after:  {} ({} messages)",
        out.after.mailboxes, out.after.mailbox_messages, out.after.queue, out.after.queued_messages
    );
    if out.server_added + out.server_removed > 0 {
        println!(
            "meanwhile the running server delivered {} and removed {} message(s), as it does",
            out.server_added, out.server_removed
        );
    }
    println!("mail untouched: no message present before and after changed by one byte");
    Ok(())
}
