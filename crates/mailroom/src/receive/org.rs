//! The organization's verbs on the receiving side: `X-ORG-AUTH`, `X-LINKSTATE`, `X-ORG-META`
//! (their wire forms are in [`mailroom_proto::smtp::org`], their meaning in [`crate::org`]).
//!
//! Each verb is a registered extension: not registered, it gets `502 5.5.1` like any unknown
//! verb (the seed's broken server); registered but not applicable yet, `530 5.7.0`
//! (authentication required) or `502 5.5.1` outside an organization. A failed proof counts as a
//! session error; a replayed proof fails because the server's nonce is new in every challenge.

use std::collections::VecDeque;

use mailroom_proto::smtp::org::{
    self as wire, Assembler, LinkStateArg, OrgAuthArg, OrgError, OrgMoveArg, OrgTrackArg,
};
use mailroom_proto::smtp::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

use super::extensions::Facts;
use super::session::{Session, State};
use crate::model::meta::{MoveMail, MoveUser};
use crate::model::OrgMeta;
use crate::org::auth::{Side, Transcript};
use crate::org::view::Snapshot;
use crate::org::{random_hex, OrgState, MAX_STATE};
use crate::store::TrackFilter;

/// Where a session stands with organization authentication.
#[derive(Debug, Default)]
pub enum OrgAuth {
    /// Not attempted.
    #[default]
    None,
    /// Challenged: waiting for the client's proof.
    Challenged {
        /// The client's name.
        client: String,
        /// Its nonce.
        client_nonce: String,
        /// Ours.
        server_nonce: String,
    },
    /// The client proved that it is this server of the organization.
    Authenticated {
        /// Its name.
        client: String,
    },
}

/// A session's organization state.
#[derive(Debug, Default)]
pub struct OrgSession {
    /// Authentication.
    pub auth: OrgAuth,
    /// A link-state transfer from the client under way.
    incoming: Option<Assembler>,
    /// Our state's chunks still to be pulled.
    outgoing: Option<VecDeque<String>>,
    /// Metadata for the next transaction.
    pub meta: Option<OrgMeta>,
    /// The chunks of a tracking answer still to be pulled.
    track_out: Option<VecDeque<String>>,
    /// A mailbox moving here: the user's ID and address.
    move_user: Option<(i64, String)>,
    /// The message of that mailbox being received.
    move_mail: Option<(MoveMail, Assembler)>,
}

impl OrgSession {
    /// The authenticated peer's name.
    pub fn peer(&self) -> Option<&str> {
        match &self.auth {
            OrgAuth::Authenticated { client } => Some(client),
            _ => None,
        }
    }
}

/// The next chunk of an answer being pulled; the answer is gone once its last chunk is.
fn pull(queue: &mut Option<VecDeque<String>>, nothing: &str) -> Reply {
    let next = queue.as_mut().and_then(|q| q.pop_front());
    if queue.as_ref().is_none_or(|q| q.is_empty()) {
        *queue = None;
    }
    match next {
        Some(c) => Reply::code(250, "2.0.0", c),
        None => Reply::code(503, "5.5.1", nothing.to_string()),
    }
}

