//! One POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use mailroom_proto::pop3::{self, Command, CommandError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::{Context, MaildropLock};
use crate::config::PlaintextLogin;
use crate::conn::{Conn, Line, ReadError};
use crate::directory::login::{self, Login};
use crate::limits::Lockout;
use crate::store::{MailEntry, User};
use mailroom_proto::scram::ClientFirst;

/// Octets of a message read and written at a time.
const BLOCK: usize = 64 * 1024;

/// Longest command line accepted. RFC 2449 §4 says 255; AUTH PLAIN responses with long
/// passwords need more, so a little room is given.
const MAX_LINE: usize = 1024;

enum Phase {
    Authorization { user: Option<String>, failures: u32 },
    Transaction(Maildrop),
}

struct Maildrop {
    user: User,
    messages: Vec<MailEntry>,
    deleted: HashSet<usize>,
    _lock: MaildropLock,
}

impl Maildrop {
    /// The message numbered `n` (1-based), unless deleted or out of range.
    fn get(&self, n: u32) -> Result<(usize, &MailEntry), &'static str> {
        let i = (n as usize).checked_sub(1).ok_or("no such message")?;
        let m = self.messages.get(i).ok_or("no such message")?;
        if self.deleted.contains(&i) {
            return Err("message is deleted");
        }
        Ok((i, m))
    }

    fn live(&self) -> impl Iterator<Item = (usize, &MailEntry)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted.contains(i))
    }
}

/// One POP3 session.
pub struct Session<S> {
    conn: Conn<S>,
    ctx: Arc<Context>,
    peer: SocketAddr,
    phase: Phase,
    shutdown: watch::Receiver<bool>,
}

enum Flow {
    Continue,
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session on an accepted connection.
    pub fn new(
        stream: crate::tls::Stream<S>,
        peer: SocketAddr,
        ctx: Arc<Context>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Session {
            conn: Conn::new(stream, MAX_LINE, ctx.config.pop3.write_timeout),
            ctx,
            peer,
            phase: Phase::Authorization {
                user: None,
                failures: 0,
            },
            shutdown,
        }
    }

    fn ok(&mut self, text: &str) {
        pop3::status_line(true, text, self.conn.wbuf());
    }

    fn err(&mut self, text: &str) {
        pop3::status_line(false, text, self.conn.wbuf());
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let host = self.ctx.config.server.hostname.clone();
        self.ok(&format!("{host} mailroom POP3 ready"));
        loop {
            let line = match self.next_line().await {
                Some(l) => l,
                None => break,
            };
            let flow = match line {
                Line::TooLong => {
                    self.err("line too long");
                    Flow::Continue
                }
                Line::Complete(l) => self.command(&l).await,
            };
            if matches!(flow, Flow::Close) {
                break;
            }
        }
        self.conn.close().await;
    }

    /// The next command line, which must come whole within `pop3.idle_timeout` of the wait's
    /// start, however it is split (a byte a second does not keep the session).
    async fn next_line(&mut self) -> Option<Line> {
        let deadline = tokio::time::Instant::now() + self.ctx.config.pop3.idle_timeout;
        match self.conn.line_by(deadline, Some(&mut self.shutdown)).await {
            Ok(l) => Some(l),
            Err(ReadError::Timeout) => {
                self.err("idle too long, closing");
                None
            }
            Err(ReadError::Shutdown) => {
                self.err("[SYS/TEMP] server shutting down");
                None
            }
            Err(_) => None,
        }
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let cmd = match pop3::parse(line) {
            Ok(c) => c,
            Err(CommandError::Unknown) => {
                self.err("unknown command");
                return Flow::Continue;
            }
            Err(CommandError::Syntax(s)) => {
                self.err(&format!("syntax: {s}"));
                return Flow::Continue;
            }
            Err(_) => {
                self.err("invalid command");
                return Flow::Continue;
            }
        };
        match cmd {
            Command::Capa => {
                self.ok("Capability list follows");
                let mut caps = String::new();
                let authorization = matches!(self.phase, Phase::Authorization { .. });
                if authorization && self.stls_offered() {
                    caps.push_str("STLS\r\n");
                }
                if !authorization || self.login_allowed() {
                    caps.push_str("USER\r\nSASL SCRAM-SHA-256 PLAIN\r\n");
                }
                caps.push_str("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION mailroom\r\n.\r\n");
                self.conn.send_raw(caps.as_bytes());
                return Flow::Continue;
            }
            Command::Noop => {
                self.ok("");
                return Flow::Continue;
            }
            Command::Quit => return self.quit().await,
            Command::Stls => return self.stls().await,
            _ => {}
        }
        if matches!(self.phase, Phase::Authorization { .. }) {
            self.authorization(cmd).await
        } else {
            self.transaction(cmd).await
        }
    }

