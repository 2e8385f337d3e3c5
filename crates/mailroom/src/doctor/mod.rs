//! `mailroom doctor`: finds exactly why mail is not flowing.
//!
//! It does what the seed's administrator did by hand, and the rest of what a mail engineer
//! checks, live: an EHLO probe of every listener compared with the registrations a healthy
//! server has ([`ehlo`]); the services and their failures, the config store, legacy and
//! conflicting settings, the data directories and the store ([`local`]); the organization's
//! link state and every other server ([`org`]); the queues and recent non-delivery reports
//! ([`queues`]). Each problem is a [`Finding`] with a stable code ([`Code`], documented in
//! docs/doctor.md), the evidence seen, why it matters and the exact command that fixes it.
//!
//! Doctor only reads: it never changes the configuration, the store or the queue.

pub mod codes;
pub mod dns;
pub mod ehlo;
pub mod local;
pub mod mailflow;
pub mod org;
pub mod queues;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use codes::Code;

/// How bad a finding is. Healthy means nothing above [`Severity::Info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; mail flows.
    Info,
    /// Mail flows, but something is wrong or about to be.
    Warning,
    /// Mail does not flow, or is at risk.
    Error,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// How bad.
    pub severity: Severity,
    /// The server it is about.
    pub server: String,
    /// One line: what is wrong.
    pub summary: String,
    /// What was seen (replies, states, values), one item per fact.
    pub evidence: Vec<String>,
    /// Why it matters for the flow of mail.
    pub why: String,
    /// The exact command that fixes it, where one exists.
    pub fix: Option<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no finding is above `info`.
    pub healthy: bool,
    /// What was found, worst first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// A report of these findings, worst first.
    pub fn new(mut findings: Vec<Finding>) -> Report {
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.server.cmp(&b.server))
        });
        Report {
            healthy: findings.iter().all(|f| f.severity <= Severity::Info),
            findings,
        }
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory of this server.
    pub data: PathBuf,
    /// Other servers of the organization to probe (by name).
    pub servers: Vec<String>,
    /// Probe every server of the organization.
    pub org: bool,
    /// Send probe messages through the organization (`--mailflow`).
    pub mailflow: bool,
    /// How long a probe's answer is waited for.
    pub mailflow_timeout: Duration,
    /// A queue whose oldest message is older than this is reported.
    pub queue_age: Duration,
    /// Non-delivery reports of this long ago are summarized.
    pub ndr_window: Duration,
}

impl Options {
    /// The defaults for a data directory.
    pub fn new(data: &Path) -> Options {
        Options {
            data: data.to_path_buf(),
            servers: Vec::new(),
            org: false,
            mailflow: false,
            mailflow_timeout: Duration::from_secs(30),
            queue_age: Duration::from_secs(3600),
            ndr_window: Duration::from_secs(86_400),
        }
    }
}

/// Builds findings with the server's name filled in.
#[derive(Debug, Clone)]
pub struct Finder {
    server: String,
}

impl Finder {
    /// For `server`.
    pub fn new(server: &str) -> Finder {
        Finder {
            server: server.to_string(),
        }
    }

    /// A finding with the code's usual severity.
    pub fn find(
        &self,
        code: Code,
        summary: impl Into<String>,
        evidence: Vec<String>,
        why: &str,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            server: self.server.clone(),
            summary: summary.into(),
            evidence,
            why: why.to_string(),
            fix,
        }
    }
}

/// Runs every check asked for.
pub async fn run(opts: &Options) -> Report {
    let mut out = Vec::new();
    let l = local::check(opts).await;
    out.extend(l.findings);
    if let Some(ctx) = &l.context {
        out.extend(ehlo::check_local(ctx).await);
        out.extend(queues::check(ctx, opts).await);
        out.extend(org::check(ctx, opts).await);
        out.extend(dns::check(ctx).await);
        if opts.mailflow {
            out.extend(mailflow::check(ctx, opts).await);
        }
    }
    Report::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_nothing_above_info() {
        let f = Finder::new("mx");
        let info = f.find(Code::ConfigNoBackup, "x", vec![], "", None);
        assert!(Report::new(vec![info.clone()]).healthy);
        let bad = f.find(Code::QueueOld, "x", vec![], "", None);
        let r = Report::new(vec![info, bad]);
        assert!(!r.healthy);
        assert_eq!(r.findings[0].code, "queue-old", "worst first");
    }
}