fn chunk_reply(e: &OrgError) -> Reply {
    match e {
        OrgError::OutOfOrder(_) => Reply::code(503, "5.5.1", format!("Bad sequence: {e}")),
        OrgError::TooLarge(_) => Reply::code(552, "5.3.4", format!("Refused: {e}")),
        _ => Reply::code(501, "5.5.4", format!("Refused: {e}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// What decides which extensions apply now.
    pub(super) fn facts(&self) -> Facts {
        let tls = self.conn.tls().is_some();
        let wanted = self.mode == super::session::Mode::Submission || self.ctx.config.smtp.starttls;
        Facts {
            in_org: self.ctx.org.get().is_some(),
            org_authenticated: self.org.peer().is_some(),
            tls_available: !tls && wanted && self.ctx.tls.as_ref().is_some_and(|t| t.available()),
            tls,
            submission: self.mode == super::session::Mode::Submission,
        }
    }

    /// `None` when the verb may be used; otherwise the refusal.
    fn org_gate(&self, verb: &str) -> Option<Reply> {
        if matches!(self.state, State::Connected) {
            return Some(Reply::code(503, "5.5.1", "Send EHLO first"));
        }
        match self.ctx.registry.verb_offered(verb, self.facts()) {
            None => Some(Reply::code(502, "5.5.1", "Command not implemented")),
            Some(true) => None,
            Some(false) if self.ctx.org.get().is_none() => Some(Reply::code(
                502,
                "5.5.1",
                format!("{verb}: this server is not in an organization"),
            )),
            Some(false) => Some(Reply::code(
                530,
                "5.7.0",
                format!("{verb}: organization authentication required (X-ORG-AUTH first)"),
            )),
        }
    }

    /// `X-ORG-AUTH`.
    pub(super) fn org_auth(&mut self, arg: &str) -> Reply {
        if let Some(r) = self.org_gate("X-ORG-AUTH") {
            return r;
        }
        let Some(snap) = self.ctx.org.get() else {
            return Reply::code(502, "5.5.1", "This server is not in an organization");
        };
        let parsed = match wire::parse_org_auth(arg) {
            Ok(a) => a,
            Err(e) => return Reply::code(501, "5.5.4", format!("Syntax: {e}")),
        };
        match (parsed, std::mem::take(&mut self.org.auth)) {
            (_, OrgAuth::Authenticated { client }) => {
                self.org.auth = OrgAuth::Authenticated { client };
                Reply::code(503, "5.5.1", "Already authenticated")
            }
            (OrgAuthArg::Hello { org, server, nonce }, _) => {
                if org != snap.membership.org {
                    tracing::warn!(peer = %self.peer, org, "X-ORG-AUTH for another organization");
                    return Reply::code(535, "5.7.8", "Not a member of that organization");
                }
                let server_nonce = random_hex(16);
                let binding = crate::org::auth::binding(self.conn.tls().as_ref());
                let proof = Transcript {
                    org: &org,
                    client: &server,
                    server: snap.me(),
                    client_nonce: &nonce,
                    server_nonce: &server_nonce,
                    binding: &binding,
                }
                .proof(&snap.membership.secret, Side::Server);
                let line = format!("{server_nonce} {proof}");
                self.org.auth = OrgAuth::Challenged {
                    client: server,
                    client_nonce: nonce,
                    server_nonce,
                };
                Reply::plain(334, line)
            }
            (OrgAuthArg::Proof(_), OrgAuth::None) => {
                Reply::code(503, "5.5.1", "Send X-ORG-AUTH HELLO first")
            }
            (
                OrgAuthArg::Proof(proof),
                OrgAuth::Challenged {
                    client,
                    client_nonce,
                    server_nonce,
                },
            ) => {
                let binding = crate::org::auth::binding(self.conn.tls().as_ref());
                let t = Transcript {
                    org: &snap.membership.org,
                    client: &client,
                    server: snap.me(),
                    client_nonce: &client_nonce,
                    server_nonce: &server_nonce,
                    binding: &binding,
                };
                if !t.verify(&snap.membership.secret, Side::Client, &proof) {
                    tracing::warn!(peer = %self.peer, client, "X-ORG-AUTH proof refused");
                    return Reply::code(535, "5.7.8", "Organization authentication failed");
                }
                tracing::debug!(peer = %self.peer, client, "organization peer authenticated");
                let text = format!("{client} authenticated in organization {}", snap.state.name);
                self.org.auth = OrgAuth::Authenticated { client };
                Reply::code(235, "2.7.0", text)
            }
        }
    }

    /// `X-LINKSTATE`.
    pub(super) async fn linkstate(&mut self, arg: &str) -> Reply {
        if let Some(r) = self.org_gate("X-LINKSTATE") {
            return r;
        }
        let Some(snap) = self.ctx.org.get() else {
            return Reply::code(502, "5.5.1", "This server is not in an organization");
        };
        let parsed = match wire::parse_linkstate(arg) {
            Ok(a) => a,
            Err(e) => {
                self.org.incoming = None;
                return chunk_reply(&e);
            }
        };
        match parsed {
            LinkStateArg::Digest(d) => {
                let mine = snap.state.digest();
                if d == mine {
                    Reply::code(250, "2.0.0", "SAME")
                } else {
                    Reply::code(250, "2.0.0", format!("DIFFERENT {mine}"))
                }
            }
            LinkStateArg::Pull => {
                if self.org.outgoing.is_none() {
                    self.org.outgoing = Some(wire::chunks(&snap.state.to_json()).into());
                }
                pull(&mut self.org.outgoing, "Nothing to pull")
            }
            LinkStateArg::Chunk(c) => {
                let a = self
                    .org
                    .incoming
                    .get_or_insert_with(|| Assembler::new(MAX_STATE));
                match a.push(c) {
                    Err(e) => {
                        self.org.incoming = None;
                        chunk_reply(&e)
                    }
                    Ok(None) => Reply::code(250, "2.0.0", "Chunk accepted"),
                    Ok(Some(data)) => {
                        self.org.incoming = None;
                        self.merge_state(&snap, &data).await
                    }
                }
            }
        }
    }

    async fn merge_state(&mut self, snap: &Snapshot, data: &[u8]) -> Reply {
        let theirs = match OrgState::from_json(data, &snap.membership.org) {
            Ok(s) => s,
            Err(e) => return Reply::code(554, "5.6.0", format!("State refused: {e}")),
        };
        match self.ctx.store.org_merge(theirs).await {
            Ok((merged, changed)) => {
                let (d, l) = merged.versions();
                // Our side of the exchange: the merged state, pulled next.
                self.org.outgoing = Some(wire::chunks(&merged.to_json()).into());
                if changed {
                    self.ctx.org.set_state(merged);
                    self.ctx.org.changed.notify_one();
                }
                Reply::code(
                    250,
                    "2.0.0",
                    format!("State merged (directory version {d}, link state version {l})"),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "organization state not merged");
                Reply::code(
                    451,
                    "4.3.0",
                    "Temporary failure storing the state, try again later",
                )
            }
        }
    }

    /// `X-ORG-TRACK`: this server's tracking events for a query of another server.
    pub(super) async fn org_track(&mut self, arg: &str) -> Reply {
        if let Some(r) = self.org_gate("X-ORG-TRACK") {
            return r;
        }
        match wire::parse_org_track(arg) {
            Err(e) => Reply::code(501, "5.5.4", format!("Syntax: {e}")),
            Ok(OrgTrackArg::Pull) => pull(
                &mut self.org.track_out,
                "Nothing to pull: send X-ORG-TRACK QUERY first",
            ),
            Ok(OrgTrackArg::Query(json)) => {
                let filter: TrackFilter = match serde_json::from_slice(&json) {
                    Ok(f) => f,
                    Err(e) => return Reply::code(501, "5.5.4", format!("Malformed query: {e}")),
                };
                match self.ctx.store.track_query(filter).await {
                    Ok(events) => {
                        let data = serde_json::to_vec(&events).unwrap_or_default();
                        let chunks: VecDeque<String> = wire::chunks(&data).into();
                        let n = chunks.len();
                        self.org.track_out = Some(chunks);
                        Reply::code(
                            250,
                            "2.0.0",
                            format!(
                                "{} event(s) in {n} chunk(s): X-ORG-TRACK PULL",
                                events.len()
                            ),
                        )
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "tracking query failed");
                        Reply::code(451, "4.3.0", "Temporary failure reading the tracking log")
                    }
                }
            }
        }
    }

    /// `X-ORG-MOVE`: a mailbox moving here from another server of the organization.
    pub(super) async fn org_move(&mut self, arg: &str) -> Reply {
        if let Some(r) = self.org_gate("X-ORG-MOVE") {
            return r;
        }
        let parsed = match wire::parse_org_move(arg) {
            Ok(a) => a,
            Err(e) => {
                self.org.move_mail = None;
                return chunk_reply(&e);
            }
        };
        let temp = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "mailbox move: store failed");
            Reply::code(
                451,
                "4.3.0",
                "Temporary failure storing the mailbox, try again later",
            )
        };
        match parsed {
            OrgMoveArg::User(json) => {
                let Ok(u) = serde_json::from_slice::<MoveUser>(&json) else {
                    return Reply::code(501, "5.5.4", "Malformed user");
                };
                let address = u.address.to_lowercase();
                let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                if !self.ctx.config.is_local_domain(domain) && !self.ctx.org.accepts(domain) {
                    return Reply::code(
                        550,
                        "5.7.1",
                        format!("{domain} is not a domain of this server"),
                    );
                }
                let store = &self.ctx.store;
                let id = match store.lookup(&address).await.map_err(temp) {
                    Err(r) => return r,
                    Ok(Some(crate::store::DirEntry::User(existing))) => existing.id,
                    Ok(Some(_)) => {
                        return Reply::code(
                            550,
                            "5.1.6",
                            format!("{address} is an alias or list here"),
                        )
                    }
                    Ok(None) => match store.user_add(&address, u.password.clone(), None).await {
                        Ok(id) => id,
                        Err(e) => return temp(e),
                    },
                };
                if u.finish {
                    if let Some(p) = u.password.clone() {
                        if let Err(e) = store.user_passwd(&address, p).await {
                            return temp(e);
                        }
                    }
                    if let Err(e) = store.user_quota(&address, u.quota).await {
                        return temp(e);
                    }
                    self.org.move_user = None;
                    return Reply::code(250, "2.0.0", format!("{address} is now homed here"));
                }
                self.org.move_user = Some((id, address.clone()));
                Reply::code(
                    250,
                    "2.0.0",
                    format!("Moving the mailbox of {address} here"),
                )
            }
            OrgMoveArg::Mail(json) => {
                if self.org.move_user.is_none() {
                    return Reply::code(503, "5.5.1", "X-ORG-MOVE USER first");
                }
                let Ok(m) = serde_json::from_slice::<MoveMail>(&json) else {
                    return Reply::code(501, "5.5.4", "Malformed message description");
                };
                let max = self.ctx.config.smtp.max_message_size as usize * 2;
                self.org.move_mail = Some((m, Assembler::new(max)));
                Reply::code(250, "2.0.0", "Send the text")
            }
            OrgMoveArg::Chunk(c) => {
                let (Some((user_id, _)), Some((_, a))) =
                    (self.org.move_user.clone(), self.org.move_mail.as_mut())
                else {
                    return Reply::code(503, "5.5.1", "X-ORG-MOVE MAIL first");
                };
                match a.push(c) {
                    Err(e) => {
                        self.org.move_mail = None;
                        chunk_reply(&e)
                    }
                    Ok(None) => Reply::code(250, "2.0.0", "Chunk accepted"),
                    Ok(Some(text)) => {
                        let Some((m, _)) = self.org.move_mail.take() else {
                            return Reply::code(503, "5.5.1", "X-ORG-MOVE MAIL first");
                        };
                        let place = crate::store::Placement {
                            folder: m.folder,
                            special_use: m.special_use,
                            flags: m.flags,
                            keywords: m.keywords,
                            internal_date: m.internal_date,
                        };
                        match self
                            .ctx
                            .store
                            .mail_import(user_id, text, m.key, place)
                            .await
                        {
                            Ok(true) => Reply::code(250, "2.0.0", "Message imported"),
                            Ok(false) => Reply::code(250, "2.0.0", "Message already here"),
                            Err(e) => temp(e),
                        }
                    }
                }
            }
        }
    }

    /// `X-ORG-META DONE id...`: the peer finished with these messages; their shadows go.
    async fn org_done(&mut self, ids: &str) -> Reply {
        let (Some(peer), Some(snap)) = (self.org.peer().map(String::from), self.ctx.org.get())
        else {
            return Reply::code(530, "5.7.0", "Organization authentication required");
        };
        let ids: Vec<String> = ids.split_ascii_whitespace().map(String::from).collect();
        if ids.is_empty() || ids.len() > 64 || ids.iter().any(|i| i.len() > 300) {
            return Reply::code(501, "5.5.4", "X-ORG-META DONE id... (1 to 64 ids)");
        }
        match self
            .ctx
            .store
            .shadow_release(snap.me().to_string(), peer, ids)
            .await
        {
            Ok(n) => Reply::code(250, "2.0.0", format!("{n} shadow copies released")),
            Err(e) => {
                tracing::error!(error = %e, "shadow release failed");
                Reply::code(451, "4.3.0", "Temporary failure, try again later")
            }
        }
    }

    /// `X-ORG-META`: metadata for the next transaction.
    pub(super) async fn org_meta(&mut self, arg: &str) -> Reply {
        if let Some(r) = self.org_gate("X-ORG-META") {
            return r;
        }
        if let Some(ids) = arg.trim().strip_prefix("DONE ") {
            return self.org_done(ids).await;
        }
        if matches!(self.state, State::Mail(..)) {
            return Reply::code(503, "5.5.1", "X-ORG-META goes before MAIL");
        }
        match OrgMeta::decode(arg) {
            Some(m) => {
                self.org.meta = Some(m);
                Reply::code(250, "2.0.0", "Metadata for the next message")
            }
            None => Reply::code(501, "5.5.4", "Malformed organization metadata"),
        }
    }
}
