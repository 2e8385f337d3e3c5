//! The client side of the organization channel: connect to another server of the organization
//! over SMTP, prove membership with `X-ORG-AUTH` (and check the other server's proof), then
//! exchange state with `X-LINKSTATE` or hand over shadow discharges with `X-ORG-META`.
//!
//! Used by `org join`, by the organization service (replication and probes), and by outbound
//! delivery to another server of the organization.

use std::net::SocketAddr;
use std::time::Duration;

use mailroom_proto::smtp::client::Response;
use mailroom_proto::smtp::org::{self as wire, Assembler};
use thiserror::Error;

use super::auth::{Side, Transcript};
use super::{random_hex, Membership, OrgState, MAX_STATE};
use crate::client::{Conn, ConnError};
use crate::model::meta::{MoveMail, MoveUser};
use crate::track::{Event, TrackFilter};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why the channel failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The server could not be reached, or the connection broke.
    #[error("{0}")]
    Connection(String),
    /// The server does not offer the organization's verbs (the seed's broken server).
    #[error("{server} does not offer {verb} (its EHLO lists: {advertised})")]
    NoOrgVerbs {
        /// The server.
        server: String,
        /// The missing verb.
        verb: &'static str,
        /// What it advertises.
        advertised: String,
    },
    /// Authentication failed (either side).
    #[error("{0}")]
    Auth(String),
    /// The server refused a command or sent nonsense.
    #[error("{0}")]
    Protocol(String),
}

impl From<ConnError> for ChannelError {
    fn from(e: ConnError) -> ChannelError {
        ChannelError::Connection(e.0)
    }
}

/// Timeouts of the channel.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// Each command's reply.
    pub command: Duration,
}

impl Timeouts {
    /// The configured ones (`org.connect_timeout`, `org.command_timeout`).
    pub fn of(c: &crate::config::OrgConfig) -> Timeouts {
        Timeouts {
            connect: c.connect_timeout,
            command: c.command_timeout,
        }
    }
}

/// An authenticated connection to another server of the organization.
pub struct Channel {
    conn: Conn,
    /// The server's name.
    pub server: String,
    t: Timeouts,
}

/// Resolves `host:port` (an IP address or a name) to socket addresses.
pub async fn resolve(address: &str) -> Result<Vec<SocketAddr>, ChannelError> {
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| ChannelError::Connection(format!("cannot resolve {address}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(ChannelError::Connection(format!(
            "{address} has no address"
        )));
    }
    Ok(addrs)
}

