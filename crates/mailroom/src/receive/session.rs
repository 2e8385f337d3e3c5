//! One SMTP session (RFC 5321 §3, §4): the state machine and the command loop.
//!
//! The session and the transaction are separate: [`State`] says where the session is (connected,
//! greeted, in a transaction) and a [`Transaction`] lives from MAIL to its end (`250` after the
//! message, RSET, a new EHLO, or a failure). A transaction exists only inside
//! [`State::Mail`], with the greeting it follows, so an impossible combination (a transaction
//! without a greeting) cannot be built; handlers match on the state and replace it.
//!
//! Every reply leaves through [`Session::reply`], the greeting and the closing `421`s included:
//! one place that counts errors, logs, and applies enhanced status codes.

use std::net::SocketAddr;
use std::sync::Arc;

use mailroom_proto::smtp::command::{self, Command, CommandError};
use mailroom_proto::smtp::params::ParamError;
use mailroom_proto::smtp::{MailParams, Reply, ReversePath};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::Context;
use crate::conn::{Conn, Line, ReadError};
use crate::ids::QueueId;
use crate::ingest::AcceptedRcpt;
use crate::tls::Stream;

/// What the client said in EHLO or HELO.
#[derive(Debug, Clone)]
pub struct Helo {
    /// The name it gave.
    pub name: String,
    /// True for EHLO (extensions in use).
    pub esmtp: bool,
}

/// A mail transaction (RFC 5321 §3.3), from MAIL to its end.
#[derive(Debug)]
pub struct Transaction {
    /// Assigned at MAIL; appears in the Received header and the final reply.
    pub queue_id: QueueId,
    /// The reverse path.
    pub from: ReversePath,
    /// MAIL parameters.
    pub params: MailParams,
    /// Recipients accepted so far.
    pub rcpts: Vec<AcceptedRcpt>,
    /// The text received so far, if the message is being sent with BDAT chunks.
    pub bdat: Option<Box<super::data::Text>>,
    /// The organization metadata sent before MAIL (`X-ORG-META`).
    pub org_meta: Option<crate::model::OrgMeta>,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from other servers (and local programs): relaying needs a trusted network.
    Mx,
    /// Message submission (RFC 6409): every transaction needs an authenticated user.
    Submission,
}

/// Where the session is.
#[derive(Debug)]
pub enum State {
    /// Connected; no EHLO/HELO yet.
    Connected,
    /// Greeted; no transaction.
    Ready(Helo),
    /// In a transaction (boxed: it is much larger than the other states).
    Mail(Helo, Box<Transaction>),
}

/// Whether the session goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Close the connection (after flushing).
    Close,
}

/// One SMTP session.
pub struct Session<S> {
    pub(super) conn: Conn<S>,
    pub(super) ctx: Arc<Context>,
    pub(super) peer: SocketAddr,
    pub(super) state: State,
    pub(super) org: super::org::OrgSession,
    pub(super) mode: Mode,
    /// The user who authenticated (SMTP AUTH), if one did.
    pub(super) user: Option<crate::store::User>,
    /// Failed AUTH attempts in this session.
    pub(super) auth_failures: u32,
    errors: u32,
    shutdown: watch::Receiver<bool>,
    /// When the session began to wait for the command line it is reading: the whole line must
    /// come within `smtp.command_timeout` (issue 21: the timeout began again at every byte, so a
    /// byte a second held a connection for ever).
    line_since: Option<tokio::time::Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session on an accepted connection (in clear, or under implicit TLS), for a listener
    /// of this mode.
    pub fn new(
        stream: Stream<S>,
        peer: SocketAddr,
        ctx: Arc<Context>,
        shutdown: watch::Receiver<bool>,
        mode: Mode,
    ) -> Self {
        let max_line = line_limit(&ctx.config, mode);
        Session {
            conn: Conn::new(stream, max_line, ctx.config.smtp.write_timeout),
            ctx,
            peer,
            state: State::Connected,
            org: Default::default(),
            mode,
            user: None,
            auth_failures: 0,
            errors: 0,
            shutdown,
            line_since: None,
        }
    }

