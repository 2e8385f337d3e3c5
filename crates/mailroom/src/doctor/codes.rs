//! Every finding doctor makes: a stable code, its usual severity, what it means and the usual
//! fix. The table in docs/doctor.md is generated from [`Code::ALL`]: a test fails when they
//! differ, and `MAILROOM_BLESS=1 cargo test -p mailroom doctor::codes` writes it.

use serde::Serialize;

use super::Severity;

macro_rules! codes {
    ($($variant:ident = ($code:literal, $severity:ident, $meaning:literal, $fix:literal),)*) => {
        /// A finding's code: stable, scripts match on it (the JSON's `code`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $meaning]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in the order of the documentation's table.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as scripts see it (`ehlo-missing-verbs`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// Its usual severity (a finding may be made milder where the case is).
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// What it means.
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning,)* }
            }

            /// The usual fix, as the documentation gives it (Markdown).
            pub fn fix(self) -> &'static str {
                match self { $(Code::$variant => $fix,)* }
            }
        }
    };
}

codes! {
    ServerNotRunning = (
        "server-not-running",
        Error,
        "nothing answers on the data directory's control socket",
        "`mailroom serve`"
    ),
    CheckFailed = (
        "check-failed",
        Error,
        "a check could not run (the store or a file could not be read): what it would have found is unknown",
        "per the evidence; `mailroom doctor` again once it can run"
    ),
    ConfigInvalid = (
        "config-invalid",
        Error,
        "the configuration file does not load",
        "`mailroom repair`"
    ),
    ConfigChangedOutside = (
        "config-changed-outside",
        Warning,
        "the file differs from the version in effect",
        "`mailroom config reload` (accept) or `mailroom config rollback N`"
    ),
    ConfigRestartNeeded = (
        "config-restart-needed",
        Warning,
        "a change applied to the file waits for a restart",
        "restart the server"
    ),
    ConfigVersionCorrupt = (
        "config-version-corrupt",
        Error,
        "a stored version does not match its checksum",
        "—"
    ),
    ConfigNoBackup = (
        "config-no-backup",
        Info,
        "no backup of the configuration was ever made",
        "`mailroom config backup`"
    ),
    ConfigBackupBad = (
        "config-backup-bad",
        Warning,
        "a backup made is gone, changed or does not verify",
        "`mailroom config backup`"
    ),
    ConfigLegacyKey = (
        "config-legacy-key",
        Warning,
        "a key of an older schema, with no effect",
        "`mailroom config unset KEY` or `mailroom repair`"
    ),
    ConfigRetiredService = (
        "config-retired-service",
        Warning,
        "a component of an older design is still defined",
        "`mailroom repair`"
    ),
    ConfigUnknownService = (
        "config-unknown-service",
        Warning,
        "a service definition names no mailroom service",
        "`mailroom config unset services.NAME`"
    ),
    ConfigListenerConflict = (
        "config-listener-conflict",
        Error,
        "two listeners on one address",
        "`mailroom config set pop3.listen '[\"ADDR\"]'`"
    ),
    ExtensionUnregistered = (
        "extension-unregistered",
        Error,
        "an extension is missing from the registrations",
        "`mailroom repair`"
    ),
    ExtensionDisabled = (
        "extension-disabled",
        Info,
        "extensions an administrator turned off (`smtp.disabled_extensions`, a recorded choice): kept by repair",
        "`mailroom config set smtp.disabled_extensions '[]'` or `mailroom repair --reset smtp.disabled_extensions`"
    ),
    EhloMissingVerbs = (
        "ehlo-missing-verbs",
        Error,
        "a listener does not advertise what a healthy server does",
        "`mailroom repair`"
    ),
    EhloUnexpectedVerbs = (
        "ehlo-unexpected-verbs",
        Warning,
        "a listener advertises what mailroom does not register",
        "find what answers on the port"
    ),
    EhloUnreachable = (
        "ehlo-unreachable",
        Error,
        "a configured listener cannot be reached",
        "see the smtp-receive finding"
    ),
    ServiceFailed = (
        "service-failed",
        Error,
        "a service could not start, with the reason",
        "per the reason"
    ),
    ServiceDefinition = (
        "service-definition",
        Error,
        "a service's definition is missing or names the wrong component",
        "`mailroom repair`"
    ),
    ServiceDisabled = (
        "service-disabled",
        Error,
        "a service mail needs is disabled",
        "`mailroom config set services.NAME.enabled true` or `mailroom repair`"
    ),
    PortInUse = (
        "port-in-use",
        Error,
        "a listener's address is held by another process",
        "stop the holder, or `mailroom config set smtp.listen …`"
    ),
    OrgServerDown = (
        "org-server-down",
        Error,
        "a server is DOWN in the link-state table",
        "`mailroom doctor --server NAME`"
    ),
    OrgConnectorDown = (
        "org-connector-down",
        Error,
        "a connector is DOWN",
        "`mailroom routing show`"
    ),
    OrgSelfMissing = (
        "org-self-missing",
        Error,
        "this server has no entry in the organization's directory",
        "`mailroom repair`"
    ),
    OrgSelfDown = (
        "org-self-down",
        Error,
        "this server is published DOWN: the others route around it",
        "`mailroom doctor --org`"
    ),
    OrgPeerUnreachable = (
        "org-peer-unreachable",
        Error,
        "another server of the organization cannot be reached",
        "`mailroom doctor` on that server"
    ),
    OrgPeerAuth = (
        "org-peer-auth",
        Error,
        "organization authentication with another server fails",
        "check the servers joined the same organization"
    ),
    OrgPeerVerbsMissing = (
        "org-peer-verbs-missing",
        Error,
        "another server does not offer the organization's verbs",
        "`mailroom repair` on that server"
    ),
    OrgDigestDiffers = (
        "org-digest-differs",
        Warning,
        "another server's link state differs from this one's",
        "wait seconds; if it lasts, `mailroom doctor --org` on both"
    ),
    OrgUserHomeless = (
        "org-user-homeless",
        Error,
        "users are homed on a server that is not in the organization",
        "`mailroom user add ADDRESS --home SERVER`"
    ),
    QueueOld = (
        "queue-old",
        Warning,
        "a queue's oldest message is older than the threshold",
        "`mailroom queue show QUEUE`"
    ),
    QueueRetry = (
        "queue-retry",
        Warning,
        "a queue waits for a retry after errors",
        "`mailroom queue retry QUEUE` once the cause is fixed"
    ),
    QueueUnreachable = (
        "queue-unreachable",
        Error,
        "mail waits for a destination with no route",
        "`mailroom routing show`, `mailroom queue show unreachable`"
    ),
    QueueFrozen = (
        "queue-frozen",
        Info,
        "messages are frozen by an administrator",
        "`mailroom queue thaw QUEUE`"
    ),
    QueueDisabled = (
        "queue-disabled",
        Warning,
        "an administrator disabled outbound mail from a queue",
        "`mailroom queue enable QUEUE`"
    ),
    QueueQuarantined = (
        "queue-quarantined",
        Warning,
        "unreadable queue records were quarantined",
        "`mailroom queue show --quarantined`"
    ),
    NdrRecent = (
        "ndr-recent",
        Warning,
        "recipients failed recently, grouped by cause",
        "`mailroom track --recipient ADDRESS --org`"
    ),
    StoreIntegrity = (
        "store-integrity",
        Error,
        "the store's consistency check failed",
        "restore the data directory from a backup"
    ),
    StoreUnreadable = (
        "store-unreadable",
        Error,
        "the store cannot be opened",
        "—"
    ),
    DataDirMissing = (
        "data-dir-missing",
        Error,
        "a directory of the data directory is missing or unwritable",
        "`mailroom repair`"
    ),
    OrgPeerNoTls = (
        "org-peer-no-tls",
        Warning,
        "the organization's channel to a peer runs without TLS (it offers no STARTTLS, or the handshake failed)",
        "on that server: `mailroom doctor` (`tls-unavailable`), `mailroom repair`"
    ),
    TlsUnavailable = (
        "tls-unavailable",
        Error,
        "the certificate of the TLS listeners does not load: no STARTTLS/STLS, no AUTH on submission, implicit-TLS listeners refuse connections",
        "`mailroom repair` (makes a self-signed one where none exists), or put a matching PEM pair in `tls.certificate`/`tls.private_key`"
    ),
    UsersWithoutScram = (
        "users-without-scram",
        Warning,
        "users whose password was set before SCRAM-SHA-256 (their credential has no SCRAM secret): clients that always pick SCRAM cannot log them in",
        "each logs in once with PLAIN or LOGIN (the secret is made then), or `mailroom user passwd ADDRESS`"
    ),
    MaildropUnusable = (
        "maildrop-unusable",
        Warning,
        "local programs cannot leave mail with `sendmail`: the maildrop is missing, or not open to local users (mode 1733, data directory o+x)",
        "`mailroom repair`"
    ),
    MaildropQuarantined = (
        "maildrop-quarantined",
        Warning,
        "files that pickup could not take from the maildrop (not a drop file, a link, too large, a forged sender) wait in `maildrop-quarantine`",
        "read the log for each file's reason; resend or remove them"
    ),
    AcmeFailed = (
        "acme-failed",
        Error,
        "the last attempt to get or renew the certificate from the ACME CA failed (`tls.acme`)",
        "per the evidence (the CA's answer); the server tries again every `tls.acme.check_interval`"
    ),
    MetricsUnreachable = (
        "metrics-unreachable",
        Warning,
        "`/metrics` does not answer on an address of `metrics.listen` (the port was taken at start, or the token does not match): Prometheus sees the server as down",
        "free the port and restart the server, or `mailroom config set metrics.listen …`"
    ),
    RootUnrouted = (
        "root-unrouted",
        Warning,
        "mail to `root` (cron, smartd, mdadm) reaches nobody: `root@` the origin domain is no mailbox or alias",
        "`mailroom alias add root@DOMAIN ADDRESS`"
    ),
    DiskLow = (
        "disk-low",
        Warning,
        "little free space for the spool",
        "free space"
    ),
    DnsHostname = (
        "dns-hostname",
        Warning,
        "this server's name does not resolve (with the resolver delivery uses)",
        "publish an A record, or change `server.hostname`"
    ),
    DnsMx = (
        "dns-mx",
        Warning,
        "a domain's MX does not point at the organization (with the resolver delivery uses)",
        "publish MX records naming the server"
    ),
    DnsSkipped = (
        "dns-skipped",
        Info,
        "names not looked up: special-use names (RFC 6761: `.test`, `localhost`…) with the system's resolver, which the public DNS never answers",
        "—; for a server on the Internet, set `server.hostname` and the domains to public names"
    ),
    MailflowOk = (
        "mailflow-ok",
        Info,
        "a probe went to another server and its answer came back: the latency",
        "—"
    ),
    MailflowFailed = (
        "mailflow-failed",
        Error,
        "a probe did not come back: the hop where it stopped",
        "`mailroom track --org --message-id ID`"
    ),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The documentation's table of codes, as [`Code::ALL`] makes it.
pub fn table() -> String {
    let mut t = String::from("| Code | Severity | Meaning | Fix |\n|---|---|---|---|\n");
    for c in Code::ALL {
        let severity = match c.severity() {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        t.push_str(&format!(
            "| `{}` | {severity} | {} | {} |\n",
            c.as_str(),
            c.meaning(),
            c.fix()
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/doctor.md's table of codes is the one [`table`] makes, between its markers; with
    /// `MAILROOM_BLESS=1` the test writes it there instead.
    #[test]
    fn the_documented_table_is_generated_from_the_codes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/doctor.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = doc
            .split_once("<!-- codes: begin -->\n")
            .expect("the begin marker");
        let (documented, tail) = rest
            .split_once("<!-- codes: end -->")
            .expect("the end marker");
        let want = table();
        if std::env::var_os("MAILROOM_BLESS").is_some() {
            let new = format!("{head}<!-- codes: begin -->\n{want}<!-- codes: end -->{tail}");
            std::fs::write(&path, new).unwrap();
            return;
        }
        assert_eq!(
            documented, want,
            "docs/doctor.md's table differs from doctor::codes (MAILROOM_BLESS=1 writes it)"
        );
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
    }
}
