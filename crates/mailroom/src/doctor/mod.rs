//! `mailroom doctor`: finds exactly why mail is not flowing.
//!
//! It does what the seed's administrator did by hand, and the rest of what a mail engineer
//! checks, live: an EHLO probe of every listener compared with the registrations a healthy
//! server has ([`ehlo`]); the services and their failures, the config store, legacy and
//! conflicting settings, the data directories and the store ([`local`]); the organization's
//! link state and every other server ([`org`]); the queues and recent non-delivery reports
//! ([`queues`]). Each problem is a [`Finding`] with a stable code ([`CODES`], documented in
//! docs/doctor.md), the evidence seen, why it matters and the exact command that fixes it.
//!
//! Doctor only reads: it never changes the configuration, the store or the queue.

pub mod dns;
pub mod ehlo;
pub mod local;
pub mod mailflow;
pub mod org;
pub mod queues;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

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
    /// Stable code (see [`CODES`]).
    pub code: &'static str,
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

/// Every code doctor emits: the code, its usual severity, and what it means. The docs'
/// table (docs/doctor.md) is checked against this list by a test.
pub const CODES: &[(&str, Severity, &str)] = &[
    (
        "server-not-running",
        Severity::Error,
        "nothing answers on the data directory's control socket",
    ),
    (
        "config-invalid",
        Severity::Error,
        "the configuration file does not load",
    ),
    (
        "config-changed-outside",
        Severity::Warning,
        "the file differs from the version in effect",
    ),
    (
        "config-restart-needed",
        Severity::Warning,
        "a change applied to the file waits for a restart",
    ),
    (
        "config-version-corrupt",
        Severity::Error,
        "a stored version does not match its checksum",
    ),
    (
        "config-no-backup",
        Severity::Info,
        "no backup of the configuration was ever made",
    ),
    (
        "config-backup-bad",
        Severity::Warning,
        "a backup made is gone, changed or does not verify",
    ),
    (
        "config-legacy-key",
        Severity::Warning,
        "a key of an older schema, with no effect",
    ),
    (
        "config-retired-service",
        Severity::Warning,
        "a component of an older design is still defined",
    ),
    (
        "config-unknown-service",
        Severity::Warning,
        "a service definition names no mailroom service",
    ),
    (
        "config-listener-conflict",
        Severity::Error,
        "two listeners on one address",
    ),
    (
        "extension-unregistered",
        Severity::Error,
        "an extension is missing from the registrations",
    ),
    (
        "ehlo-missing-verbs",
        Severity::Error,
        "a listener does not advertise what a healthy server does",
    ),
    (
        "ehlo-unexpected-verbs",
        Severity::Warning,
        "a listener advertises what mailroom does not register",
    ),
    (
        "ehlo-unreachable",
        Severity::Error,
        "a configured listener cannot be reached",
    ),
    (
        "service-failed",
        Severity::Error,
        "a service could not start, with the reason",
    ),
    (
        "service-definition",
        Severity::Error,
        "a service's definition is missing or names the wrong component",
    ),
    (
        "service-disabled",
        Severity::Error,
        "a service mail needs is disabled",
    ),
    (
        "port-in-use",
        Severity::Error,
        "a listener's address is held by another process",
    ),
    (
        "org-server-down",
        Severity::Error,
        "a server is DOWN in the link-state table",
    ),
    ("org-connector-down", Severity::Error, "a connector is DOWN"),
    (
        "org-self-missing",
        Severity::Error,
        "this server has no entry in the organization's directory",
    ),
    (
        "org-self-down",
        Severity::Error,
        "this server is published DOWN: the others route around it",
    ),
    (
        "org-peer-unreachable",
        Severity::Error,
        "another server of the organization cannot be reached",
    ),
    (
        "org-peer-auth",
        Severity::Error,
        "organization authentication with another server fails",
    ),
    (
        "org-peer-verbs-missing",
        Severity::Error,
        "another server does not offer the organization's verbs",
    ),
    (
        "org-digest-differs",
        Severity::Warning,
        "another server's link state differs from this one's",
    ),
    (
        "org-user-homeless",
        Severity::Error,
        "users are homed on a server that is not in the organization",
    ),
    (
        "queue-old",
        Severity::Warning,
        "a queue's oldest message is older than the threshold",
    ),
    (
        "queue-retry",
        Severity::Warning,
        "a queue waits for a retry after errors",
    ),
    (
        "queue-unreachable",
        Severity::Error,
        "mail waits for a destination with no route",
    ),
    (
        "queue-frozen",
        Severity::Info,
        "messages are frozen by an administrator",
    ),
    (
        "queue-disabled",
        Severity::Warning,
        "an administrator disabled outbound mail from a queue",
    ),
    (
        "queue-quarantined",
        Severity::Warning,
        "unreadable queue records were quarantined",
    ),
    (
        "ndr-recent",
        Severity::Warning,
        "recipients failed recently, grouped by cause",
    ),
    (
        "store-integrity",
        Severity::Error,
        "the store's consistency check failed",
    ),
    (
        "store-unreadable",
        Severity::Error,
        "the store cannot be opened",
    ),
    (
        "data-dir-missing",
        Severity::Error,
        "a directory of the data directory is missing or unwritable",
    ),
    (
        "org-peer-no-tls",
        Severity::Warning,
        "the organization's channel to a peer runs without TLS",
    ),
    (
        "tls-unavailable",
        Severity::Error,
        "the certificate of the TLS listeners does not load",
    ),
    (
        "users-without-scram",
        Severity::Warning,
        "users whose password predates SCRAM-SHA-256 cannot log in with it yet",
    ),
    (
        "disk-low",
        Severity::Warning,
        "little free space for the spool",
    ),
    (
        "dns-hostname",
        Severity::Warning,
        "this server's name does not resolve (DNS configured)",
    ),
    (
        "dns-mx",
        Severity::Warning,
        "a domain's MX does not point at the organization (DNS configured)",
    ),
    (
        "mailflow-ok",
        Severity::Info,
        "a probe went to another server and its answer came back: the latency",
    ),
    (
        "mailflow-failed",
        Severity::Error,
        "a probe did not come back: the hop where it stopped",
    ),
];

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
        code: &'static str,
        summary: impl Into<String>,
        evidence: Vec<String>,
        why: &str,
        fix: Option<String>,
    ) -> Finding {
        let severity = CODES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, s, _)| *s)
            .unwrap_or(Severity::Error);
        Finding {
            code,
            severity,
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

    /// Every code has a row in the documentation's table, and no two codes are the same.
    #[test]
    fn every_code_is_documented_once() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/doctor.md"),
        )
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (code, _, _) in CODES {
            assert!(seen.insert(code), "{code} twice");
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "{code} is not in docs/doctor.md"
            );
        }
    }

    #[test]
    fn health_is_nothing_above_info() {
        let f = Finder::new("mx");
        let info = f.find("config-no-backup", "x", vec![], "", None);
        assert!(Report::new(vec![info.clone()]).healthy);
        let bad = f.find("queue-old", "x", vec![], "", None);
        let r = Report::new(vec![info, bad]);
        assert!(!r.healthy);
        assert_eq!(r.findings[0].code, "queue-old", "worst first");
    }
}