impl Channel {
    /// Connects to `server` at `address` and authenticates both ways.
    pub async fn open(
        server: &str,
        address: &str,
        me: &Membership,
        t: Timeouts,
    ) -> Result<Channel, ChannelError> {
        let addrs = resolve(address).await?;
        let mut last = ChannelError::Connection(format!("{server} ({address}) has no address"));
        for addr in addrs {
            // Over TLS whenever the other server offers it (its verbs then travel encrypted).
            match Conn::open_opportunistic(server, addr, &me.me, t.connect, t.command, true).await {
                Ok(conn) => {
                    let mut c = Channel {
                        conn,
                        server: server.to_string(),
                        t,
                    };
                    c.authenticate(me).await?;
                    return Ok(c);
                }
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }

    /// Wraps a connection already greeted (outbound delivery's), authenticating it.
    pub async fn over(
        conn: Conn,
        server: &str,
        me: &Membership,
        t: Timeouts,
    ) -> Result<Conn, ChannelError> {
        let mut c = Channel {
            conn,
            server: server.to_string(),
            t,
        };
        c.authenticate(me).await?;
        Ok(c.conn)
    }

    /// Whether the channel runs over TLS, and how (`over TLSv1.3 …`, `without TLS (…)`).
    pub fn tls(&self) -> (bool, String) {
        (self.conn.tls.is_some(), self.conn.tls_detail())
    }

    /// The EHLO keywords the server advertises after organization authentication.
    pub fn keywords(&self) -> Vec<String> {
        self.conn.caps.keywords.clone()
    }

    /// Whether the server's state has the same digest as `state` (the link-state versions
    /// agree), without exchanging states.
    pub async fn same_digest(&mut self, state: &OrgState) -> Result<bool, ChannelError> {
        self.require("X-LINKSTATE")?;
        let digest = format!("X-LINKSTATE DIGEST {}", state.digest());
        let r = self.ok(&digest, "X-LINKSTATE DIGEST").await?;
        Ok(r.lines.first().is_some_and(|l| l.starts_with("SAME")))
    }

    fn require(&self, verb: &'static str) -> Result<(), ChannelError> {
        if self.conn.caps.keywords.iter().any(|k| k == verb) {
            return Ok(());
        }
        Err(ChannelError::NoOrgVerbs {
            server: self.server.clone(),
            verb,
            advertised: self.conn.caps.keywords.join(" "),
        })
    }

    async fn command(&mut self, line: &str) -> Result<Response, ChannelError> {
        self.conn
            .send(format!("{line}\r\n").as_bytes(), self.t.command)
            .await?;
        Ok(self.conn.read(self.t.command).await?)
    }

    async fn authenticate(&mut self, me: &Membership) -> Result<(), ChannelError> {
        self.require("X-ORG-AUTH")?;
        let cnonce = random_hex(16);
        let r = self
            .command(&format!("X-ORG-AUTH HELLO {} {} {cnonce}", me.org, me.me))
            .await?;
        if r.code != 334 {
            return Err(ChannelError::Auth(format!(
                "{} refused organization authentication: {r}",
                self.server
            )));
        }
        let text = r.lines.first().cloned().unwrap_or_default();
        let mut w = text.split_whitespace();
        let (Some(snonce), Some(sproof)) = (w.next(), w.next()) else {
            return Err(ChannelError::Protocol(format!(
                "{} sent a malformed challenge: {r}",
                self.server
            )));
        };
        let binding = crate::org::auth::binding(self.conn.tls.as_ref());
        let transcript = Transcript {
            org: &me.org,
            client: &me.me,
            server: &self.server,
            client_nonce: &cnonce,
            server_nonce: snonce,
            binding: &binding,
        };
        if !transcript.verify(&me.secret, Side::Server, sproof) {
            // Do not send a proof to a server that could not prove itself.
            let _ = self.command("QUIT").await;
            return Err(ChannelError::Auth(format!(
                "{} could not prove that it belongs to the organization (wrong secret, or not \
                 the server {} it claims to be)",
                self.server, self.server
            )));
        }
        let proof = transcript.proof(&me.secret, Side::Client);
        let r = self.command(&format!("X-ORG-AUTH PROOF {proof}")).await?;
        if r.code != 235 {
            return Err(ChannelError::Auth(format!(
                "{} refused this server's proof: {r}",
                self.server
            )));
        }
        // The verbs that need authentication are advertised from now on.
        self.conn.ehlo_again().await?;
        Ok(())
    }

    /// Sends a command and expects a positive reply; `what` names it in the error.
    async fn ok(&mut self, line: &str, what: &str) -> Result<Response, ChannelError> {
        let r = self.command(line).await?;
        if !r.is_success() {
            return Err(ChannelError::Protocol(format!(
                "{} refused {what}: {r}",
                self.server
            )));
        }
        Ok(r)
    }

    /// Sends `data` as chunks of `verb` (`VERB FIRST|NEXT|LAST data`).
    async fn push(&mut self, verb: &str, data: &[u8], what: &str) -> Result<(), ChannelError> {
        for chunk in wire::chunks(data) {
            self.ok(&format!("{verb} {chunk}"), what).await?;
        }
        Ok(())
    }

    /// Fetches a transfer with `VERB PULL`, chunk by chunk, until its last chunk.
    async fn pull(&mut self, verb: &str) -> Result<Vec<u8>, ChannelError> {
        let bad = |server: &str, e: wire::OrgError| {
            ChannelError::Protocol(format!("{server} sent a bad chunk: {e}"))
        };
        let mut a = Assembler::new(MAX_STATE);
        loop {
            let r = self
                .ok(&format!("{verb} PULL"), &format!("{verb} PULL"))
                .await?;
            let text = r.lines.first().cloned().unwrap_or_default();
            let chunk = wire::parse_chunk(&text).map_err(|e| bad(&self.server, e))?;
            // (A LAST without FIRST is refused by the assembler: the loop always ends.)
            if let Some(data) = a.push(chunk).map_err(|e| bad(&self.server, e))? {
                return Ok(data);
            }
        }
    }

    /// Exchanges state: compares digests, and when they differ sends ours and fetches theirs.
    /// Returns the other server's state when it differed.
    pub async fn sync(&mut self, state: &OrgState) -> Result<Option<OrgState>, ChannelError> {
        self.require("X-LINKSTATE")?;
        let digest = format!("X-LINKSTATE DIGEST {}", state.digest());
        let r = self.ok(&digest, "X-LINKSTATE DIGEST").await?;
        if r.lines.first().is_some_and(|l| l.starts_with("SAME")) {
            return Ok(None);
        }
        self.push("X-LINKSTATE", &state.to_json(), "a link-state chunk")
            .await?;
        let data = self.pull("X-LINKSTATE").await?;
        let theirs = OrgState::from_json(&data, &state.id)
            .map_err(|e| ChannelError::Protocol(format!("{}: {e}", self.server)))?;
        Ok(Some(theirs))
    }

    /// Sends the discharge of shadow copies: the organization ids of messages this server has
    /// delivered or handed on, which the other server may stop holding.
    pub async fn discharge(&mut self, ids: &[String]) -> Result<(), ChannelError> {
        self.require("X-ORG-META")?;
        for batch in ids.chunks(16) {
            let line = format!("X-ORG-META DONE {}", batch.join(" "));
            self.ok(&line, "X-ORG-META DONE").await?;
        }
        Ok(())
    }

    /// The other server's tracking events for `filter`.
    pub async fn track(&mut self, filter: &TrackFilter) -> Result<Vec<Event>, ChannelError> {
        self.require("X-ORG-TRACK")?;
        let q = STANDARD.encode(serde_json::to_vec(filter).unwrap_or_default());
        self.ok(&format!("X-ORG-TRACK QUERY {q}"), "X-ORG-TRACK")
            .await?;
        let data = self.pull("X-ORG-TRACK").await?;
        serde_json::from_slice(&data).map_err(|e| {
            ChannelError::Protocol(format!("{} sent unreadable events: {e}", self.server))
        })
    }

    /// `X-ORG-MOVE USER`: announces (or, with `finish`, completes) a mailbox moving there.
    pub async fn move_user(&mut self, u: &MoveUser) -> Result<(), ChannelError> {
        self.require("X-ORG-MOVE")?;
        let data = STANDARD.encode(serde_json::to_vec(u).unwrap_or_default());
        let what = format!("the mailbox of {}", u.address);
        self.ok(&format!("X-ORG-MOVE USER {data}"), &what).await?;
        Ok(())
    }

    /// `X-ORG-MOVE MAIL` and the text: one message of the moving mailbox.
    pub async fn move_mail(&mut self, m: &MoveMail, text: &[u8]) -> Result<(), ChannelError> {
        let data = STANDARD.encode(serde_json::to_vec(m).unwrap_or_default());
        self.ok(&format!("X-ORG-MOVE MAIL {data}"), "a message")
            .await?;
        self.push("X-ORG-MOVE", text, "a message").await
    }

    /// Says QUIT.
    pub async fn close(self) {
        self.conn.quit().await;
    }
}
