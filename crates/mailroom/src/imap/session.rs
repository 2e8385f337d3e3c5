//! One IMAP session: reading commands (literals included), the not-authenticated state
//! (STARTTLS, LOGIN, AUTHENTICATE), and dispatching the rest (RFC 9051 §3, §6).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use base64::Engine;
use mailroom_proto::imap::command::{Body, Command};
use mailroom_proto::imap::frame::{FrameError, Framer, Limits, Scan};
use mailroom_proto::imap::parse;
use mailroom_proto::sasl;
use mailroom_proto::scram::ClientFirst;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};

use super::view::View;
use super::Context;
use crate::config::PlaintextLogin;
use crate::conn::{Conn, ReadError};
use crate::directory::login::{self, Login};
use crate::limits::Lockout;
use crate::store::User;

/// The text of `NO` for a command the store could not carry out for now.
pub(super) const TEMPORARY: &str = "[UNAVAILABLE] Temporary failure, try again later";

/// Largest literal taken before login (a name or password, an initial response): RFC 7888 §4
/// lets a server refuse large literals from clients not yet authenticated.
const MAX_LITERAL_BEFORE_LOGIN: u64 = 8 * 1024;

/// Commands in a row that get BAD before the session is closed.
const MAX_BAD: u32 = 20;

/// Whether the session goes on.
pub(super) enum Flow {
    Continue,
    Close,
}

/// Extensions the client has turned on with ENABLE (RFC 5161) or by using them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Enabled {
    /// CONDSTORE (RFC 7162 §3.1): MODSEQ in FETCH responses, HIGHESTMODSEQ on SELECT.
    pub condstore: bool,
    /// QRESYNC (RFC 7162 §3.2): VANISHED instead of EXPUNGE.
    pub qresync: bool,
    /// IMAP4rev2 (RFC 9051): UTF-8 names, no `\Recent`, ESEARCH replies.
    pub rev2: bool,
}

/// One IMAP session.
pub struct Session<S> {
    pub(super) conn: Conn<S>,
    pub(super) ctx: Arc<Context>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    framer: Framer,
    pub(super) user: Option<User>,
    failures: u32,
    bad: u32,
    pub(super) selected: Option<View>,
    pub(super) enabled: Enabled,
    changes: broadcast::Receiver<i64>,
    /// A change to this user's mailbox was announced and not yet looked at.
    pub(super) dirty: bool,
    /// The UIDs of the last `SEARCH RETURN (SAVE)` (RFC 5182), for `$`.
    pub(super) saved: Option<Vec<u32>>,
    /// The command bucket: when it was last filled, and the commands it holds.
    rate: (Instant, f64),
    /// When the connection was accepted.
    connected: Instant,
    /// The message texts of the command being read that were streamed to the spool
    /// ([`Session::stream_literal`]), in order; the APPEND takes them.
    pub(super) streamed: std::collections::VecDeque<std::io::Result<crate::store::spool::Received>>,
    /// Message texts read ahead for pipelined FETCH commands ([`super::prefetch`]).
    pub(super) ahead: super::prefetch::Ahead,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session on an accepted connection.
    pub fn new(
        stream: crate::tls::Stream<S>,
        peer: SocketAddr,
        ctx: Arc<Context>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let c = &ctx.config.imap;
        let framer = Framer::new(Limits {
            max_line: c.max_line,
            max_literal: MAX_LITERAL_BEFORE_LOGIN,
            max_command: c.max_literal.saturating_add(c.max_line as u64),
            offer_over: None,
        });
        let changes = ctx.store.mail_changes();
        let burst = f64::from(c.command_burst);
        Session {
            conn: Conn::new(stream, c.max_line, c.write_timeout),
            ctx,
            peer,
            shutdown,
            framer,
            user: None,
            failures: 0,
            bad: 0,
            selected: None,
            enabled: Enabled::default(),
            changes,
            dirty: false,
            saved: None,
            rate: (Instant::now(), burst),
            connected: Instant::now(),
            streamed: std::collections::VecDeque::new(),
            ahead: Default::default(),
        }
    }