    /// Whether STLS may be used now: in clear, with a usable certificate.
    fn stls_offered(&self) -> bool {
        self.conn.tls().is_none() && self.ctx.tls.as_ref().is_some_and(|t| t.available())
    }

    /// Whether a password may be sent now (`pop3.plaintext_login`).
    fn login_allowed(&self) -> bool {
        self.conn.tls().is_some()
            || match self.ctx.config.pop3.plaintext_login {
                PlaintextLogin::Never => false,
                PlaintextLogin::Loopback => self.peer.ip().is_loopback(),
                PlaintextLogin::Always => true,
            }
    }

    /// STLS (RFC 2595 §4). Input pipelined after it is discarded and the command refused:
    /// it would otherwise be read as if it had come under TLS (CVE-2011-0411).
    async fn stls(&mut self) -> Flow {
        if !matches!(self.phase, Phase::Authorization { .. }) {
            self.err("STLS is only allowed before login");
            return Flow::Continue;
        }
        if self.conn.tls().is_some() {
            self.err("TLS is already active");
            return Flow::Continue;
        }
        let Some((acceptor, timeout)) = self
            .ctx
            .tls
            .as_ref()
            .and_then(|t| t.acceptor().ok().map(|a| (a, t.handshake_timeout)))
        else {
            self.err("STLS is not available: no usable certificate");
            return Flow::Continue;
        };
        if self.conn.has_pending_input() {
            self.conn.rbuf.clear();
            tracing::warn!(peer = %self.peer, "commands pipelined after STLS discarded");
            self.err(
                "commands sent after STLS were discarded and TLS was not started; send STLS alone",
            );
            return Flow::Continue;
        }
        self.ok("Begin TLS negotiation");
        match self.conn.start_tls(&acceptor, timeout).await {
            Ok(info) => {
                tracing::debug!(peer = %self.peer, tls = %info, "TLS started");
                // Nothing said before TLS counts after it.
                self.phase = Phase::Authorization {
                    user: None,
                    failures: 0,
                };
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Flow::Close
            }
        }
    }

