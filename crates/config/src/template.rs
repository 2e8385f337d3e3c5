//! The commented configuration file written by `mailroom init`.

use std::net::SocketAddr;

use super::{
    OrgConfig, OutboundConfig, Pop3Config, QueueConfig, SmtpConfig, SubmissionConfig, TlsConfig,
};

/// The listening addresses `mailroom init` was given (each `None`: the default).
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// SMTP receive (`--smtp`).
    pub smtp: Option<SocketAddr>,
    /// Submission with STARTTLS (`--submission`).
    pub submission: Option<SocketAddr>,
    /// Submission with implicit TLS (`--submissions`).
    pub submissions: Option<SocketAddr>,
    /// POP3 (`--pop3`).
    pub pop3: Option<SocketAddr>,
    /// POP3 with implicit TLS (`--pop3s`).
    pub pop3s: Option<SocketAddr>,
    /// IMAP (`--imap`).
    pub imap: Option<SocketAddr>,
    /// IMAP with implicit TLS (`--imaps`).
    pub imaps: Option<SocketAddr>,
}

/// Renders the configuration file for a new server. Values are the defaults unless given; the
/// comments explain each key so that the file documents itself.
pub fn template(domain: &str, hostname: &str, listen: &Listen) -> String {
    let s = SmtpConfig::default();
    let m = SubmissionConfig::default();
    let t = TlsConfig::default();
    let p = Pop3Config::default();
    let q = QueueConfig::default();
    let o = OutboundConfig::default();
    let g = OrgConfig::default();
    let smtp = listen.smtp.unwrap_or(s.listen[0]);
    let pop3 = listen.pop3.unwrap_or(p.listen[0]);
    let pop3s = listen.pop3s.unwrap_or(p.tls_listen[0]);
    let i = super::ImapConfig::default();
    let imap = listen.imap.unwrap_or(i.listen[0]);
    let imaps = listen.imaps.unwrap_or(i.tls_listen[0]);
    let submission = listen.submission.unwrap_or(m.listen[0]);
    let submissions = listen.submissions.unwrap_or(m.tls_listen[0]);
    let dur = |d: std::time::Duration| humantime::format_duration(d).to_string();
    format!(
        r#"# mailroom configuration. Every key is optional except [server]; the values shown are the
# defaults. Durations are written like "30s", "5m" or "2h". Change it with `mailroom config set`,
# or edit it and run `mailroom config reload` (or send SIGHUP): every change becomes a version in
# the config store (`mailroom config history`). An invalid file is refused, naming the wrong key.

[server]
# This server's fully qualified name: used in the SMTP greeting, Received headers and reports.
hostname = "{hostname}"
# Local domains: mail for these is delivered into mailboxes here. The first is the primary domain.
domains = ["{domain}"]
# Password checks (Argon2id) run at once, at most; 0 means one per core.
max_password_checks = 0
# The domain that completes a bare name given to `sendmail` (root, alice) and the senders of
# local programs (Postfix's myorigin). Default: the primary domain.
# origin = "{domain}"

[smtp]
# Where the SMTP receive service listens (mail from other servers, and local programs).
listen = ["{smtp}"]
# Offer STARTTLS (RFC 3207) when the certificate in [tls] can be used.
starttls = true
# Largest message accepted, in octets (advertised in EHLO as SIZE).
max_message_size = {max_message_size}
# Recipients per message; more get "452 4.5.3".
max_recipients = {max_recipients}
# Longest command line and longest line of message text, in octets including CRLF.
max_command_line = {max_command_line}
max_text_line = {max_text_line}
# Simultaneous connections, in total, from one client address, and from one network (a /24 or
# an IPv6 /48, together).
max_connections = {max_connections}
max_connections_per_ip = {max_connections_per_ip}
max_connections_per_network = {smtp_per_net}
# Message text must arrive at least this fast (octets a second): DATA may take data_timeout
# plus a second per this many octets, however it pauses.
min_data_rate = {smtp_min_rate}
# Errors in one session before the server says 421 and hangs up.
max_errors = {max_errors}
# How long the server waits for a command, and for more message text.
command_timeout = "{command_timeout}"
data_timeout = "{data_timeout}"
# How long the server waits for the client to read its replies (one that never reads is dropped).
write_timeout = "{write_timeout}"
# A message that already carries more Received headers than this is looping: "554 5.4.6".
max_received_headers = {max_received_headers}
# Networks (CIDR) whose clients may send to non-local domains. Empty: nobody may relay.
trusted_networks = []
# Networks of clients inside (trusted_networks are inside too): their mail is not checked for
# SPF/DKIM/DMARC, they may use a local domain as sender, and they are not rate-limited.
inside_networks = ["127.0.0.0/8", "::1/128"]
# An outside client that has not logged in, giving a local domain in MAIL FROM: "refuse"
# (550 5.7.1) or "accept".
local_senders_from_outside = "refuse"
# Per outside client address and minute: new connections, and messages (0: no limit).
max_connection_rate = {max_connection_rate}
max_message_rate = {max_message_rate}
# A recipient whose mailbox is full is refused at RCPT (no report to a possibly forged sender):
# "temporary" (452 4.2.2, the sending server retries) or "permanent" (552 5.2.2). A declared SIZE
# larger than the whole quota is always refused for good (552 5.2.3).
full_mailbox = "temporary"
# Messages larger than this (octets) are written to DATA/spool as they arrive rather than held in
# memory; smaller ones are stored in the database with one shared commit.
spool_threshold = {spool_threshold}
# A list or alias may expand to this many final recipients, through this many levels at most.
max_expansion = {max_expansion}
max_expansion_depth = {max_expansion_depth}
# The extension registrations: the EHLO keywords this service offers. A keyword missing here is
# neither advertised nor accepted (`mailroom doctor` names it, `mailroom repair` puts it back).
# The X- verbs are the organization's: without them this server cannot take part in one.
extensions = [{extensions}]
# Extensions to leave unregistered even though listed above (EHLO keywords), e.g. ["CHUNKING"].
disabled_extensions = []

[submission]
# Message submission for users' mail programs (RFC 6409): every session must log in (SMTP AUTH,
# PLAIN or LOGIN), and AUTH is offered only under TLS. A logged-in user may send anywhere, but
# only as their own address or an alias of theirs.
# Sessions that start in clear and use STARTTLS:
listen = ["{submission}"]
# Sessions that start with TLS ("submissions", RFC 8314):
tls_listen = ["{submissions}"]
max_connections = {sub_max_connections}
max_connections_per_ip = {sub_per_ip}
max_connections_per_network = {sub_per_net}
# Failed logins in one session before it is closed.
max_auth_failures = {sub_max_auth_failures}
# The pause after a failed login; it doubles with each further failure from the same address or
# for the same account, up to max_auth_failure_delay.
auth_failure_delay = "{sub_delay}"
max_auth_failure_delay = "{sub_max_delay}"
# Failed logins from one address, or for one account, before it is locked out for auth_lockout.
max_auth_failures_per_ip = {sub_fail_ip}
max_auth_failures_per_account = {sub_fail_account}
auth_lockout = "{sub_lockout}"
# Refuse (553 5.7.1) an envelope sender or From address that is not the user's own.
check_sender = true

[tls]
# The certificate chain and private key (PEM) of every TLS listener; a relative path is inside
# the data directory. `mailroom init` made a self-signed pair there; replace the files with your
# own (they are read again when they change).
certificate = "{cert}"
private_key = "{key}"
# The oldest TLS version accepted: "1.2" or "1.3" (1.0 and 1.1 never).
min_version = "1.2"
handshake_timeout = "{handshake}"

[sender_auth]
# Check SPF, DKIM, DMARC and ARC on mail from outside, and record the results in an
# Authentication-Results header.
verify = true
# A DMARC failure: "enforce" follows the sender domain's policy (p=reject: 550 5.7.1), "monitor"
# only reports it.
dmarc_policy = "enforce"
# Larger messages are not checked for DKIM (the check reads the whole message into memory): their
# DMARC verdict rests on SPF alone. Keep it at smtp.max_message_size to check every message.
max_verify_size = {max_verify_size}

[dkim]
# Sign mail sent by users and local programs, for every domain that has a key. `mailroom dkim
# generate DOMAIN` makes DATA/dkim/DOMAIN.SELECTOR.key and prints the DNS record to publish.
sign = true
selector = "mailroom"

[pop3]
# Where the POP3 service listens (STLS offered), and where sessions start with TLS (POP3S).
listen = ["{pop3}"]
tls_listen = ["{pop3s}"]
# Where a password may be sent without TLS: "loopback" (only from this machine), "never", or
# "always" (only behind a proxy that does the TLS).
plaintext_login = "loopback"
# Pause before answering a failed login.
auth_failure_delay = "{auth_failure_delay}"
# Inactivity after which a session is closed.
idle_timeout = "{idle_timeout}"
max_connections = {pop_max_connections}
# Failed logins in one session before it is closed.
max_auth_failures = {max_auth_failures}
# Connections from one client address (IPv6: its /64).
max_connections_per_ip = {pop_per_ip}
# Connections from one network (a /24, or an IPv6 /48) together.
max_connections_per_network = {pop_per_net}
# Failed logins from one client address, or for one account, before it is locked out for a while.
max_auth_failures_per_ip = {pop_fail_per_ip}
max_auth_failures_per_account = {pop_fail_account}
auth_lockout = "{pop_lockout}"
# The pause after a failed login doubles with each further failure, up to this.
max_auth_failure_delay = "{pop_max_delay}"
# How long the server waits for the client to read what it sends.
write_timeout = "{pop_write_timeout}"

[imap]
# Where the IMAP service listens (STARTTLS offered), and where sessions start with TLS (IMAPS).
listen = ["{imap}"]
tls_listen = ["{imaps}"]
# Where a password may be sent without TLS (elsewhere LOGINDISABLED is announced).
plaintext_login = "loopback"
auth_failure_delay = "{auth_failure_delay}"
# Inactivity after which a session is closed (at least 30 minutes, RFC 9051), and before login.
idle_timeout = "{imap_idle_timeout}"
login_timeout = "{imap_login_timeout}"
max_connections = {imap_max_connections}
max_connections_per_ip = {imap_per_ip}
max_connections_per_network = {imap_per_net}
max_auth_failures = {max_auth_failures}
# Failed logins from one client address, or for one account (counted with POP3 and submission).
max_auth_failures_per_ip = {pop_fail_per_ip}
max_auth_failures_per_account = {pop_fail_account}
auth_lockout = "{pop_lockout}"
max_auth_failure_delay = "{pop_max_delay}"
write_timeout = "{pop_write_timeout}"
# Longest command line, largest literal (and so message APPEND takes), commands per second.
max_line = {imap_max_line}
max_literal = {imap_max_literal}
max_commands_per_second = {imap_cps}
# Commands a session may send at once before that rate applies (a sync client never meets it).
command_burst = {imap_burst}
# Expunged UIDs each folder remembers for QRESYNC (older resyncs get the longer answer).
expunge_history = {imap_expunge_history}
# Keywords a folder may define (past it: NO [LIMIT]), and keywords one message may carry.
max_keywords_per_folder = {imap_kw_folder}
max_keywords_per_message = {imap_kw_message}

[queue]
# Messages delivered at the same time.
delivery_concurrency = {delivery_concurrency}
# How often the queue is checked for work that has come due (retries, reports).
poll_interval = "{poll_interval}"
# Waits between attempts after a temporary failure; the last one repeats.
retry_schedule = [{retry_schedule}]
# Random spread of each wait (0.1 = plus or minus 10%).
retry_jitter = {retry_jitter}
# After a connection failed or broke off, this many quicker retries, this far apart.
glitch_retries = {glitch_retries}
glitch_retry = "{glitch_retry}"
# When the sender is told that delivery is delayed, and when delivery is given up.
delay_notification = "{delay_notification}"
expiry = "{expiry}"

[outbound]
# Send all mail for other domains through one server ("host:port") instead of MX lookup:
# smart_host = "relay.example.net:25"
# Per-domain smart hosts:
# smart_hosts = {{ "example.org" = "mx.example.org:2525" }}
# Port of the servers found by MX lookup.
port = {port}
# Use TLS whenever the next server offers STARTTLS (its certificate is not required to verify:
# encryption against reading on the wire; the mail goes in clear where TLS is not offered).
starttls = true
# Messages per connection, and simultaneous connections in total and per destination.
max_messages_per_connection = {max_messages_per_connection}
max_connections = {out_max_connections}
max_connections_per_domain = {max_connections_per_domain}
# Timeouts (RFC 5321 section 4.5.3.2).
connect_timeout = "{connect_timeout}"
command_timeout = "{out_command_timeout}"
data_timeout = "{out_data_timeout}"
block_timeout = "{block_timeout}"
data_end_timeout = "{data_end_timeout}"
idle_timeout = "{out_idle_timeout}"

[dns]
# Name servers ("ip:port"); empty: the system's, from /etc/resolv.conf.
nameservers = []

[org]
# The organization's link state (membership is managed with `mailroom org`). Each peer is
# contacted this often; after a failure, glitch_retries more attempts glitch_retry apart, then
# it is DOWN; it is UP again at the first success, but no sooner than damping after going DOWN.
probe_interval = "{probe_interval}"
glitch_retries = {org_glitch_retries}
glitch_retry = "{org_glitch_retry}"
damping = "{damping}"
# Mail handed to another server is kept (a shadow) until it says delivered; if it is DOWN and
# silent this long, the shadow is sent again over another route.
shadow_timeout = "{shadow_timeout}"
connect_timeout = "{org_connect_timeout}"
command_timeout = "{org_command_timeout}"

[supervisor]
# A service that failed to start (a port taken, say) is tried again this often.
restart_interval = "{restart_interval}"

[config]
# Versions of this configuration kept in the config store (`mailroom config history`).
history = {history}

[log]
# Where the log goes: "stderr", "journald" (each field also a journal field) or "syslog"
# (/dev/log, facility mail); and for stderr, "text" or "json" lines (docs/logging.md).
target = "stderr"
format = "text"

[metrics]
# Prometheus metrics on http://ADDRESS/metrics (docs/metrics.md); off while empty.
listen = []
# A bearer token every scrape must give:
# token = "…"

# The services this server runs. `runs` names the component that implements each (its own
# name); `enabled = false` stops one. `mailroom status` shows their states.
{services}"#,
        imap_idle_timeout = dur(i.idle_timeout),
        imap_login_timeout = dur(i.login_timeout),
        imap_max_connections = i.max_connections,
        imap_per_ip = i.max_connections_per_ip,
        imap_per_net = i.max_connections_per_network,
        imap_max_line = i.max_line,
        imap_max_literal = i.max_literal,
        imap_cps = i.max_commands_per_second,
        imap_expunge_history = i.expunge_history,
        imap_kw_folder = i.max_keywords_per_folder,
        imap_burst = i.command_burst,
        imap_kw_message = i.max_keywords_per_message,
        max_message_size = s.max_message_size,
        max_recipients = s.max_recipients,
        max_command_line = s.max_command_line,
        max_text_line = s.max_text_line,
        max_connections = s.max_connections,
        max_connections_per_ip = s.max_connections_per_ip,
        smtp_per_net = s.max_connections_per_network,
        smtp_min_rate = s.min_data_rate,
        max_errors = s.max_errors,
        command_timeout = dur(s.command_timeout),
        data_timeout = dur(s.data_timeout),
        write_timeout = dur(s.write_timeout),
        max_received_headers = s.max_received_headers,
        max_connection_rate = s.max_connection_rate,
        max_message_rate = s.max_message_rate,
        max_verify_size = super::SenderAuthConfig::default().max_verify_size,
        spool_threshold = s.spool_threshold,
        max_expansion = s.max_expansion,
        max_expansion_depth = s.max_expansion_depth,
        auth_failure_delay = dur(p.auth_failure_delay),
        idle_timeout = dur(p.idle_timeout),
        pop_max_connections = p.max_connections,
        max_auth_failures = p.max_auth_failures,
        pop_write_timeout = dur(p.write_timeout),
        pop_per_ip = p.max_connections_per_ip,
        pop_per_net = p.max_connections_per_network,
        pop_fail_per_ip = p.max_auth_failures_per_ip,
        pop_lockout = dur(p.auth_lockout),
        pop_fail_account = p.max_auth_failures_per_account,
        pop_max_delay = dur(p.max_auth_failure_delay),
        sub_max_connections = m.max_connections,
        sub_per_ip = m.max_connections_per_ip,
        sub_per_net = m.max_connections_per_network,
        sub_max_auth_failures = m.max_auth_failures,
        sub_delay = dur(m.auth_failure_delay),
        sub_max_delay = dur(m.max_auth_failure_delay),
        sub_fail_ip = m.max_auth_failures_per_ip,
        sub_fail_account = m.max_auth_failures_per_account,
        sub_lockout = dur(m.auth_lockout),
        cert = t.certificate.display(),
        key = t.private_key.display(),
        handshake = dur(t.handshake_timeout),
        delivery_concurrency = q.delivery_concurrency,
        poll_interval = dur(q.poll_interval),
        retry_schedule = q
            .retry_schedule
            .iter()
            .map(|d| format!("\"{}\"", dur(*d)))
            .collect::<Vec<_>>()
            .join(", "),
        retry_jitter = q.retry_jitter,
        glitch_retries = q.glitch_retries,
        glitch_retry = dur(q.glitch_retry),
        delay_notification = dur(q.delay_notification),
        expiry = dur(q.expiry),
        port = o.port,
        max_messages_per_connection = o.max_messages_per_connection,
        out_max_connections = o.max_connections,
        max_connections_per_domain = o.max_connections_per_domain,
        connect_timeout = dur(o.connect_timeout),
        out_command_timeout = dur(o.command_timeout),
        out_data_timeout = dur(o.data_timeout),
        block_timeout = dur(o.block_timeout),
        data_end_timeout = dur(o.data_end_timeout),
        out_idle_timeout = dur(o.idle_timeout),
        probe_interval = dur(g.probe_interval),
        org_glitch_retries = g.glitch_retries,
        org_glitch_retry = dur(g.glitch_retry),
        damping = dur(g.damping),
        shadow_timeout = dur(g.shadow_timeout),
        org_connect_timeout = dur(g.connect_timeout),
        org_command_timeout = dur(g.command_timeout),
        extensions = super::STANDARD_EXTENSIONS
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", "),
        restart_interval = dur(super::SupervisorConfig::default().restart_interval),
        history = super::StoreConfig::default().history,
        services = super::SERVICES
            .iter()
            .map(|n| format!("[services.{n}]\nenabled = true\nruns = \"{n}\"\n"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}
