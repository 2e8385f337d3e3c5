//! MAIL and RCPT (RFC 5321 §4.1.1.2, §4.1.1.3), and the relay policy.
//!
//! **Relay policy.** A recipient in a local domain is delivered here, if the directory knows it.
//! Any other domain is accepted only from a client in `smtp.trusted_networks` (default: none),
//! a server of the organization, or a user logged in on the submission service, so a fresh
//! server is never an open relay. The classic tricks that smuggle a foreign address into a
//! local one — `user%other@local`, `"user@other"@local`, `user@other@local`, `other!user@local` —
//! are refused outright with `554 5.7.1` whoever the client is; a source route
//! (`@local:user@other`) is ignored as RFC 5321 Appendix C allows, which leaves a foreign address
//! that the relay rule then judges.

use mailroom_proto::smtp::address::ForwardPath;
use mailroom_proto::smtp::command::RawParams;
use mailroom_proto::smtp::params::ParamError;
use mailroom_proto::smtp::{Body, Domain, MailParams, Mailbox, RcptParams, Reply, ReversePath};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{param_reply, Mode, Session, State, Transaction};
use crate::config::{FullMailbox, LocalSenders};
use crate::directory::{self, Resolution, Target};
use crate::ids::QueueId;
use crate::ingest::AcceptedRcpt;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// MAIL FROM.
    pub(super) async fn mail(&mut self, from: ReversePath, raw: RawParams) -> Reply {
        let helo = match &self.state {
            State::Connected => return Reply::code(503, "5.5.1", "Send EHLO or HELO first"),
            State::Mail(..) => {
                return Reply::code(503, "5.5.1", "Nested MAIL command: send RSET first")
            }
            State::Ready(h) => h.clone(),
        };
        let mut params = MailParams::default();
        for (k, v) in &raw {
            if !helo.esmtp || !self.ctx.registry.mail_param(k) {
                return param_reply(&ParamError::Unknown(k.clone()));
            }
            if let Err(e) = params.apply(k, v.as_deref()) {
                return param_reply(&e);
            }
        }
        if params.body == Some(Body::BinaryMime) && !self.ctx.registry.has("BINARYMIME") {
            return Reply::code(555, "5.5.4", "BODY=BINARYMIME is not supported");
        }
        let max = self.ctx.config.smtp.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return Reply::code(
                552,
                "5.3.4",
                format!("Message size exceeds fixed maximum message size ({max} octets)"),
            );
        }
        if from.mailbox().is_some_and(Mailbox::is_utf8) && !params.smtputf8 {
            return Reply::code(
                553,
                "5.6.7",
                "Non-ASCII sender address needs the SMTPUTF8 parameter",
            );
        }
        let sender = from.mailbox().map(Mailbox::key);
        if let Some(r) = self.submission_gate(sender.as_deref()).await {
            return r;
        }
        if let Some(r) = self.outside_gate(from.mailbox()) {
            return r;
        }
        let text = format!("Sender <{from}> OK");
        self.state = State::Mail(
            helo,
            Box::new(Transaction {
                queue_id: QueueId::generate(),
                from,
                params,
                rcpts: Vec::new(),
                bdat: None,
                org_meta: self.org.meta.take(),
            }),
        );
        Reply::code(250, "2.1.0", text)
    }

    /// What an outside client that has not logged in may not do at MAIL: go over the message
    /// rate, or give a local domain as sender (Exchange: "anonymous users cannot send as an
    /// authoritative domain"; `smtp.local_senders_from_outside`).
    fn outside_gate(&self, sender: Option<&Mailbox>) -> Option<Reply> {
        let cfg = &self.ctx.config;
        let ip = self.peer.ip();
        if !self.anonymous_outside() {
            return None;
        }
        if !self.ctx.rates.messages.allow(ip, cfg.smtp.max_message_rate) {
            return Some(Reply::code(
                450,
                "4.7.1",
                "Too many messages from your address in the last minute, try again later",
            ));
        }
        let sender = sender?;
        self.local_sender_refusal("Sender", &sender.to_string(), sender.domain.as_str())
    }

    /// A client outside that did not log in, on the MX listener: the one whose mail is checked.
    pub(super) fn anonymous_outside(&self) -> bool {
        self.mode == Mode::Mx
            && self.user.is_none()
            && self.org.peer().is_none()
            && !self.ctx.config.is_inside(self.peer.ip())
    }

    /// The refusal of an anonymous outside client's `what` (the envelope sender, or a `From:`
    /// address) in a domain of this organization, under `smtp.local_senders_from_outside`.
    pub(super) fn local_sender_refusal(
        &self,
        what: &str,
        address: &str,
        domain: &str,
    ) -> Option<Reply> {
        let cfg = &self.ctx.config;
        let local = cfg.is_local_domain(domain) || self.ctx.org.accepts(domain);
        (local && cfg.smtp.local_senders_from_outside == LocalSenders::Refuse).then(|| {
            Reply::code(
                550,
                "5.7.1",
                format!(
                    "{what} <{address}> refused: mail from {domain} comes from inside or from a \
                     user logged in on the submission service, not from an anonymous client \
                     outside"
                ),
            )
        })
    }

    /// A list's posting policy for this session's sender (see [`list_gate`]).
    async fn list_gate(&self, mailbox: &Mailbox, key: &str, targets: &[Target]) -> Option<Reply> {
        let sender = match &self.state {
            State::Mail(_, tx) => tx.from.mailbox().map(Mailbox::key),
            _ => None,
        };
        let inside = self.user.is_some()
            || self.org.peer().is_some()
            || self.ctx.config.is_inside(self.peer.ip());
        list_gate(
            self.ctx.store.as_ref(),
            mailbox,
            key,
            targets,
            sender,
            inside,
        )
        .await
    }

    /// RCPT TO.
    pub(super) async fn rcpt(&mut self, to: ForwardPath, raw: RawParams) -> Reply {
        let (esmtp, smtputf8, count) = match &mut self.state {
            State::Connected => return Reply::code(503, "5.5.1", "Send EHLO or HELO first"),
            State::Ready(_) => return Reply::code(503, "5.5.1", "Need MAIL before RCPT"),
            State::Mail(h, tx) => (h.esmtp, tx.params.smtputf8, tx.rcpts.len()),
        };
        let declared = match &self.state {
            State::Mail(_, tx) => tx.params.size.unwrap_or(0),
            _ => 0,
        };
        if count >= self.ctx.config.smtp.max_recipients {
            return Reply::code(452, "4.5.3", "Too many recipients");
        }
        let mut params = RcptParams::default();
        for (k, v) in &raw {
            if !esmtp || !self.ctx.registry.rcpt_param(k) {
                return param_reply(&ParamError::Unknown(k.clone()));
            }
            if let Err(e) = params.apply(k, v.as_deref()) {
                return param_reply(&e);
            }
        }
        let mailbox = match to {
            ForwardPath::Postmaster => Mailbox {
                local: "postmaster".into(),
                domain: match Domain::parse(self.ctx.config.primary_domain()) {
                    Ok(d) => d,
                    Err(_) => return Reply::code(550, "5.1.1", "No postmaster here"),
                },
            },
            ForwardPath::Path(p) => p.mailbox,
        };
        if mailbox.is_utf8() && !smtputf8 {
            return Reply::code(
                553,
                "5.6.7",
                "Non-ASCII recipient address needs SMTPUTF8 at MAIL",
            );
        }
        let key = mailbox.key();
        let accepted = match self.check_recipient(&mailbox, &key, declared).await {
            Ok(targets) => targets,
            Err(reply) => return reply,
        };
        let (targets, redirects) = accepted;
        if let State::Mail(_, tx) = &mut self.state {
            tx.rcpts.push(AcceptedRcpt {
                given: key.clone(),
                params,
                targets,
                redirects,
            });
        }
        Reply::code(250, "2.1.5", format!("Recipient <{mailbox}> OK"))
    }

    /// The relay policy and the directory check for one recipient.
    async fn check_recipient(
        &self,
        mailbox: &Mailbox,
        key: &str,
        declared_size: u64,
    ) -> Result<(Vec<Target>, Vec<directory::Redirect>), Reply> {
        let cfg = &self.ctx.config;
        let domain = mailbox.domain.as_str();
        // A probe mailbox of the organization (doctor --mailflow), on every server: only the
        // organization's servers may send to one, so nobody can have one relayed and consumed
        // or answered. This server's own is consumed by ingest.
        if let (Some(server), Some(snap)) = (crate::org::probe::server_of(key), self.ctx.org.get())
        {
            if server == snap.me() || snap.state.dir.server(&server).is_some() {
                if self.org.peer().is_none() {
                    return Err(Reply::code(
                        550,
                        "5.7.1",
                        format!(
                            "<{mailbox}>: The probe mailbox takes mail from the servers of the \
                             organization only"
                        ),
                    ));
                }
                if server == snap.me() {
                    return Ok((vec![Target::remote(key)], Vec::new()));
                }
            }
        }
        if !cfg.is_local_domain(domain) && !self.ctx.org.accepts(domain) {
            let ip = self.peer.ip();
            // A server of the organization hands on mail for the outside (to the bridgehead of
            // an SMTP connector): it proved that it belongs.
            // So does a user who logged in on the submission service.
            let org_peer = self.org.peer().is_some();
            let trusted = cfg.smtp.trusted_networks.iter().any(|n| n.contains(&ip));
            if org_peer || trusted || self.user.is_some() {
                return Ok((vec![Target::remote(key)], Vec::new()));
            }
            return Err(Reply::code(
                554,
                "5.7.1",
                format!("<{mailbox}>: Relay access denied"),
            ));
        }
        if mailbox.has_routing_syntax() {
            return Err(Reply::code(
                554,
                "5.7.1",
                format!(
                    "<{mailbox}>: Routing characters (% ! @) in the local part are not accepted"
                ),
            ));
        }
        let org = self.ctx.org.get();
        let resolution =
            directory::resolve_in_org(self.ctx.store.as_ref(), cfg, org.as_deref(), key)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "directory lookup failed");
                    Reply::code(451, "4.3.0", "Temporary directory failure, try again later")
                })?;
        match resolution {
            Resolution::Unknown => Err(Reply::code(
                550,
                "5.1.1",
                format!("<{mailbox}>: No such user here"),
            )),
            Resolution::Loop => Err(Reply::code(
                550,
                "5.4.6",
                format!("<{mailbox}>: This alias or list loops back on itself and reaches nobody"),
            )),
            Resolution::TooLarge => Err(Reply::code(
                550,
                "5.5.3",
                format!("<{mailbox}>: This alias or list expands to too many recipients"),
            )),
            Resolution::Targets {
                targets,
                redirects,
                loop_cut,
            } => {
                if loop_cut {
                    tracing::warn!(address = key, "alias/list loop cut during expansion");
                }
                // A mailbox reached directly took no alias or list step: no policy to read.
                if !redirects.is_empty() {
                    if let Some(r) = self.list_gate(mailbox, key, &targets).await {
                        return Err(r);
                    }
                }
                // Backscatter: a mailbox (or an alias to mailboxes) that is already full is
                // refused now, not accepted and then reported to a sender who may be forged. A
                // list with some full members is accepted; those members get the report path.
                // A message larger than the whole quota never fits: refused for good whatever
                // `smtp.full_mailbox` says, or the sender would retry for days (issue 21).
                if targets.iter().all(|t| t.never_fits(declared_size)) {
                    return Err(Reply::code(
                        552,
                        "5.2.3",
                        format!("<{mailbox}>: Message too large for this mailbox ({declared_size} octets; its quota is smaller)"),
                    ));
                }
                if targets.iter().all(|t| t.is_full_for(declared_size)) {
                    let text = format!("<{mailbox}>: Mailbox full");
                    return Err(match cfg.smtp.full_mailbox {
                        FullMailbox::Temporary => Reply::code(452, "4.2.2", text),
                        FullMailbox::Permanent => Reply::code(552, "5.2.2", text),
                    });
                }
                Ok((targets, redirects))
            }
        }
    }
}