    fn host(&self) -> &str {
        &self.ctx.config.server.hostname
    }

    /// Reads one more line from the client (an AUTH response), flushing what is queued first;
    /// `None` when the connection ends or the command timeout passes.
    pub(super) async fn read_line(&mut self) -> Option<Line> {
        self.line_or_why().await.ok()
    }

    /// The next line, which must come whole within `smtp.command_timeout` of when the wait
    /// for it began (`line_since`), however it is split.
    async fn line_or_why(&mut self) -> Result<Line, ReadError> {
        let since = *self
            .line_since
            .get_or_insert_with(tokio::time::Instant::now);
        let deadline = since + self.ctx.config.smtp.command_timeout;
        let line = self
            .conn
            .line_by(deadline, Some(&mut self.shutdown))
            .await?;
        self.line_since = None;
        Ok(line)
    }

    /// Queues a reply, counting errors.
    pub(super) fn reply(&mut self, r: Reply) {
        if r.is_error() {
            self.errors += 1;
        }
        tracing::debug!(peer = %self.peer, reply = %r, "smtp reply");
        self.conn.send(&r);
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let greeting = Reply::plain(220, format!("{} ESMTP mailroom", self.host()));
        self.reply(greeting);
        loop {
            let line = match self.line_or_why().await {
                Ok(l) => l,
                Err(e) => {
                    match e {
                        ReadError::Timeout => {
                            let r = Reply::code(
                                421,
                                "4.4.2",
                                format!("{} Error: timeout exceeded", self.host()),
                            );
                            self.reply(r);
                        }
                        ReadError::Shutdown => {
                            let r = Reply::code(
                                421,
                                "4.3.2",
                                format!("{} Service shutting down", self.host()),
                            );
                            self.reply(r);
                        }
                        ReadError::Eof | ReadError::Io(_) => {}
                    }
                    break;
                }
            };
            let flow = match line {
                Line::TooLong => {
                    let max = line_limit(&self.ctx.config, self.mode);
                    self.reply(Reply::code(
                        500,
                        "5.5.2",
                        format!("Line too long (limit {max} octets)"),
                    ));
                    Flow::Continue
                }
                Line::Complete(l) => self.command(&l).await,
            };
            if flow == Flow::Close {
                break;
            }
            if self.errors >= self.ctx.config.smtp.max_errors {
                let r = Reply::code(
                    421,
                    "4.7.0",
                    format!("{} Too many errors, closing connection", self.host()),
                );
                self.reply(r);
                break;
            }
        }
        self.conn.close().await;
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                let r = match e {
                    CommandError::Unrecognized | CommandError::Encoding => {
                        Reply::code(500, "5.5.2", "Command unrecognized")
                    }
                    CommandError::Syntax(s) => Reply::code(501, "5.5.4", format!("Syntax: {s}")),
                    CommandError::Sender(e) => {
                        Reply::code(501, "5.1.7", format!("Bad sender address syntax: {e}"))
                    }
                    CommandError::Recipient(e) => {
                        Reply::code(501, "5.1.3", format!("Bad recipient address syntax: {e}"))
                    }
                    CommandError::Param(e) => param_reply(&e),
                    _ => Reply::code(500, "5.5.2", "Command unrecognized"),
                };
                self.reply(r);
                return Flow::Continue;
            }
        };
        tracing::trace!(peer = %self.peer, verb = cmd.verb(), "smtp command");
        match cmd {
            Command::Ehlo(name) => self.helo(name, true),
            Command::Helo(name) => self.helo(name, false),
            Command::Mail { from, params } => {
                let r = self.mail(from, params).await;
                self.reply(r);
            }
            Command::Rcpt { to, params } => {
                let r = self.rcpt(to, params).await;
                self.reply(r);
            }
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                self.state = match std::mem::replace(&mut self.state, State::Connected) {
                    State::Connected => State::Connected,
                    State::Ready(h) | State::Mail(h, _) => State::Ready(h),
                };
                self.reply(Reply::code(250, "2.0.0", "Reset OK"));
            }
            Command::Noop => self.reply(Reply::code(250, "2.0.0", "OK")),
            Command::Quit => {
                let r = Reply::code(221, "2.0.0", format!("{} Bye", self.host()));
                self.reply(r);
                return Flow::Close;
            }
            Command::Vrfy(_) => self.reply(Reply::code(
                252,
                "2.1.5",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn(_) => self.reply(Reply::code(502, "5.5.1", "EXPN is not available")),
            Command::Help(_) => self.reply(Reply::lines(
                214,
                vec![
                    "2.0.0 mailroom speaks SMTP (RFC 5321) with the extensions listed in EHLO"
                        .into(),
                    "2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT"
                        .into(),
                    "2.0.0 End of HELP".into(),
                ],
            )),
            Command::OrgAuth(arg) => {
                let r = self.org_auth(&arg);
                self.reply(r);
            }
            Command::LinkState(arg) => {
                let r = self.linkstate(&arg).await;
                self.reply(r);
            }
            Command::OrgMeta(arg) => {
                let r = self.org_meta(&arg).await;
                self.reply(r);
            }
            Command::OrgTrack(arg) => {
                let r = self.org_track(&arg).await;
                self.reply(r);
            }
            Command::OrgMove(arg) => {
                let r = self.org_move(&arg).await;
                self.reply(r);
            }
            Command::StartTls => return self.starttls().await,
            Command::Auth(arg) => return self.auth(&arg).await,
            Command::Unimplemented(_) => {
                self.reply(Reply::code(502, "5.5.1", "Command not implemented"))
            }
            _ => self.reply(Reply::code(502, "5.5.1", "Command not implemented")),
        }
        Flow::Continue
    }

    fn helo(&mut self, name: String, esmtp: bool) {
        // EHLO/HELO ends any transaction (RFC 5321 §4.1.4).
        self.state = State::Ready(Helo { name, esmtp });
        let peer_ip = self.peer.ip();
        if !esmtp {
            self.conn.set_enhanced(false);
            let r = Reply::plain(250, format!("{} Hello [{peer_ip}]", self.host()));
            self.reply(r);
            return;
        }
        let mut lines = vec![format!("{} Hello [{peer_ip}]", self.host())];
        lines.extend(self.ctx.registry.ehlo_lines(&self.ctx.config, self.facts()));
        self.conn
            .set_enhanced(self.ctx.registry.has("ENHANCEDSTATUSCODES"));
        self.reply(Reply::lines(250, lines));
    }
}

/// The reply to a malformed or unsupported parameter.
pub(super) fn param_reply(e: &ParamError) -> Reply {
    match e {
        ParamError::Unknown(k) => Reply::code(555, "5.5.4", format!("Unsupported parameter {k}")),
        ParamError::Value(k) => {
            Reply::code(501, "5.5.4", format!("Invalid value for parameter {k}"))
        }
        ParamError::Duplicate(k) => Reply::code(501, "5.5.4", format!("Parameter {k} given twice")),
        ParamError::Syntax(w) => Reply::code(501, "5.5.4", format!("Malformed parameter {w:?}")),
        _ => Reply::code(501, "5.5.4", "Invalid parameter"),
    }
}

/// RFC 4954 §4 lets an AUTH command (with its initial response) and each response line run to
/// 12,288 octets; the submission listener, which offers AUTH, takes lines that long even when
/// `smtp.max_command_line` is shorter.
pub const AUTH_LINE: usize = 12_288;

fn line_limit(config: &crate::config::Config, mode: Mode) -> usize {
    match mode {
        Mode::Mx => config.smtp.max_command_line,
        Mode::Submission => config.smtp.max_command_line.max(AUTH_LINE),
    }
}