    async fn authorization(&mut self, cmd: Command) -> Flow {
        if matches!(
            cmd,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. }
        ) && !self.login_allowed()
        {
            // RFC 2595 §4 / Dovecot's words: no password in clear here.
            self.err("[AUTH] Plaintext authentication disallowed on non-secure connections; use STLS first");
            return Flow::Continue;
        }
        let Phase::Authorization { user, .. } = &mut self.phase else {
            return Flow::Continue;
        };
        match cmd {
            Command::User(name) => {
                *user = Some(name);
                self.ok("send PASS");
                Flow::Continue
            }
            Command::Pass(pass) => match user.take() {
                None => {
                    self.err("send USER first");
                    Flow::Continue
                }
                Some(name) => self.login(&name, &pass).await,
            },
            Command::Auth { mechanism, initial } => {
                if mechanism.is_empty() {
                    self.ok("");
                    self.conn.send_raw(b"SCRAM-SHA-256\r\nPLAIN\r\n.\r\n");
                    return Flow::Continue;
                }
                if mechanism.eq_ignore_ascii_case("SCRAM-SHA-256") {
                    return self.scram(initial).await;
                }
                if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    self.err("unsupported SASL mechanism (SCRAM-SHA-256 and PLAIN are offered)");
                    return Flow::Continue;
                }
                let decoded = match initial {
                    Some(i) => sasl_decode(&i),
                    None => self.sasl_response("").await,
                };
                let decoded = match decoded {
                    Ok(d) => d,
                    Err(Some(why)) => {
                        self.err(why);
                        return Flow::Continue;
                    }
                    Err(None) => return Flow::Close,
                };
                match pop3::sasl_plain(&decoded) {
                    Some((authz, authc, pass))
                        if authz.is_empty() || authz.eq_ignore_ascii_case(&authc) =>
                    {
                        self.login(&authc, &pass).await
                    }
                    _ => {
                        self.err("malformed SASL PLAIN response");
                        Flow::Continue
                    }
                }
            }
            _ => {
                self.err("log in first (USER/PASS or AUTH PLAIN)");
                Flow::Continue
            }
        }
    }

    /// One SASL response to a `+` challenge (RFC 5034 §4), decoded. `Err(Some)` says why it
    /// is refused; `Err(None)`: the connection ended.
    async fn sasl_response(&mut self, challenge: &str) -> Result<Vec<u8>, Option<&'static str>> {
        self.conn.send_raw(format!("+ {challenge}\r\n").as_bytes());
        match self.next_line().await {
            Some(Line::Complete(l)) => sasl_decode(&String::from_utf8_lossy(&l)),
            Some(Line::TooLong) => Err(Some("response too long")),
            None => Err(None),
        }
    }

    /// AUTH SCRAM-SHA-256 (RFC 7677), as on submission: the server's signature goes in a last
    /// `+` challenge that the client answers with an empty line.
    async fn scram(&mut self, initial: Option<String>) -> Flow {
        let first = match initial {
            Some(i) => sasl_decode(&i),
            None => self.sasl_response("").await,
        };
        let first = match first.map(|f| ClientFirst::parse(&f)) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                self.err(&e.to_string());
                return Flow::Continue;
            }
            Err(Some(why)) => {
                self.err(why);
                return Flow::Continue;
            }
            Err(None) => return Flow::Close,
        };
        if first
            .authzid
            .as_ref()
            .is_some_and(|a| !a.eq_ignore_ascii_case(&first.username))
        {
            self.err("[AUTH] acting for another user is not allowed");
            return Flow::Continue;
        }
        let ctx = self.ctx.clone();
        let ip = self.peer.ip();
        let pending = match login::scram_start(
            ctx.store.as_ref(),
            &ctx.config,
            &ctx.guard,
            ip,
            "pop3",
            first,
        )
        .await
        {
            Ok(p) => p,
            Err(outcome) => return self.open(outcome).await,
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let last = match self
            .sasl_response(&engine.encode(pending.server_first()))
            .await
        {
            Ok(l) => l,
            Err(Some(why)) => {
                self.err(why);
                return Flow::Continue;
            }
            Err(None) => return Flow::Close,
        };
        let (outcome, server_final) = pending.finish(&last);
        if let Some(v) = server_final {
            match self.sasl_response(&engine.encode(v)).await {
                Ok(d) if d.is_empty() => {}
                Ok(_) => {
                    self.err("the response to the server's signature must be empty");
                    return Flow::Continue;
                }
                Err(Some(why)) => {
                    self.err(why);
                    return Flow::Continue;
                }
                Err(None) => return Flow::Close,
            }
        }
        self.open(outcome).await
    }

    /// Checks a name and password and opens the maildrop.
    async fn login(&mut self, name: &str, pass: &str) -> Flow {
        let ctx = self.ctx.clone();
        let ip = self.peer.ip();
        let outcome = login::login(
            ctx.store.as_ref(),
            &ctx.config,
            &ctx.guard,
            ip,
            "pop3",
            name,
            pass,
        )
        .await;
        self.open(outcome).await
    }

    /// Answers a login's outcome, opening the maildrop when it is accepted.
    async fn open(&mut self, outcome: Login) -> Flow {
        let user = match outcome {
            Login::Accepted(u) => u,
            Login::LockedOut(what) => {
                // No password is checked: a locked-out address costs no verification.
                let who = match what {
                    Lockout::Address => "from your address",
                    Lockout::Account => "for this account",
                };
                tracing::info!(peer = %self.peer, "pop3 login refused: locked out {who}");
                self.err(&format!(
                    "[AUTH] too many failed logins {who}; try again later"
                ));
                return Flow::Close;
            }
            Login::Unavailable(e) => {
                tracing::error!(error = %e, "user lookup failed");
                self.err("[SYS/TEMP] temporary failure, try again later");
                return Flow::Continue;
            }
            Login::Refused { delay } => {
                tokio::time::sleep(delay).await;
                self.err("[AUTH] invalid user name or password");
                let max = self.ctx.config.pop3.max_auth_failures;
                if let Phase::Authorization { failures, .. } = &mut self.phase {
                    *failures += 1;
                    if *failures >= max {
                        self.err("too many failed logins, closing");
                        return Flow::Close;
                    }
                }
                return Flow::Continue;
            }
        };
        let Some(lock) = MaildropLock::acquire(&self.ctx, user.id) else {
            self.err("[IN-USE] maildrop is locked by another session");
            return Flow::Continue;
        };
        let messages = match self.ctx.store.mailbox_list(user.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "mailbox listing failed");
                self.err("[SYS/TEMP] cannot open maildrop, try again later");
                return Flow::Continue;
            }
        };
        let total: u64 = messages.iter().map(|m| m.size).sum();
        let text = format!(
            "maildrop has {} message(s) ({} octets)",
            messages.len(),
            total
        );
        self.phase = Phase::Transaction(Maildrop {
            user,
            messages,
            deleted: HashSet::new(),
            _lock: lock,
        });
        self.ok(&text);
        Flow::Continue
    }

    async fn transaction(&mut self, cmd: Command) -> Flow {
        let Phase::Transaction(md) = &mut self.phase else {
            return Flow::Continue;
        };
        let reply: Result<String, String> = match cmd {
            Command::Stat => {
                let (n, size) = md
                    .live()
                    .fold((0, 0u64), |(n, s), (_, m)| (n + 1, s + m.size));
                Ok(format!("{n} {size}"))
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(None));
                let mut body = String::new();
                for (i, m) in md.live() {
                    if uidl {
                        body.push_str(&format!("{} {}\r\n", i + 1, m.uidl));
                    } else {
                        body.push_str(&format!("{} {}\r\n", i + 1, m.size));
                    }
                }
                body.push_str(".\r\n");
                let n = md.live().count();
                self.ok(&format!("{n} message(s)"));
                self.conn.send_raw(body.as_bytes());
                return Flow::Continue;
            }
            Command::List(Some(n)) => md
                .get(n)
                .map(|(_, m)| format!("{n} {}", m.size))
                .map_err(String::from),
            Command::Uidl(Some(n)) => md
                .get(n)
                .map(|(_, m)| format!("{n} {}", m.uidl))
                .map_err(String::from),
            Command::Dele(n) => match md.get(n) {
                Ok((i, _)) => {
                    md.deleted.insert(i);
                    Ok(format!("message {n} deleted"))
                }
                Err(e) => Err(e.to_string()),
            },
            Command::Rset => {
                md.deleted.clear();
                Ok(format!("maildrop has {} message(s)", md.messages.len()))
            }
            Command::Retr(n) | Command::Top(n, _) => {
                let lines = if let Command::Top(_, l) = cmd {
                    Some(l)
                } else {
                    None
                };
                let (id, size) = match md.get(n) {
                    Ok((_, m)) => (m.id, m.size),
                    Err(e) => {
                        self.err(e);
                        return Flow::Continue;
                    }
                };
                let user = md.user.id;
                return self.send_message(user, id, size, lines).await;
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => {
                Err("already logged in".to_string())
            }
            _ => Err("unknown command".to_string()),
        };
        match reply {
            Ok(t) => self.ok(&t),
            Err(t) => self.err(&t),
        }
        Flow::Continue
    }

    /// RETR or TOP: the message streamed from the store in blocks, byte-stuffed as it goes, each
    /// block written within the write deadline, so that a large message is never held whole. A
    /// failure once the `+OK` is out cannot be told to the client: the session ends.
    async fn send_message(&mut self, user: i64, id: i64, size: u64, lines: Option<u32>) -> Flow {
        let text = match self.ctx.store.mail_text(user, id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "message read failed");
                self.err("[SYS/TEMP] cannot read message");
                return Flow::Continue;
            }
        };
        let mut reader = match text.open().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "message read failed");
                self.err("[SYS/TEMP] cannot read message");
                return Flow::Continue;
            }
        };
        self.ok(&format!("{size} octets"));
        let mut w = pop3::MultilineWriter::new(lines);
        let mut buf = vec![0u8; BLOCK];
        loop {
            let n = match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "message read failed mid-response; closing");
                    return Flow::Close;
                }
            };
            w.push(&buf[..n], self.conn.wbuf());
            if self.conn.wbuf().len() >= BLOCK && self.conn.flush().await.is_err() {
                return Flow::Close;
            }
        }
        w.finish(self.conn.wbuf());
        Flow::Continue
    }

    /// QUIT: in TRANSACTION, enter UPDATE and delete what was marked (RFC 1939 §6).
    async fn quit(&mut self) -> Flow {
        let host = self.ctx.config.server.hostname.clone();
        let Phase::Transaction(md) = &mut self.phase else {
            self.ok(&format!("{host} signing off"));
            return Flow::Close;
        };
        let ids: Vec<i64> = md.deleted.iter().map(|&i| md.messages[i].id).collect();
        let user = md.user.id;
        if ids.is_empty() {
            self.ok(&format!("{host} signing off"));
            return Flow::Close;
        }
        match self.ctx.store.mail_delete(user, ids).await {
            Ok(n) => self.ok(&format!("{host} signing off ({n} message(s) deleted)")),
            Err(e) => {
                tracing::error!(error = %e, "pop3 update failed");
                self.err("[SYS/TEMP] some deleted messages not removed");
            }
        }
        Flow::Close
    }
}

/// A SASL response line decoded (RFC 5034 §4): `*` cancels, `=` is empty, else base64.
fn sasl_decode(text: &str) -> Result<Vec<u8>, Option<&'static str>> {
    use mailroom_proto::sasl::{decode_response, ResponseError};
    decode_response(text.as_bytes()).map_err(|e| {
        Some(match e {
            ResponseError::Cancelled => "authentication cancelled",
            ResponseError::NotBase64 => "the response must be base64",
        })
    })
}