/// A list's posting policy ([`crate::model::Posting`]): the refusal when `sender` may not
/// post to `key` (`inside`: a logged-in user, a local program, or a client inside). Only the list named is judged, not lists nested in it. The null sender
/// may post only to open lists (a report sent to a list reaches nobody who asked for it).
pub(super) async fn list_gate(
    store: &dyn crate::store::Directory,
    mailbox: &Mailbox,
    key: &str,
    targets: &[Target],
    sender: Option<String>,
    inside: bool,
) -> Option<Reply> {
    use crate::model::Posting;
    let policy = match store.list_policy(key).await {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "list policy lookup failed");
            return Some(Reply::code(
                451,
                "4.3.0",
                "Temporary directory failure, try again later",
            ));
        }
    };
    match policy.post {
        Posting::Anyone => None,
        Posting::Local if inside && sender.is_some() => None,
        Posting::Local => Some(Reply::code(
            550,
            "5.7.1",
            format!("<{mailbox}>: only senders of this organization may post to this list"),
        )),
        Posting::Members => {
            let member = match &sender {
                None => false,
                Some(s) => {
                    targets.iter().any(|t| t.address == *s)
                        || matches!(
                            store.lookup(key).await,
                            Ok(Some(crate::model::DirEntry::List(m))) if m.contains(s)
                        )
                }
            };
            (!member).then(|| {
                Reply::code(
                    550,
                    "5.7.1",
                    format!("<{mailbox}>: only the list's members may post to it"),
                )
            })
        }
    }
}