    /// Queues an untagged response (`* text`).
    pub(super) fn untagged(&mut self, text: &str) {
        let w = self.conn.wbuf();
        w.extend_from_slice(b"* ");
        w.extend_from_slice(text.as_bytes());
        w.extend_from_slice(b"\r\n");
    }

    /// Queues the tagged reply that ends a command.
    pub(super) fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        let w = self.conn.wbuf();
        w.extend_from_slice(tag.as_bytes());
        w.push(b' ');
        w.extend_from_slice(status.as_bytes());
        w.push(b' ');
        w.extend_from_slice(text.as_bytes());
        w.extend_from_slice(b"\r\n");
    }

    /// Whether LOGIN or AUTHENTICATE may go on; if not, the command is ended: `BAD` once logged
    /// in (RFC 9051 §6.2), `NO [PRIVACYREQUIRED]` where a password may not travel in clear
    /// (RFC 9051 §6.2.3, `imap.plaintext_login`).
    fn may_log_in(&mut self, tag: &str, what: &str) -> bool {
        if self.user.is_some() {
            self.tagged(tag, "BAD", "Already logged in");
            return false;
        }
        if !self.login_allowed() {
            self.tagged(
                tag,
                "NO",
                &format!("[PRIVACYREQUIRED] {what} disallowed on non-secure connections; use STARTTLS first"),
            );
            return false;
        }
        true
    }

    /// Ends a command the store could not carry out for now with `NO [UNAVAILABLE]` (RFC 5530
    /// §3): the client may try again; the cause goes to the log, not to the client.
    pub(super) fn temporary(&mut self, tag: &str, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "imap {what} failed");
        self.tagged(tag, "NO", TEMPORARY);
    }

    /// Writes what is queued once it has grown large (long FETCH and SEARCH replies).
    pub(super) async fn flush_if_large(&mut self) -> bool {
        if self.conn.wbuf().len() >= 256 * 1024 {
            return self.conn.flush().await.is_ok();
        }
        true
    }

    /// The capabilities, which depend on the state (RFC 9051 §7.2.2).
    pub(super) fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE");
        if self.user.is_none() {
            if self.starttls_offered() {
                c.push_str(" STARTTLS");
            }
            if self.login_allowed() {
                c.push_str(" AUTH=PLAIN AUTH=SCRAM-SHA-256");
            } else {
                c.push_str(" LOGINDISABLED");
            }
            return c;
        }
        c.push_str(
            " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE \
             CREATE-SPECIAL-USE ESEARCH SEARCHRES CONDSTORE QRESYNC BINARY MULTIAPPEND \
             STATUS=SIZE QUOTA QUOTA=RES-STORAGE COMPRESS=DEFLATE SORT SORT=DISPLAY \
             THREAD=ORDEREDSUBJECT THREAD=REFERENCES",
        );
        c.push_str(&format!(
            " APPENDLIMIT={}",
            self.ctx.config.imap.max_literal
        ));
        c
    }

    /// COMPRESS DEFLATE (RFC 4978): the OK is sent uncompressed, then both ways are deflated.
    async fn compress(&mut self, tag: &str, mechanism: &str) -> Flow {
        if self.conn.deflating() {
            self.tagged(tag, "NO", "[COMPRESSIONACTIVE] DEFLATE is already active");
            return Flow::Continue;
        }
        if !mechanism.eq_ignore_ascii_case("DEFLATE") {
            self.tagged(
                tag,
                "BAD",
                &format!("Unknown compression mechanism {mechanism}"),
            );
            return self.too_many_bad();
        }
        if self.conn.has_pending_input() {
            // The client may not send more before it has our OK (RFC 4978 §3).
            self.tagged(tag, "BAD", "Commands pipelined after COMPRESS");
            return self.too_many_bad();
        }
        self.tagged(tag, "OK", "DEFLATE active");
        if self.conn.flush().await.is_err() {
            return Flow::Close;
        }
        self.conn.start_deflate();
        tracing::debug!(peer = %self.peer, "DEFLATE started");
        Flow::Continue
    }

    fn starttls_offered(&self) -> bool {
        self.conn.tls().is_none() && self.ctx.tls.as_ref().is_some_and(|t| t.available())
    }

    fn login_allowed(&self) -> bool {
        self.conn.tls().is_some()
            || match self.ctx.config.imap.plaintext_login {
                PlaintextLogin::Never => false,
                PlaintextLogin::Loopback => self.peer.ip().is_loopback(),
                PlaintextLogin::Always => true,
            }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let host = self.ctx.config.server.hostname.clone();
        let caps = self.capabilities();
        self.untagged(&format!(
            "OK [CAPABILITY {caps}] {host} mailroom IMAP ready"
        ));
        while let Some(raw) = self.read_command().await {
            self.throttle().await;
            let flow = match parse::command(&raw) {
                Ok(cmd) => {
                    self.bad = 0;
                    let started = std::time::Instant::now();
                    let flow = self.dispatch(cmd).await;
                    crate::metrics::get()
                        .imap_command
                        .with_label_values(&[&verb(&raw)])
                        .observe(started.elapsed().as_secs_f64());
                    flow
                }
                Err(e) => {
                    match &e.tag {
                        Some(t) => self.tagged(t, "BAD", &e.reason),
                        None => self.untagged(&format!("BAD {}", e.reason)),
                    }
                    self.too_many_bad()
                }
            };
            // Messages streamed for a command that did not use them: their files go.
            self.streamed.clear();
            if matches!(flow, Flow::Close) {
                break;
            }
        }
        self.conn.close().await;
    }

    fn too_many_bad(&mut self) -> Flow {
        self.bad += 1;
        if self.bad >= MAX_BAD {
            self.untagged("BYE Too many invalid commands");
            return Flow::Close;
        }
        Flow::Continue
    }

    /// A token bucket (issue 21: a fixed window of `imap.max_commands_per_second` made mbsync's
    /// first sync of 2,000 messages take twice as long): it holds up to `imap.command_burst`
    /// commands and fills at `max_commands_per_second`; each command takes one, and a session
    /// that has emptied it waits for the next. A sync client never empties it; a flood runs at
    /// the rate.
    async fn throttle(&mut self) {
        let c = &self.ctx.config.imap;
        let (rate, burst) = (
            f64::from(c.max_commands_per_second.max(1)),
            f64::from(c.command_burst.max(1)),
        );
        let now = Instant::now();
        let (last, tokens) = self.rate;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        if tokens >= 1.0 {
            self.rate = (now, tokens - 1.0);
            return;
        }
        tokio::time::sleep(Duration::from_secs_f64((1.0 - tokens) / rate)).await;
        self.rate = (Instant::now(), 0.0);
    }

    /// Streams an APPEND message's literal (offered by the framer) to a spool writer as it
    /// arrives, as SMTP DATA is streamed: the command keeps `{0}` in its place, and the text
    /// waits in [`Session::streamed`] for the APPEND. A command then costs bounded memory,
    /// however large its messages (issue 21: six sessions each sending 20 MB held 369 MB), and
    /// each message of a MULTIAPPEND is limited on its own. `None`: the connection ended.
    async fn stream_literal(
        &mut self,
        len: u64,
        sync: bool,
        open: usize,
        start: usize,
    ) -> Option<()> {
        let tail = self.conn.rbuf.split_off(start);
        self.conn.rbuf.truncate(open);
        self.conn.rbuf.extend_from_slice(b"{0}\r\n");
        let resume = self.conn.rbuf.len();
        self.conn.rbuf.extend_from_slice(&tail);
        if sync {
            self.conn.send_raw(b"+ Ready for literal data\r\n");
        }
        let threshold = self.ctx.config.smtp.spool_threshold;
        let name = crate::ids::QueueId::generate().to_string();
        let mut writer = self.ctx.store.spool().writer(name, threshold);
        let mut failed: Option<std::io::Error> = None;
        let mut left = len;
        loop {
            let n = (left.min((self.conn.rbuf.len() - resume) as u64)) as usize;
            if n > 0 {
                if failed.is_none() {
                    let chunk = &self.conn.rbuf[resume..resume + n];
                    if let Err(e) = writer.write(chunk).await {
                        failed = Some(e);
                    }
                }
                self.conn.rbuf.drain(resume..resume + n);
                left -= n as u64;
            }
            if left == 0 {
                break;
            }
            self.conn.flush().await.ok()?;
            let timeout = self.ctx.config.imap.idle_timeout;
            if self
                .conn
                .fill(timeout, Some(&mut self.shutdown), crate::conn::TEXT_READ)
                .await
                .is_err()
            {
                return None;
            }
        }
        self.framer.taken(resume);
        let text = match failed {
            Some(e) => Err(e),
            None => writer.finish().await,
        };
        self.streamed.push_back(text);
        Some(())
    }

    /// Reads one whole command, sending continuation requests for synchronizing literals.
    async fn read_command(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.framer.scan(&self.conn.rbuf) {
                Scan::Complete { len } => {
                    let cmd: Vec<u8> = self.conn.rbuf.drain(..len).collect();
                    self.framer.reset();
                    if cmd.trim_ascii().is_empty() {
                        continue;
                    }
                    return Some(cmd);
                }
                Scan::Continue { .. } => {
                    self.conn.send_raw(b"+ Ready for literal data\r\n");
                    continue;
                }
                Scan::Literal {
                    len,
                    sync,
                    open,
                    start,
                } => {
                    self.stream_literal(len, sync, open, start).await?;
                    continue;
                }
                Scan::Incomplete => {}
                Scan::Error(e) => {
                    if let FrameError::LiteralTooLarge {
                        len,
                        sync: true,
                        consumed,
                    } = e
                    {
                        // The client waits for "+": refuse the command, and it sends nothing.
                        let head: Vec<u8> = self.conn.rbuf.drain(..consumed).collect();
                        self.framer.reset();
                        let max = self.framer.limits().max_literal;
                        let text =
                            format!("[TOOBIG] literal of {len} octets is over the limit of {max}");
                        match parse::tag_of(&head) {
                            Some(t) => self.tagged(&t, "NO", &text),
                            None => self.untagged(&format!("BAD {text}")),
                        }
                        continue;
                    }
                    let why = match e {
                        FrameError::LineTooLong => {
                            format!("line over {} octets", self.framer.limits().max_line)
                        }
                        FrameError::LiteralTooLarge { len, .. } => format!(
                            "[TOOBIG] literal of {len} octets is over the limit of {}",
                            self.framer.limits().max_literal
                        ),
                    };
                    tracing::info!(peer = %self.peer, "imap session closed: {why}");
                    self.untagged(&format!("BYE {why}"));
                    return None;
                }
            }
            self.conn.flush().await.ok()?;
            let timeout = if self.user.is_some() {
                self.ctx.config.imap.idle_timeout
            } else {
                self.login_time_left()
            };
            // A literal is read in large pieces: reading it whole at once also lets the
            // kernel acknowledge it at once, where small reads leave the client's last
            // segment (the CRLF after the literal) waiting for a delayed ACK (40 ms).
            let want = if self.framer.in_literal() || self.conn.rbuf.len() > 4096 {
                crate::conn::TEXT_READ
            } else {
                crate::conn::COMMAND_READ
            };
            match self
                .conn
                .fill(timeout, Some(&mut self.shutdown), want)
                .await
            {
                Ok(()) => {}
                Err(ReadError::Timeout) => {
                    self.untagged("BYE Autologout; idle for too long");
                    return None;
                }
                Err(ReadError::Shutdown) => {
                    self.untagged("BYE [UNAVAILABLE] Server shutting down");
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// What is left of `imap.login_timeout`, counted from the connection (as Dovecot counts
    /// its login timeout): a client that has not logged in by then is let go however much it
    /// sends meanwhile (issue 21: a byte a second held a pre-login session for ever).
    pub(super) fn login_time_left(&self) -> Duration {
        self.ctx
            .config
            .imap
            .login_timeout
            .saturating_sub(self.connected.elapsed())
    }

    /// Reads one line (a SASL response, IDLE's DONE), or `None` when the connection ends.
    /// The whole line must come within `timeout`, however it is split.
    pub(super) async fn read_line(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.conn.rbuf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.conn.rbuf.drain(..=nl).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(line);
            }
            if self.conn.rbuf.len() > self.ctx.config.imap.max_line {
                self.untagged("BYE line too long");
                return None;
            }
            self.conn.flush().await.ok()?;
            let left = deadline.saturating_duration_since(Instant::now());
            self.conn
                .fill(left, Some(&mut self.shutdown), crate::conn::COMMAND_READ)
                .await
                .ok()?;
        }
    }

    /// Notes announced changes to this user's mailbox.
    pub(super) fn poll_changes(&mut self) {
        let Some(user) = self.user.as_ref().map(|u| u.id) else {
            return;
        };
        loop {
            match self.changes.try_recv() {
                Ok(u) if u == user => self.dirty = true,
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.dirty = true,
                Err(_) => break,
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Flow {
        let Command { tag, body } = cmd;
        match body {
            Body::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                self.tagged(&tag, "OK", "CAPABILITY completed");
                Flow::Continue
            }
            Body::Noop => {
                self.sync(true).await;
                self.tagged(&tag, "OK", "NOOP completed");
                Flow::Continue
            }
            Body::Logout => {
                self.untagged("BYE Logging out");
                self.tagged(&tag, "OK", "LOGOUT completed");
                Flow::Close
            }
            Body::Id(_) => {
                self.untagged(&format!(
                    "ID (\"name\" \"mailroom\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                self.tagged(&tag, "OK", "ID completed");
                Flow::Continue
            }
            Body::StartTls => self.starttls(&tag).await,
            Body::Login { user, password } => {
                if !self.may_log_in(&tag, "Plaintext authentication") {
                    return Flow::Continue;
                }
                let (Ok(name), Ok(pass)) = (String::from_utf8(user), String::from_utf8(password))
                else {
                    self.tagged(&tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials");
                    return Flow::Continue;
                };
                let ctx = self.ctx.clone();
                let outcome = login::login(
                    ctx.store.as_ref(),
                    &ctx.config,
                    &ctx.guard,
                    self.peer.ip(),
                    "imap",
                    &name,
                    &pass,
                )
                .await;
                self.logged_in(&tag, outcome).await
            }
            Body::Authenticate { mechanism, initial } => {
                if !self.may_log_in(&tag, "Authentication") {
                    return Flow::Continue;
                }
                self.authenticate(&tag, &mechanism, initial).await
            }
            other => {
                if self.user.is_none() {
                    self.tagged(&tag, "BAD", "Log in first (LOGIN or AUTHENTICATE)");
                    return self.too_many_bad();
                }
                self.authenticated(&tag, other).await
            }
        }
    }

    /// STARTTLS (RFC 9051 §6.2.1). Commands pipelined after it are refused (CVE-2011-0411).
    async fn starttls(&mut self, tag: &str) -> Flow {
        if self.user.is_some() || self.conn.tls().is_some() {
            self.tagged(
                tag,
                "BAD",
                "STARTTLS is only allowed in clear, before login",
            );
            return Flow::Continue;
        }
        let Some((acceptor, timeout)) = self
            .ctx
            .tls
            .as_ref()
            .and_then(|t| t.acceptor().ok().map(|a| (a, t.handshake_timeout)))
        else {
            self.tagged(
                tag,
                "NO",
                "STARTTLS is not available: no usable certificate",
            );
            return Flow::Continue;
        };
        if self.conn.has_pending_input() {
            self.conn.rbuf.clear();
            tracing::warn!(peer = %self.peer, "commands pipelined after STARTTLS discarded");
            self.tagged(
                tag,
                "BAD",
                "commands sent after STARTTLS were discarded and TLS was not started; send STARTTLS alone",
            );
            return Flow::Continue;
        }
        self.tagged(tag, "OK", "Begin TLS negotiation now");
        match self.conn.start_tls(&acceptor, timeout).await {
            Ok(info) => {
                tracing::debug!(peer = %self.peer, tls = %info, "TLS started");
                self.framer.reset();
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Flow::Close
            }
        }
    }

    /// One SASL response to a `+` challenge, decoded; `Err(None)`: the connection ended.
    async fn sasl_response(&mut self, challenge: &[u8]) -> Result<Vec<u8>, Option<String>> {
        let engine = base64::engine::general_purpose::STANDARD;
        self.conn
            .send_raw(format!("+ {}\r\n", engine.encode(challenge)).as_bytes());
        let timeout = self.login_time_left();
        match self.read_line(timeout).await {
            Some(l) => sasl::decode_response(&l).map_err(|e| Some(e.to_string())),
            None => Err(None),
        }
    }

    /// AUTHENTICATE PLAIN or SCRAM-SHA-256 (RFC 9051 §6.2.2, RFC 4959, RFC 7677).
    async fn authenticate(&mut self, tag: &str, mechanism: &str, initial: Option<Vec<u8>>) -> Flow {
        let first = match initial {
            Some(i) => sasl::decode_response(&i).map_err(|e| Some(e.to_string())),
            None => self.sasl_response(b"").await,
        };
        let first = match first {
            Ok(f) => f,
            Err(Some(why)) => {
                self.tagged(tag, "BAD", &why);
                return Flow::Continue;
            }
            Err(None) => return Flow::Close,
        };
        match mechanism {
            "PLAIN" => match sasl::plain(&first) {
                Some((authz, authc, pass))
                    if authz.is_empty() || authz.eq_ignore_ascii_case(&authc) =>
                {
                    let ctx = self.ctx.clone();
                    let outcome = login::login(
                        ctx.store.as_ref(),
                        &ctx.config,
                        &ctx.guard,
                        self.peer.ip(),
                        "imap",
                        &authc,
                        &pass,
                    )
                    .await;
                    self.logged_in(tag, outcome).await
                }
                Some(_) => {
                    self.tagged(
                        tag,
                        "NO",
                        "[AUTHORIZATIONFAILED] Acting for another user is not allowed",
                    );
                    Flow::Continue
                }
                None => {
                    self.tagged(tag, "BAD", "Malformed SASL PLAIN response");
                    Flow::Continue
                }
            },
            "SCRAM-SHA-256" => self.scram(tag, &first).await,
            _ => {
                self.tagged(
                    tag,
                    "NO",
                    "Unsupported authentication mechanism (SCRAM-SHA-256 and PLAIN are offered)",
                );
                Flow::Continue
            }
        }
    }

    async fn scram(&mut self, tag: &str, first: &[u8]) -> Flow {
        let first = match ClientFirst::parse(first) {
            Ok(f) => f,
            Err(e) => {
                self.tagged(tag, "BAD", &e.to_string());
                return Flow::Continue;
            }
        };
        if first
            .authzid
            .as_ref()
            .is_some_and(|a| !a.eq_ignore_ascii_case(&first.username))
        {
            self.tagged(
                tag,
                "NO",
                "[AUTHORIZATIONFAILED] Acting for another user is not allowed",
            );
            return Flow::Continue;
        }
        let ctx = self.ctx.clone();
        let pending = match login::scram_start(
            ctx.store.as_ref(),
            &ctx.config,
            &ctx.guard,
            self.peer.ip(),
            "imap",
            first,
        )
        .await
        {
            Ok(p) => p,
            Err(outcome) => return self.logged_in(tag, outcome).await,
        };
        let server_first = pending.server_first().as_bytes().to_vec();
        let last = match self.sasl_response(&server_first).await {
            Ok(l) => l,
            Err(Some(why)) => {
                self.tagged(tag, "BAD", &why);
                return Flow::Continue;
            }
            Err(None) => return Flow::Close,
        };
        let (outcome, server_final) = pending.finish(&last);
        if let (Some(v), Login::Accepted(_)) = (&server_final, &outcome) {
            // RFC 9051 §6.2.2: the server's final message may go in the tagged OK; as a last
            // challenge it works with every client.
            match self.sasl_response(v.as_bytes()).await {
                Ok(d) if d.is_empty() => {}
                Ok(_) => {
                    self.tagged(
                        tag,
                        "BAD",
                        "the response to the server's signature must be empty",
                    );
                    return Flow::Continue;
                }
                Err(Some(why)) => {
                    self.tagged(tag, "BAD", &why);
                    return Flow::Continue;
                }
                Err(None) => return Flow::Close,
            }
        }
        self.logged_in(tag, outcome).await
    }

    /// Answers a login's outcome (RFC 5530 response codes).
    async fn logged_in(&mut self, tag: &str, outcome: Login) -> Flow {
        match outcome {
            Login::Accepted(user) => {
                tracing::info!(peer = %self.peer, user = %user.address, "imap login");
                self.user = Some(user);
                let c = &self.ctx.config.imap;
                self.framer = Framer::new(Limits {
                    max_line: c.max_line,
                    max_literal: c.max_literal,
                    max_command: c.max_literal.saturating_add(c.max_line as u64),
                    // APPEND's messages past this go to the spool as they arrive.
                    offer_over: Some(self.ctx.config.smtp.spool_threshold as u64),
                });
                // Announcements from before the login are of no interest.
                self.changes = self.ctx.store.mail_changes();
                let caps = self.capabilities();
                self.tagged(tag, "OK", &format!("[CAPABILITY {caps}] Logged in"));
                Flow::Continue
            }
            Login::LockedOut(what) => {
                let who = match what {
                    Lockout::Address => "from your address",
                    Lockout::Account => "for this account",
                };
                tracing::info!(peer = %self.peer, "imap login refused: locked out {who}");
                self.tagged(
                    tag,
                    "NO",
                    &format!("[UNAVAILABLE] Too many failed logins {who}; try again later"),
                );
                self.untagged("BYE Too many failed logins");
                Flow::Close
            }
            Login::Unavailable(e) => {
                self.temporary(tag, "user lookup", &e);
                Flow::Continue
            }
            Login::Refused { delay } => {
                tokio::time::sleep(delay).await;
                self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials");
                self.failures += 1;
                if self.failures >= self.ctx.config.imap.max_auth_failures {
                    self.untagged("BYE Too many failed logins");
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    /// The commands of the authenticated and selected states.
    async fn authenticated(&mut self, tag: &str, body: Body) -> Flow {
        match body {
            Body::Enable(caps) => {
                if self.selected.is_some() {
                    // RFC 9051 §6.3.1: before any mailbox is selected.
                    self.tagged(
                        tag,
                        "BAD",
                        "ENABLE is not allowed once a mailbox is selected",
                    );
                    return Flow::Continue;
                }
                let mut on = Vec::new();
                for c in caps {
                    match c.as_str() {
                        "CONDSTORE" => self.enabled.condstore = true,
                        "QRESYNC" => {
                            self.enabled.qresync = true;
                            self.enabled.condstore = true;
                        }
                        "IMAP4REV2" => self.enabled.rev2 = true,
                        _ => continue,
                    }
                    on.push(if c == "IMAP4REV2" {
                        "IMAP4rev2".to_string()
                    } else {
                        c
                    });
                }
                self.untagged(format!("ENABLED {}", on.join(" ")).trim_end());
                self.tagged(tag, "OK", "ENABLE completed");
            }
            Body::Idle => return self.idle(tag).await,
            Body::Compress(mechanism) => return self.compress(tag, &mechanism).await,
            Body::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => {
                self.select(tag, &mailbox, read_only, condstore, qresync)
                    .await
            }
            Body::Create {
                mailbox,
                special_use,
            } => self.create(tag, &mailbox, special_use).await,
            Body::Delete(m) => self.delete(tag, &m).await,
            Body::Rename { from, to } => self.rename(tag, &from, &to).await,
            Body::Subscribe(m) => self.subscribe(tag, &m, true).await,
            Body::Unsubscribe(m) => self.subscribe(tag, &m, false).await,
            Body::List(l) => self.list(tag, l).await,
            Body::Lsub { reference, pattern } => self.lsub(tag, &reference, &pattern).await,
            Body::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(tag, "OK", "NAMESPACE completed");
            }
            Body::Status { mailbox, items } => self.status(tag, &mailbox, &items).await,
            Body::Append { mailbox, messages } => self.append(tag, &mailbox, messages).await,
            Body::GetQuota(root) => self.get_quota(tag, &root).await,
            Body::GetQuotaRoot(m) => self.get_quota_root(tag, &m).await,
            Body::SetQuota(_) => self.tagged(
                tag,
                "NO",
                "[NOPERM] Quotas are set by the administrator (mailroom user quota)",
            ),
            other => {
                if self.selected.is_none() {
                    self.tagged(tag, "BAD", "No mailbox selected (SELECT or EXAMINE first)");
                    return self.too_many_bad();
                }
                return self.selected_command(tag, other).await;
            }
        }
        Flow::Continue
    }

    /// The commands of the selected state.
    async fn selected_command(&mut self, tag: &str, body: Body) -> Flow {
        match body {
            Body::Check => {
                self.sync(true).await;
                self.tagged(tag, "OK", "CHECK completed");
            }
            Body::Close => self.close(tag, true).await,
            Body::Unselect => self.close(tag, false).await,
            Body::Expunge(uids) => self.expunge(tag, uids).await,
            Body::Search(s) => self.search(tag, s).await,
            Body::Sort { criteria, search } => self.sort(tag, criteria, search).await,
            Body::Thread { algorithm, search } => self.thread(tag, algorithm, search).await,
            Body::Fetch(f) => self.fetch(tag, f).await,
            Body::Store(s) => self.store(tag, s).await,
            Body::Copy {
                uid,
                set,
                mailbox,
                move_,
            } => self.copy(tag, uid, &set, &mailbox, move_).await,
            _ => self.tagged(tag, "BAD", "Command not valid in this state"),
        }
        Flow::Continue
    }

    /// IDLE (RFC 2177): changes are reported as they happen until the client sends DONE.
    async fn idle(&mut self, tag: &str) -> Flow {
        self.sync(true).await;
        self.conn.send_raw(b"+ idling\r\n");
        let timeout = self.ctx.config.imap.idle_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.conn.rbuf.contains(&b'\n') {
                break;
            }
            if self.conn.flush().await.is_err() {
                return Flow::Close;
            }
            enum Woke {
                Input(Result<(), ReadError>),
                Changed,
            }
            let woke = {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let user = self.user.as_ref().map(|u| u.id);
                let Session {
                    conn,
                    changes,
                    shutdown,
                    ..
                } = self;
                tokio::select! {
                    r = conn.fill(remaining, Some(shutdown), crate::conn::COMMAND_READ) => Woke::Input(r),
                    _ = wait_for(changes, user) => Woke::Changed,
                }
            };
            match woke {
                Woke::Changed => {
                    self.dirty = true;
                    self.sync(true).await;
                }
                Woke::Input(Ok(())) => {}
                Woke::Input(Err(ReadError::Timeout)) => {
                    self.untagged("BYE Autologout; idle for too long");
                    return Flow::Close;
                }
                Woke::Input(Err(ReadError::Shutdown)) => {
                    self.untagged("BYE [UNAVAILABLE] Server shutting down");
                    return Flow::Close;
                }
                Woke::Input(Err(_)) => return Flow::Close,
            }
        }
        let Some(line) = self.read_line(timeout).await else {
            return Flow::Close;
        };
        if line.eq_ignore_ascii_case(b"DONE") {
            self.sync(true).await;
            self.tagged(tag, "OK", "IDLE terminated");
        } else {
            self.tagged(tag, "BAD", "Expected DONE to end IDLE");
        }
        Flow::Continue
    }
}

/// Waits for an announcement about `user`'s mailbox (or a lag, after which anything may have
/// changed).
async fn wait_for(changes: &mut broadcast::Receiver<i64>, user: Option<i64>) {
    loop {
        match changes.recv().await {
            Ok(u) if Some(u) == user => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The command's name for the metrics (`FETCH`, `UID FETCH`), from a command that parsed.
fn verb(raw: &[u8]) -> String {
    let line = raw
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut words = line.split(|&b| b == b' ').skip(1);
    let word =
        |w: Option<&[u8]>| String::from_utf8_lossy(w.unwrap_or_default()).to_ascii_uppercase();
    let first = word(words.next());
    if first == "UID" {
        format!("UID {}", word(words.next()))
    } else {
        first
    }
}
