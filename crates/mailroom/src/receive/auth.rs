//! STARTTLS (RFC 3207) and AUTH (RFC 4954), and what submission (RFC 6409) asks of a session
//! before it may send: TLS, then a user, then addresses of that user only.
//!
//! **STARTTLS injection** (CVE-2011-0411): a client that pipelines commands after STARTTLS
//! would have them read *after* the handshake, as if they had come under TLS, though anyone on
//! the path could have written them. A STARTTLS followed by anything in the same read is
//! refused, and what followed it is discarded; the session stays in clear.

use base64::Engine;
use mailroom_proto::smtp::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{Flow, Mode, Session, State};
use crate::conn::Line;
use crate::directory::login::{self, Login};
use crate::limits::Lockout;
use mailroom_proto::scram::ClientFirst;

/// What a SASL exchange produced.
enum Credentials {
    /// A login name and a password.
    Given(String, String),
    /// The client cancelled, or the exchange failed; the reply says why.
    Failed(Reply),
    /// The connection ended.
    Gone,
}

/// A SASL response (RFC 4954 §4): base64, `=` for empty (callers check `*` first).
fn b64(s: &str) -> Option<Vec<u8>> {
    mailroom_proto::sasl::decode_response(s.as_bytes()).ok()
}

fn cancelled() -> Reply {
    Reply::code(501, "5.7.0", "Authentication cancelled")
}

