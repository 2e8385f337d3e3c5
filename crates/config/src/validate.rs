//! Checks of the values that the types alone cannot make: names, lists that must not be empty,
//! and every count and duration within a range. The ranges have upper bounds as well as lower
//! ones, so that no value, however large, can overflow the arithmetic done with it later (a
//! retry time added to a date, a timeout given to the runtime): a value out of range is refused
//! here, at load, with the key and the range, never met as a panic later.

use std::time::Duration;

use mailroom_proto::smtp::Domain;

use super::Config;

/// A key and what is wrong with its value.
pub(super) type Invalid = (&'static str, String);

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// `value` must lie in `lo..=hi`.
fn count(key: &'static str, value: u64, lo: u64, hi: u64) -> Result<(), Invalid> {
    count_why(key, value, lo, hi, "")
}

/// `value` must lie in `lo..=hi`; `why` says where the lower bound comes from.
fn count_why(key: &'static str, value: u64, lo: u64, hi: u64, why: &str) -> Result<(), Invalid> {
    if value < lo {
        return Err((key, format!("must be at least {lo}{why} (it is {value})")));
    }
    if value > hi {
        return Err((key, format!("must be at most {hi} (it is {value})")));
    }
    Ok(())
}

/// `value` must lie in `lo..=hi`.
fn duration(key: &'static str, value: Duration, lo: Duration, hi: Duration) -> Result<(), Invalid> {
    let f = |d: Duration| humantime::format_duration(d).to_string();
    if value < lo {
        if value.is_zero() {
            return Err((key, "must be greater than zero".into()));
        }
        return Err((
            key,
            format!("must be at least {} (it is {})", f(lo), f(value)),
        ));
    }
    if value > hi {
        return Err((
            key,
            format!("must be at most {} (it is {})", f(hi), f(value)),
        ));
    }
    Ok(())
}

impl Config {
    /// Checks values that the types alone cannot.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        self.validate_server()?;
        self.validate_smtp()?;
        self.validate_extensions()?;
        self.validate_pop3()?;
        self.validate_imap()?;
        self.validate_submission()?;
        self.validate_queue()?;
        self.validate_outbound()?;
        self.validate_org()
    }

    fn validate_org(&self) -> Result<(), Invalid> {
        let o = &self.org;
        count("org.glitch_retries", u64::from(o.glitch_retries), 1, 1000)?;
        for (key, d) in [
            ("org.probe_interval", o.probe_interval),
            ("org.glitch_retry", o.glitch_retry),
            ("org.connect_timeout", o.connect_timeout),
            ("org.command_timeout", o.command_timeout),
            ("org.shadow_timeout", o.shadow_timeout),
        ] {
            duration(key, d, Duration::from_millis(10), DAY)?;
        }
        duration("org.damping", o.damping, Duration::ZERO, DAY)
    }

    fn validate_server(&self) -> Result<(), Invalid> {
        if self.server.hostname.is_empty() || Domain::parse(&self.server.hostname).is_err() {
            return Err((
                "server.hostname",
                format!("{:?} is not a valid host name", self.server.hostname),
            ));
        }
        if self.server.domains.is_empty() {
            return Err((
                "server.domains",
                "at least one local domain is required".into(),
            ));
        }
        for d in &self.server.domains {
            if Domain::parse(d).is_err() || d.starts_with('[') {
                return Err(("server.domains", format!("{d:?} is not a valid domain")));
            }
        }
        if let Some(a) = &self.tls.acme {
            if a.challenge != "http-01" {
                return Err((
                    "tls.acme.challenge",
                    format!("{:?}: only \"http-01\" is supported", a.challenge),
                ));
            }
            if !a.directory.starts_with("https://") {
                return Err((
                    "tls.acme.directory",
                    format!("{:?} is not an https:// URL", a.directory),
                ));
            }
        }
        if let Some(o) = &self.server.origin {
            if Domain::parse(o).is_err() || o.starts_with('[') {
                return Err(("server.origin", format!("{o:?} is not a valid domain")));
            }
        }
        count(
            "server.max_password_checks",
            self.server.max_password_checks as u64,
            0,
            1024,
        )
    }

    fn validate_smtp(&self) -> Result<(), Invalid> {
        let s = &self.smtp;
        if s.listen.is_empty() {
            return Err(("smtp.listen", "at least one address is required".into()));
        }
        // RFC 5321 §4.5.3.1: 100 recipients, 512-octet commands, 1000-octet text lines at least.
        count_why(
            "smtp.max_recipients",
            s.max_recipients as u64,
            1,
            1_000_000,
            " (RFC 5321 asks for 100)",
        )?;
        count_why(
            "smtp.max_command_line",
            s.max_command_line as u64,
            512,
            1 << 20,
            " (RFC 5321 §4.5.3.1.4)",
        )?;
        count_why(
            "smtp.max_text_line",
            s.max_text_line as u64,
            1000,
            1 << 20,
            " (RFC 5321 §4.5.3.1.6)",
        )?;
        count_why(
            "smtp.max_message_size",
            s.max_message_size,
            1024,
            1 << 40,
            " octets",
        )?;
        count(
            "smtp.max_connections",
            s.max_connections as u64,
            1,
            1_000_000,
        )?;
        count(
            "smtp.max_connections_per_ip",
            s.max_connections_per_ip as u64,
            1,
            1_000_000,
        )?;
        count(
            "smtp.max_connections_per_network",
            s.max_connections_per_network as u64,
            1,
            1_000_000,
        )?;
        count("smtp.min_data_rate", s.min_data_rate, 1, 1 << 40)?;
        count("smtp.max_errors", u64::from(s.max_errors), 1, 1_000_000)?;
        count(
            "smtp.max_received_headers",
            s.max_received_headers as u64,
            1,
            1000,
        )?;
        count("smtp.max_expansion", s.max_expansion as u64, 1, 1_000_000)?;
        count(
            "smtp.max_expansion_depth",
            s.max_expansion_depth as u64,
            1,
            1000,
        )?;
        count(
            "smtp.spool_threshold",
            s.spool_threshold as u64,
            4096,
            16 << 20,
        )?;
        duration("smtp.command_timeout", s.command_timeout, SECOND, DAY)?;
        duration("smtp.data_timeout", s.data_timeout, SECOND, DAY)?;
        duration("smtp.write_timeout", s.write_timeout, SECOND, DAY)
    }

    fn validate_submission(&self) -> Result<(), Invalid> {
        let m = &self.submission;
        for (key, v, hi) in [
            (
                "submission.max_connections",
                m.max_connections as u64,
                1_000_000,
            ),
            (
                "submission.max_connections_per_ip",
                m.max_connections_per_ip as u64,
                1_000_000,
            ),
            (
                "submission.max_connections_per_network",
                m.max_connections_per_network as u64,
                1_000_000,
            ),
            (
                "submission.max_auth_failures",
                u64::from(m.max_auth_failures),
                1000,
            ),
            (
                "submission.max_auth_failures_per_ip",
                u64::from(m.max_auth_failures_per_ip),
                1_000_000,
            ),
            (
                "submission.max_auth_failures_per_account",
                u64::from(m.max_auth_failures_per_account),
                1_000_000,
            ),
        ] {
            count(key, v, 1, hi)?;
        }
        duration(
            "submission.auth_failure_delay",
            m.auth_failure_delay,
            Duration::ZERO,
            MINUTE,
        )?;
        duration(
            "submission.max_auth_failure_delay",
            m.max_auth_failure_delay,
            Duration::ZERO,
            10 * MINUTE,
        )?;
        duration("submission.auth_lockout", m.auth_lockout, SECOND, 30 * DAY)?;
        duration(
            "tls.handshake_timeout",
            self.tls.handshake_timeout,
            Duration::from_millis(100),
            HOUR,
        )?;
        for (key, p) in [
            ("tls.certificate", &self.tls.certificate),
            ("tls.private_key", &self.tls.private_key),
        ] {
            if p.as_os_str().is_empty() {
                return Err((key, "a file name is required".into()));
            }
        }
        Ok(())
    }

    fn validate_pop3(&self) -> Result<(), Invalid> {
        let p = &self.pop3;
        if p.listen.is_empty() {
            return Err(("pop3.listen", "at least one address is required".into()));
        }
        count(
            "pop3.max_connections",
            p.max_connections as u64,
            1,
            1_000_000,
        )?;
        count(
            "pop3.max_connections_per_ip",
            p.max_connections_per_ip as u64,
            1,
            1_000_000,
        )?;
        count(
            "pop3.max_connections_per_network",
            p.max_connections_per_network as u64,
            1,
            1_000_000,
        )?;
        count(
            "pop3.max_auth_failures",
            u64::from(p.max_auth_failures),
            1,
            1000,
        )?;
        count(
            "pop3.max_auth_failures_per_ip",
            u64::from(p.max_auth_failures_per_ip),
            1,
            1_000_000,
        )?;
        duration(
            "pop3.auth_failure_delay",
            p.auth_failure_delay,
            Duration::ZERO,
            MINUTE,
        )?;
        count(
            "pop3.max_auth_failures_per_account",
            u64::from(p.max_auth_failures_per_account),
            1,
            1_000_000,
        )?;
        duration(
            "pop3.max_auth_failure_delay",
            p.max_auth_failure_delay,
            Duration::ZERO,
            10 * MINUTE,
        )?;
        duration("pop3.auth_lockout", p.auth_lockout, SECOND, 30 * DAY)?;
        // RFC 1939 §3: an autologout timer of at least 10 minutes (tests shorten it).
        duration("pop3.idle_timeout", p.idle_timeout, SECOND, DAY)?;
        duration("pop3.write_timeout", p.write_timeout, SECOND, DAY)
    }

    fn validate_imap(&self) -> Result<(), Invalid> {
        let p = &self.imap;
        if p.listen.is_empty() && p.tls_listen.is_empty() {
            return Err(("imap.listen", "at least one address is required".into()));
        }
        count(
            "imap.max_connections",
            p.max_connections as u64,
            1,
            1_000_000,
        )?;
        count(
            "imap.max_connections_per_ip",
            p.max_connections_per_ip as u64,
            1,
            1_000_000,
        )?;
        count(
            "imap.max_connections_per_network",
            p.max_connections_per_network as u64,
            1,
            1_000_000,
        )?;
        count(
            "imap.max_auth_failures",
            u64::from(p.max_auth_failures),
            1,
            1000,
        )?;
        count(
            "imap.max_auth_failures_per_ip",
            u64::from(p.max_auth_failures_per_ip),
            1,
            1_000_000,
        )?;
        count(
            "imap.max_auth_failures_per_account",
            u64::from(p.max_auth_failures_per_account),
            1,
            1_000_000,
        )?;
        duration(
            "imap.auth_failure_delay",
            p.auth_failure_delay,
            Duration::ZERO,
            MINUTE,
        )?;
        duration(
            "imap.max_auth_failure_delay",
            p.max_auth_failure_delay,
            Duration::ZERO,
            10 * MINUTE,
        )?;
        duration("imap.auth_lockout", p.auth_lockout, SECOND, 30 * DAY)?;
        duration("imap.idle_timeout", p.idle_timeout, SECOND, DAY)?;
        duration("imap.login_timeout", p.login_timeout, SECOND, DAY)?;
        duration("imap.write_timeout", p.write_timeout, SECOND, DAY)?;
        count("imap.max_line", p.max_line as u64, 8192, 16 * 1024 * 1024)?;
        count("imap.max_literal", p.max_literal, 1024, 1 << 32)?;
        count(
            "imap.max_commands_per_second",
            u64::from(p.max_commands_per_second),
            1,
            1_000_000,
        )?;
        count(
            "imap.command_burst",
            u64::from(p.command_burst),
            1,
            10_000_000,
        )?;
        count(
            "imap.expunge_history",
            p.expunge_history,
            0,
            u64::from(u32::MAX),
        )?;
        count(
            "imap.max_keywords_per_folder",
            u64::from(p.max_keywords_per_folder),
            1,
            100_000,
        )?;
        count(
            "imap.max_keywords_per_message",
            u64::from(p.max_keywords_per_message),
            1,
            u64::from(p.max_keywords_per_folder),
        )
    }

    fn validate_queue(&self) -> Result<(), Invalid> {
        let q = &self.queue;
        count(
            "queue.delivery_concurrency",
            q.delivery_concurrency as u64,
            1,
            100_000,
        )?;
        if q.retry_schedule.is_empty() || q.retry_schedule.len() > 1000 {
            return Err((
                "queue.retry_schedule",
                "needs at least one wait, and at most 1000".into(),
            ));
        }
        for d in &q.retry_schedule {
            duration(
                "queue.retry_schedule",
                *d,
                Duration::from_millis(1),
                30 * DAY,
            )?;
        }
        if !(0.0..=0.5).contains(&q.retry_jitter) {
            return Err(("queue.retry_jitter", "must be between 0 and 0.5".into()));
        }
        count("queue.glitch_retries", u64::from(q.glitch_retries), 0, 1000)?;
        duration(
            "queue.glitch_retry",
            q.glitch_retry,
            Duration::from_millis(1),
            DAY,
        )?;
        duration(
            "queue.poll_interval",
            q.poll_interval,
            Duration::from_millis(1),
            HOUR,
        )?;
        duration("queue.expiry", q.expiry, SECOND, 365 * DAY)?;
        duration(
            "queue.delay_notification",
            q.delay_notification,
            Duration::ZERO,
            365 * DAY,
        )?;
        if q.delay_notification >= q.expiry {
            return Err((
                "queue.delay_notification",
                "must be shorter than queue.expiry".into(),
            ));
        }
        Ok(())
    }

    fn validate_extensions(&self) -> Result<(), Invalid> {
        for k in &self.smtp.disabled_extensions {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err((
                    "smtp.disabled_extensions",
                    format!("{k:?} is not an EHLO keyword"),
                ));
            }
        }
        for k in self.smtp.extensions.iter().flatten() {
            if !super::STANDARD_EXTENSIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(k))
            {
                return Err((
                    "smtp.extensions",
                    format!(
                        "{k:?} is not an extension mailroom implements (it has: {})",
                        super::STANDARD_EXTENSIONS.join(", ")
                    ),
                ));
            }
        }
        for (name, def) in self.services.iter().flatten() {
            if name.is_empty() || def.runs.is_empty() {
                return Err((
                    "services",
                    format!("the service {name:?} needs a name and a `runs`"),
                ));
            }
        }
        count("config.history", self.config.history as u64, 1, 10_000)?;
        duration(
            "supervisor.restart_interval",
            self.supervisor.restart_interval,
            Duration::from_millis(50),
            DAY,
        )
    }

    fn validate_outbound(&self) -> Result<(), Invalid> {
        let o = &self.outbound;
        for (key, hop) in o
            .smart_host
            .iter()
            .map(|h| ("outbound.smart_host", h))
            .chain(o.smart_hosts.values().map(|h| ("outbound.smart_hosts", h)))
        {
            if super::parse_host_port(hop, 25).is_none() {
                return Err((key, format!("{hop:?} is not host:port")));
            }
        }
        count(
            "outbound.max_messages_per_connection",
            u64::from(o.max_messages_per_connection),
            1,
            1_000_000,
        )?;
        count(
            "outbound.max_connections",
            o.max_connections as u64,
            1,
            1_000_000,
        )?;
        count(
            "outbound.max_connections_per_domain",
            o.max_connections_per_domain as u64,
            1,
            1_000_000,
        )?;
        for (key, d) in [
            ("outbound.connect_timeout", o.connect_timeout),
            ("outbound.command_timeout", o.command_timeout),
            ("outbound.data_timeout", o.data_timeout),
            ("outbound.block_timeout", o.block_timeout),
            ("outbound.data_end_timeout", o.data_end_timeout),
        ] {
            duration(key, d, Duration::from_millis(1), DAY)?;
        }
        duration(
            "outbound.idle_timeout",
            o.idle_timeout,
            Duration::ZERO,
            HOUR,
        )
    }
}