fn undecodable() -> Reply {
    Reply::code(
        501,
        "5.5.2",
        "Cannot decode the response (it must be base64)",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// STARTTLS.
    pub(super) async fn starttls(&mut self) -> Flow {
        if matches!(self.state, State::Connected) {
            self.reply(Reply::code(503, "5.5.1", "Send EHLO first"));
            return Flow::Continue;
        }
        match self.ctx.registry.verb_offered("STARTTLS", self.facts()) {
            None => {
                self.reply(Reply::code(502, "5.5.1", "Command not implemented"));
                return Flow::Continue;
            }
            Some(false) if self.conn.tls().is_some() => {
                self.reply(Reply::code(503, "5.5.1", "TLS is already active"));
                return Flow::Continue;
            }
            Some(false) => {
                self.reply(Reply::code(
                    454,
                    "4.7.0",
                    "TLS not available on this listener now",
                ));
                return Flow::Continue;
            }
            Some(true) => {}
        }
        if self.conn.has_pending_input() {
            self.conn.rbuf.clear();
            tracing::warn!(peer = %self.peer, "commands pipelined after STARTTLS discarded");
            self.reply(Reply::code(
                554,
                "5.5.0",
                "Commands sent after STARTTLS were discarded and TLS was not started: send \
                 STARTTLS alone and wait for its reply (RFC 3207 section 4.2)",
            ));
            return Flow::Continue;
        }
        let Some(acceptor) = self.ctx.tls.as_ref().and_then(|t| t.acceptor().ok()) else {
            self.reply(Reply::code(454, "4.7.0", "TLS not available now"));
            return Flow::Continue;
        };
        let timeout = self
            .ctx
            .tls
            .as_ref()
            .map(|t| t.handshake_timeout)
            .unwrap_or_default();
        self.reply(Reply::code(220, "2.0.0", "Ready to start TLS"));
        match self.conn.start_tls(&acceptor, timeout).await {
            Ok(info) => {
                tracing::debug!(peer = %self.peer, tls = %info, "TLS started");
                // RFC 3207 §4.2: everything learnt before TLS is forgotten; EHLO again.
                self.state = State::Connected;
                self.org = Default::default();
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Flow::Close
            }
        }
    }

    /// AUTH mechanism [initial-response].
    pub(super) async fn auth(&mut self, arg: &str) -> Flow {
        let refusal = match &self.state {
            State::Connected => Some(Reply::code(503, "5.5.1", "Send EHLO first")),
            State::Mail(..) => Some(Reply::code(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            )),
            State::Ready(_) if self.user.is_some() => {
                Some(Reply::code(503, "5.5.1", "Already authenticated"))
            }
            State::Ready(_) => match self.ctx.registry.verb_offered("AUTH", self.facts()) {
                None => Some(Reply::code(502, "5.5.1", "Command not implemented")),
                Some(true) => None,
                Some(false) if self.mode == Mode::Mx => Some(Reply::code(
                    502,
                    "5.5.1",
                    "AUTH is offered on the submission service only",
                )),
                Some(false) => Some(Reply::code(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism: use STARTTLS first",
                )),
            },
        };
        if let Some(r) = refusal {
            self.reply(r);
            return Flow::Continue;
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let ctx = self.ctx.clone();
        let creds = match mechanism.as_str() {
            "PLAIN" => self.sasl_plain(initial).await,
            "LOGIN" => self.sasl_login(initial).await,
            "SCRAM-SHA-256" => match self.sasl_scram(initial).await {
                Ok(outcome) => return self.logged_in(outcome, &mechanism).await,
                Err(c) => c,
            },
            _ => Credentials::Failed(Reply::code(
                504,
                "5.5.4",
                format!(
                    "Unrecognized authentication mechanism {mechanism} (SCRAM-SHA-256, PLAIN \
                     and LOGIN are offered)"
                ),
            )),
        };
        let (name, pass) = match creds {
            Credentials::Given(n, p) => (n, p),
            Credentials::Failed(r) => {
                self.reply(r);
                return Flow::Continue;
            }
            Credentials::Gone => return Flow::Close,
        };
        let outcome = login::login(
            ctx.store.as_ref(),
            &ctx.config,
            &ctx.auth,
            self.peer.ip(),
            "submission",
            &name,
            &pass,
        )
        .await;
        self.logged_in(outcome, &mechanism).await
    }

    /// Answers the outcome of a login by `mechanism`.
    async fn logged_in(&mut self, outcome: Login, mechanism: &str) -> Flow {
        let ctx = self.ctx.clone();
        match outcome {
            Login::Accepted(user) => {
                tracing::info!(peer = %self.peer, user = %user.address, %mechanism, "authenticated");
                self.user = Some(user);
                self.reply(Reply::code(235, "2.7.0", "Authentication successful"));
            }
            Login::Refused { delay } => {
                tokio::time::sleep(delay).await;
                self.reply(Reply::code(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid",
                ));
                self.auth_failures += 1;
                if self.auth_failures >= ctx.config.submission.max_auth_failures {
                    let host = ctx.config.server.hostname.clone();
                    self.reply(Reply::code(
                        421,
                        "4.7.0",
                        format!("{host} Too many failed authentications, closing connection"),
                    ));
                    return Flow::Close;
                }
            }
            Login::LockedOut(what) => {
                let who = match what {
                    Lockout::Address => "from your address",
                    Lockout::Account => "for this account",
                };
                tracing::info!(peer = %self.peer, "authentication refused: locked out {who}");
                self.reply(Reply::code(
                    454,
                    "4.7.0",
                    format!("Too many failed authentications {who}; try again later"),
                ));
            }
            Login::Unavailable(e) => {
                tracing::error!(error = %e, "user lookup failed");
                self.reply(Reply::code(
                    454,
                    "4.7.0",
                    "Temporary authentication failure, try again later",
                ));
            }
        }
        Flow::Continue
    }

    /// One client response to a `334` challenge, decoded; `Err` is the exchange's end.
    async fn response(&mut self, challenge: &str) -> Result<Vec<u8>, Credentials> {
        self.conn.send(&Reply::plain(334, challenge));
        let line = match self.read_line().await {
            Some(Line::Complete(l)) => l,
            Some(Line::TooLong) => {
                return Err(Credentials::Failed(Reply::code(
                    500,
                    "5.5.6",
                    "Authentication exchange line is too long",
                )))
            }
            None => return Err(Credentials::Gone),
        };
        let text = String::from_utf8_lossy(&line);
        if text.trim() == "*" {
            return Err(Credentials::Failed(cancelled()));
        }
        b64(&text).ok_or(Credentials::Failed(undecodable()))
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. Acting for another user
    /// (an authzid that is not the authcid) is not offered.
    async fn sasl_plain(&mut self, initial: Option<String>) -> Credentials {
        let decoded = match initial {
            Some(i) if i == "*" => return Credentials::Failed(cancelled()),
            Some(i) => match b64(&i) {
                Some(d) => d,
                None => return Credentials::Failed(undecodable()),
            },
            None => match self.response("").await {
                Ok(d) => d,
                Err(c) => return c,
            },
        };
        match mailroom_proto::pop3::sasl_plain(&decoded) {
            Some((authz, authc, pass))
                if authz.is_empty() || authz.eq_ignore_ascii_case(&authc) =>
            {
                Credentials::Given(authc, pass)
            }
            Some(_) => Credentials::Failed(Reply::code(
                535,
                "5.7.8",
                "Authentication credentials invalid: acting for another user is not allowed",
            )),
            None => Credentials::Failed(Reply::code(
                501,
                "5.5.2",
                "Malformed PLAIN response (RFC 4616)",
            )),
        }
    }

    /// SCRAM-SHA-256 (RFC 7677, RFC 5802): the client's first message, the server's (salt and
    /// iterations), the client's proof; on success the server's signature goes in a last `334`
    /// that the client answers with an empty line (RFC 4954 §4), then `235`.
    async fn sasl_scram(&mut self, initial: Option<String>) -> Result<Login, Credentials> {
        let first = match initial {
            Some(i) if i == "*" => return Err(Credentials::Failed(cancelled())),
            Some(i) => b64(&i).ok_or(Credentials::Failed(undecodable()))?,
            None => self.response("").await?,
        };
        let first = ClientFirst::parse(&first).map_err(|e| {
            Credentials::Failed(Reply::code(501, "5.5.2", format!("{e} (RFC 5802)")))
        })?;
        if first
            .authzid
            .as_ref()
            .is_some_and(|a| !a.eq_ignore_ascii_case(&first.username))
        {
            return Err(Credentials::Failed(Reply::code(
                535,
                "5.7.8",
                "Authentication credentials invalid: acting for another user is not allowed",
            )));
        }
        let ctx = self.ctx.clone();
        let pending = match login::scram_start(
            ctx.store.as_ref(),
            &ctx.config,
            &ctx.auth,
            self.peer.ip(),
            "submission",
            first,
        )
        .await
        {
            Ok(p) => p,
            Err(outcome) => return Ok(outcome),
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let last = self
            .response(&engine.encode(pending.server_first()))
            .await?;
        let (outcome, server_final) = pending.finish(&last);
        if let Some(v) = server_final {
            let done = self.response(&engine.encode(v)).await?;
            if !done.is_empty() {
                return Err(Credentials::Failed(Reply::code(
                    501,
                    "5.5.2",
                    "The response to the server's signature must be empty (RFC 4954 section 4)",
                )));
            }
        }
        Ok(outcome)
    }

    /// LOGIN (draft-murchison-sasl-login): the name, then the password, each asked for.
    async fn sasl_login(&mut self, initial: Option<String>) -> Credentials {
        let name = match initial {
            Some(i) if i == "*" => return Credentials::Failed(cancelled()),
            Some(i) => match b64(&i) {
                Some(d) => d,
                None => return Credentials::Failed(undecodable()),
            },
            // "Username:" and "Password:", as every client of this mechanism expects.
            None => match self.response("VXNlcm5hbWU6").await {
                Ok(d) => d,
                Err(c) => return c,
            },
        };
        let pass = match self.response("UGFzc3dvcmQ6").await {
            Ok(d) => d,
            Err(c) => return c,
        };
        match (String::from_utf8(name), String::from_utf8(pass)) {
            (Ok(n), Ok(p)) => Credentials::Given(n, p),
            _ => Credentials::Failed(Reply::code(
                501,
                "5.5.2",
                "The name and password must be UTF-8",
            )),
        }
    }

    /// On a submission listener, the refusal of MAIL before TLS and AUTH, or of a sender the
    /// user may not send as.
    pub(super) async fn submission_gate(&self, sender: Option<&str>) -> Option<Reply> {
        if self.mode != Mode::Submission {
            return None;
        }
        let Some(user) = &self.user else {
            return Some(if self.conn.tls().is_none() {
                Reply::code(530, "5.7.0", "Must issue a STARTTLS command first")
            } else {
                Reply::code(530, "5.7.0", "Authentication required")
            });
        };
        let sender = sender?;
        self.not_theirs(user, sender, "Sender address").await
    }

    /// The refusal when `user` may not send as `address`.
    pub(super) async fn not_theirs(
        &self,
        user: &crate::store::User,
        address: &str,
        what: &str,
    ) -> Option<Reply> {
        if !self.ctx.config.submission.check_sender {
            return None;
        }
        match login::may_send_as(self.ctx.store.as_ref(), &self.ctx.config, user, address).await {
            Ok(true) => None,
            Ok(false) => Some(Reply::code(
                553,
                "5.7.1",
                format!(
                    "{what} <{address}> rejected: it is not an address of {}, who is logged in",
                    user.address
                ),
            )),
            Err(e) => {
                tracing::error!(error = %e, "directory lookup failed");
                Some(Reply::code(
                    451,
                    "4.3.0",
                    "Temporary directory failure, try again later",
                ))
            }
        }
    }

    /// The refusal when a logged-in user's message names another as its author: a From: that
    /// names no mailbox, a From:, Sender:, Resent-From: or Resent-Sender: mailbox that is not
    /// theirs, or a display name that carries a local address that is not theirs (what a reader
    /// sees as the author: issue 21, `From: "Bob <bob@example.test>" <alice@…>`).
    pub(super) async fn authors_theirs(
        &self,
        user: &crate::store::User,
        authors: &crate::ingest::headers::Authors,
    ) -> Option<Reply> {
        if !self.ctx.config.submission.check_sender {
            return None;
        }
        if authors.from.is_empty() {
            return Some(super::data::no_author());
        }
        for from in &authors.from {
            if let Some(r) = self.not_theirs(user, from, "From: address").await {
                return Some(r);
            }
        }
        for (field, address) in &authors.others {
            if let Some(r) = self
                .not_theirs(user, address, &format!("{field}: address"))
                .await
            {
                return Some(r);
            }
        }
        let cfg = &self.ctx.config;
        for name in &authors.names {
            for address in crate::ingest::headers::addresses_in(name) {
                let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
                if !(cfg.is_local_domain(domain) || self.ctx.org.accepts(domain)) {
                    continue;
                }
                if let Some(r) = self
                    .not_theirs(user, &address, "The name shown with the author carries")
                    .await
                {
                    return Some(r);
                }
            }
        }
        None
    }
}
