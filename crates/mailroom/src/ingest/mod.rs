//! Ingest: what happens between the end of a message's text and its `250`.
//!
//! The message gets its trace: a `Received` header naming the client, this server and the queue ID
//! (RFC 5321 §4.4), and a `Message-ID` if it has none (RFC 5322 §3.6.4). A message that already
//! carries more `Received` headers than the hop limit is refused as a loop (`554 5.4.6`, RFC 5321
//! §6.3). Recipients, resolved through aliases and lists when they were accepted, are merged so that
//! each final address gets one copy. Then the message, its recipients and the tracking events of
//! every step are submitted to the store in one durable transaction; only after that does the
//! session say `250`.

pub mod headers;
mod report;

pub use report::{report_message, resolve_sender};

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use mailroom_proto::smtp::{Class, Notify, RcptParams, Reply, Status};

use crate::config::Config;
use crate::directory::{Redirect, Target};
use crate::dsn::{Action, ReportRecipient};
use crate::ids::QueueId;
use crate::model::{
    Content, EnvelopeParams, MessageKind, NewMessage, NewRecipient, QueueKind, Route,
};
use crate::store::spool::{Received, SpoolGuard, SpoolWriter};
use crate::store::{IngestStore, StoreError};
use crate::track::{EventBase, EventId};

/// Tells the queue manager about new work: ingest announces each message it has queued, and
/// the manager (which holds the receiver) takes it up at once.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    tx: tokio::sync::mpsc::UnboundedSender<i64>,
}

impl QueueHandle {
    /// A handle and the receiver the manager reads.
    pub fn channel() -> (QueueHandle, tokio::sync::mpsc::UnboundedReceiver<i64>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (QueueHandle { tx }, rx)
    }

    /// Announces a newly queued message (by store row ID).
    pub fn notify(&self, rowid: i64) {
        let _ = self.tx.send(rowid);
    }
}

/// A recipient accepted at RCPT, with what it resolved to.
#[derive(Debug, Clone)]
pub struct AcceptedRcpt {
    /// The address as the client gave it (lower-cased domain).
    pub given: String,
    /// Its DSN parameters.
    pub params: RcptParams,
    /// The final recipients it resolved to.
    pub targets: Vec<Target>,
    /// The alias and list steps taken.
    pub redirects: Vec<Redirect>,
}

/// A complete envelope, ready for ingest.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The queue ID given at MAIL.
    pub queue_id: QueueId,
    /// The sender; empty for the null reverse path.
    pub sender: String,
    /// MAIL parameters.
    pub params: EnvelopeParams,
    /// Accepted recipients.
    pub rcpts: Vec<AcceptedRcpt>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// The protocol for the `Received` header: SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTP… (RFC 3848,
    /// RFC 6531 §4.3).
    pub protocol: &'static str,
    /// The session's TLS, if it was under TLS.
    pub tls: Option<crate::tls::TlsInfo>,
    /// The user who logged in (SMTP AUTH), if one did.
    pub user: Option<String>,
    /// Fields this server puts above the message after its `Received` (Authentication-Results,
    /// DKIM-Signature), CRLF-terminated.
    pub headers: Vec<u8>,
    /// The sender authentication results in one line, if the message was checked.
    pub checks: Option<String>,
    /// The organization metadata sent with it (`X-ORG-META`), from an authenticated server of
    /// the organization.
    pub org_meta: Option<crate::model::OrgMeta>,
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The message is refused for good; the reply says why.
    #[error("refused: {0}")]
    Refused(Reply),
    /// The store failed: a temporary failure for the client.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

/// What the log says of a message received (`docs/logging.md`).
struct Arrival {
    client: String,
    helo: String,
    tls: Option<(String, String)>,
    user: Option<String>,
    sender: String,
    size: u64,
    message_id: String,
    nrcpt: usize,
    protocol: &'static str,
}

impl Arrival {
    /// One line: `received queue_id=… client_addr=… helo=… protocol=… tls=… cipher=… user=…
    /// sender=<…> size=… message_id=<…> nrcpt=…`.
    fn log(&self, queue_id: &QueueId) {
        tracing::info!(
            target: "mailroom::message",
            queue_id = %queue_id,
            client_addr = %self.client,
            helo = %self.helo,
            protocol = %self.protocol,
            tls = %self.tls.as_ref().map_or("none", |t| t.0.as_str()),
            cipher = %self.tls.as_ref().map_or("none", |t| t.1.as_str()),
            user = %self.user.as_deref().unwrap_or("-"),
            sender = %format_args!("<{}>", self.sender),
            size = self.size,
            message_id = %format_args!("<{}>", self.message_id),
            nrcpt = self.nrcpt,
            "received"
        );
    }
}

/// The ingest stage.
pub struct Ingest {
    store: Arc<dyn IngestStore>,
    config: Arc<Config>,
    queue: QueueHandle,
    org: Arc<crate::org::view::OrgView>,
    services: Arc<crate::services::Services>,
}

impl Ingest {
    /// Creates the stage (of a server in no organization; see [`Ingest::with_org`]).
    pub fn new(store: Arc<dyn IngestStore>, config: Arc<Config>, queue: QueueHandle) -> Ingest {
        Ingest {
            store,
            config,
            queue,
            org: crate::org::view::OrgView::new(None),
            services: Arc::new(crate::services::Services::unsupervised()),
        }
    }

    /// The stage of a supervised server: while `local-delivery` is not running, local mail is
    /// queued rather than delivered in the transaction that accepts it.
    pub fn with_services(mut self, services: Arc<crate::services::Services>) -> Ingest {
        self.services = services;
        self
    }

    /// The stage of a server whose organization is `org` (reports to senders homed on other
    /// servers go there).
    pub fn with_org(mut self, org: Arc<crate::org::view::OrgView>) -> Ingest {
        self.org = org;
        self
    }

    /// A writer for the text of the transaction `queue_id`: in memory up to
    /// `smtp.spool_threshold` octets, then in a spool file as it arrives.
    pub fn text_writer(&self, queue_id: QueueId) -> SpoolWriter {
        self.store
            .spool()
            .writer(queue_id.to_string(), self.config.smtp.spool_threshold)
    }

    /// Accepts a message: trace headers, recipients, events, durable submission. On `Ok` the
    /// message is on stable storage and the queue has been told.
    pub async fn accept(&self, env: Envelope, text: Received) -> Result<QueueId, IngestError> {
        let mut facts = headers::scan(match &text {
            Received::Memory(t) => t,
            Received::File { head, .. } => head,
        });
        // (A text in memory is the whole message: what its header lacks, it lacks.)
        facts.complete |= matches!(text, Received::Memory(_));
        if facts.received > self.config.smtp.max_received_headers {
            return Err(IngestError::Refused(Reply::code(
                554,
                "5.4.6",
                format!(
                    "Too many hops: the message already has {} Received headers (limit {}); it is probably looping",
                    facts.received, self.config.smtp.max_received_headers
                ),
            )));
        }
        let host = &self.config.server.hostname;
        let now = Utc::now();
        let (prefix, message_id) = self.trace(&env, facts, now);
        // The text as received: in memory, or (a large one) in its synced spool file, whose
        // guard deletes it unless the submission below commits.
        // (For a spooled text, what a report quotes: its first octets, the header section.)
        let (content, spooled_head, guard) = match text {
            Received::Memory(t) => {
                let mut all = prefix;
                all.extend_from_slice(&t);
                (Content::Memory(all), Vec::new(), None)
            }
            Received::File { file, head, guard } => {
                let mut quoted = prefix.clone();
                quoted.extend_from_slice(&head);
                (Content::Spooled { prefix, file }, quoted, Some(guard))
            }
        };
        let original: &[u8] = match &content {
            Content::Memory(all) => all,
            Content::Spooled { .. } => &spooled_head,
        };

        let base = EventBase {
            server: host.clone(),
            queue_id: env.queue_id.to_string(),
            message_id: Some(message_id.clone()),
            sender: env.sender.clone(),
            client_ip: Some(env.client_ip.to_string()),
            size: Some(content.len()),
        };
        let mut events = Vec::new();
        let mut how = match (&env.tls, &env.user) {
            (Some(t), Some(u)) => format!("{t}; authenticated as {u}"),
            (Some(t), None) => t.to_string(),
            (None, Some(u)) => format!("no TLS; authenticated as {u}"),
            (None, None) => "no TLS".to_string(),
        };
        if let Some(c) = &env.checks {
            how.push_str(&format!("; {c}"));
        }
        for r in &env.rcpts {
            events.push(
                base.event(EventId::SmtpReceived, Some(&r.given))
                    .status("250")
                    .detail(how.clone()),
            );
        }
        let mut rcpts = env.rcpts;
        let expanded = expansions(&mut rcpts, &env.sender);
        let mut recipients = merge_recipients(&rcpts, &base, &self.config, &mut events);
        if !self.services.running("local-delivery") {
            for r in &mut recipients {
                r.deliver_now = None;
            }
        }
        let mut reports = Vec::new();
        // Mail to this server's probe mailbox is consumed here: a probe is answered, an
        // answer recorded (crate::org::probe); neither reaches a mailbox.
        let probed = self.probes(
            &mut recipients,
            &base,
            &message_id,
            &env.sender,
            now,
            &mut events,
        );
        // (A message left with no recipient is still submitted: the store records its events
        // and confirms it to the organization server that sent it, which drops its shadow.)
        reports.extend(probed);
        if !expanded.is_empty() {
            let report = self
                .expanded_report(
                    &env.sender,
                    &env.params,
                    now,
                    original,
                    content.len(),
                    &expanded,
                )
                .await?;
            for l in &expanded {
                events.push(
                    base.event(EventId::SuccessReported, Some(&l.address))
                        .status("expanded")
                        .detail(format!(
                            "success report queued as {} for {}",
                            report.queue_id, env.sender
                        )),
                );
            }
            reports.push(report);
        }
        // The log line of the message's arrival, written once it is on stable storage
        // (docs/logging.md: one line per message received).
        let arrival_line = Arrival {
            client: env.client_ip.to_string(),
            helo: env.helo.clone(),
            tls: env
                .tls
                .as_ref()
                .map(|t| (t.version.clone(), t.cipher.clone())),
            user: env.user.clone(),
            sender: env.sender.clone(),
            size: content.len(),
            message_id: message_id.clone(),
            nrcpt: recipients.len(),
            protocol: env.protocol,
        };
        let msg = NewMessage {
            queue_id: env.queue_id,
            sender: env.sender,
            params: env.params,
            message_id: Some(message_id),
            arrival: now,
            client_ip: Some(env.client_ip.to_string()),
            kind: MessageKind::Normal,
            content,
            recipients,
            events,
            org_meta: env.org_meta,
        };
        let mut batch = vec![msg];
        batch.extend(reports);
        let submission = self.store.submit_batch(batch);
        let handed = guard.map(SpoolGuard::handed_over);
        let submitted = match submission.await {
            Ok(s) => s,
            Err(e) => {
                if let Some(h) = handed {
                    h.failed();
                }
                return Err(e.into());
            }
        };
        arrival_line.log(&env.queue_id);
        // (The first submitted is the message; the others are reports it caused.)
        if let Some(first) = submitted.first() {
            for r in &first.delivered {
                crate::logs::delivery(&crate::logs::Delivery {
                    queue_id: &env.queue_id.to_string(),
                    recipient: r,
                    relay: "local",
                    delay: 0.0,
                    dsn: "2.0.0",
                    status: "sent",
                    reply: "delivered to the mailbox",
                });
            }
        }
        for s in submitted {
            if s.pending {
                self.queue.notify(s.rowid);
            }
        }
        Ok(env.queue_id)
    }

    /// Takes the recipients that are this server's probe mailbox out of `recipients`, with a
    /// tracking event each, and returns the answer to a probe from another server of the
    /// organization.
    fn probes(
        &self,
        recipients: &mut Vec<crate::model::NewRecipient>,
        base: &EventBase,
        message_id: &str,
        sender: &str,
        now: chrono::DateTime<Utc>,
        events: &mut Vec<crate::track::Event>,
    ) -> Vec<NewMessage> {
        use crate::org::probe::{self, Kind};
        let Some(snap) = self.org.get() else {
            return Vec::new();
        };
        let me = snap.me().to_string();
        let mine = probe::address(&me);
        let before = recipients.len();
        recipients.retain(|r| r.address != mine);
        if recipients.len() == before {
            return Vec::new();
        }
        let from =
            probe::server_of(sender).filter(|s| *s != me && snap.state.dir.server(s).is_some());
        let (detail, answer) = match (probe::kind(message_id), from) {
            (Some(Kind::Probe(id)), Some(from)) => {
                let answer_id = probe::answer_id(&id, &me);
                let text = probe::answer_text(&id, &from, &me, now);
                let to = probe::address(&from);
                let msg = crate::ingest::report::report_message(
                    &self.config,
                    QueueId::generate(),
                    answer_id.clone(),
                    &to,
                    vec![crate::directory::Target::remote(to.clone())],
                    text,
                    now,
                );
                (
                    format!("probe from {from}: answered ({answer_id})"),
                    Some(msg),
                )
            }
            (Some(Kind::Answer(id)), _) => (format!("answer to the probe {id}"), None),
            _ => ("not a probe: consumed".to_string(), None),
        };
        events.retain(|e| {
            !(e.recipient.as_deref() == Some(mine.as_str())
                && matches!(e.event, EventId::QueuedRemote | EventId::QueuedLocal))
        });
        events.push(
            base.event(EventId::DeliveredLocally, Some(&mine))
                .status("probe")
                .detail(detail),
        );
        answer.into_iter().collect()
    }

    /// The trace fields this server adds (RFC 5321 §4.4 `Received`, and a `Message-ID` when the
    /// message has none, RFC 5322 §3.6.4), the `Date` a submission lacks (RFC 6409 §8.3; mail
    /// from other servers is theirs to date), and the message's Message-ID. A field is added
    /// only when the header section was seen whole, so that one is never there twice.
    fn trace(
        &self,
        env: &Envelope,
        facts: headers::HeaderFacts,
        now: chrono::DateTime<Utc>,
    ) -> (Vec<u8>, String) {
        let host = &self.config.server.hostname;
        let single = match env.rcpts.as_slice() {
            [one] => Some(one.given.as_str()),
            _ => None,
        };
        let tls = env.tls.as_ref().map(|t| t.to_string());
        let mut prefix = headers::received(
            &headers::Trace {
                helo: &env.helo,
                ip: env.client_ip,
                host,
                protocol: env.protocol,
                tls: tls.as_deref(),
                queue_id: &env.queue_id,
                for_rcpt: single,
            },
            now,
        );
        prefix.extend_from_slice(&env.headers);
        let message_id = match facts.message_id {
            Some(m) => m,
            None => {
                let m = format!("{}@{}", env.queue_id, host);
                if facts.complete {
                    prefix.extend_from_slice(format!("Message-ID: <{m}>\r\n").as_bytes());
                }
                m
            }
        };
        if !facts.date && facts.complete && env.user.is_some() {
            prefix.extend_from_slice(format!("Date: {}\r\n", now.to_rfc2822()).as_bytes());
        }
        (prefix, message_id)
    }

    /// The "expanded" report for `lines`, addressed to the sender.
    async fn expanded_report(
        &self,
        sender: &str,
        params: &EnvelopeParams,
        arrival: chrono::DateTime<Utc>,
        content: &[u8],
        size: u64,
        lines: &[ReportRecipient],
    ) -> Result<NewMessage, StoreError> {
        let host = &self.config.server.hostname;
        let queue_id = QueueId::generate();
        let message_id = format!("{queue_id}@{host}");
        let bytes = crate::dsn::report(&crate::dsn::Report {
            reporting_mta: host,
            message_id: &message_id,
            to: sender,
            envid: params.envid.as_deref(),
            arrival,
            ret: params.ret,
            original: content,
            original_size: size,
            recipients: lines,
        });
        let org = self.org.get();
        let targets = crate::ingest::resolve_sender(
            self.store.as_ref(),
            &self.config,
            org.as_deref(),
            sender,
        )
        .await?;
        Ok(crate::ingest::report_message(
            &self.config,
            queue_id,
            message_id,
            sender,
            targets,
            bytes,
            arrival,
        ))
    }
}

/// Recipients that are lists (or aliases to several addresses) and asked for a success notice:
/// they get an "expanded" report now, and their members are passed NOTIFY without SUCCESS, so
/// that the sender hears once about the list, not from every member (RFC 3461 §6.2.7.3).
/// Returns the report lines (none for a null sender).
fn expansions(rcpts: &mut [AcceptedRcpt], sender: &str) -> Vec<ReportRecipient> {
    let mut out = Vec::new();
    for r in rcpts.iter_mut() {
        let Some(notify) = r.params.notify else {
            continue;
        };
        let expands = r.redirects.iter().any(|x| x.kind == "list") || r.targets.len() > 1;
        if !notify.success || !expands || r.redirects.is_empty() {
            continue;
        }
        r.params.notify = Some(Notify {
            success: false,
            ..notify
        });
        if sender.is_empty() {
            continue;
        }
        out.push(ReportRecipient {
            address: r.given.clone(),
            orcpt: r.params.orcpt.as_ref().map(|o| o.to_string()),
            original: None,
            action: Action::Expanded,
            status: Status::new(Class::Success, 0, 0),
            reason: format!(
                "delivered to the list, which passed it on to its {} member(s)",
                r.targets.len()
            ),
            diagnostic: None,
            remote_mta: None,
            last_attempt: Some(Utc::now()),
            will_retry_until: None,
        });
    }
    out
}

/// Turns accepted recipients into the queue's recipients: one per final address, keeping the
/// parameters of the first RCPT that led to it, with events 1042, 1033 and 1036/1034. Local
/// recipients get their mailbox copy (Return-Path from `base.sender`) to be made in the
/// submission's own transaction.
pub fn merge_recipients(
    rcpts: &[AcceptedRcpt],
    base: &EventBase,
    config: &Config,
    events: &mut Vec<crate::track::Event>,
) -> Vec<NewRecipient> {
    let mut out: Vec<NewRecipient> = Vec::new();
    let mut taken: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for r in rcpts {
        for red in &r.redirects {
            events.push(
                base.event(EventId::Redirected, Some(&red.to))
                    .detail(format!("{} {} expanded to {}", red.kind, red.from, red.to)),
            );
        }
        for t in &r.targets {
            if !taken.insert(t.address.as_str()) {
                continue;
            }
            out.push(NewRecipient {
                address: t.address.clone(),
                original: r.given.clone(),
                orcpt: r.params.orcpt.as_ref().map(|o| o.to_string()),
                notify: r.params.notify,
                route: t.route.clone(),
                queue: match t.route {
                    Route::Remote => {
                        crate::route::link_queue(config, &crate::route::domain_of(&t.address))
                    }
                    Route::Local { .. } | Route::Unresolved => QueueKind::Local,
                },
                deliver_now: match t.route {
                    Route::Local { user_id } => Some(crate::model::MailboxDrop {
                        user_id,
                        prefix: crate::deliver::local::prefix(&base.sender, &t.address),
                    }),
                    _ => None,
                },
            });
        }
    }
    for n in &out {
        events.push(base.event(EventId::Categorized, Some(&n.address)));
        let queued = match n.route {
            Route::Remote => EventId::QueuedRemote,
            Route::Local { .. } | Route::Unresolved => EventId::QueuedLocal,
        };
        events.push(base.event(queued, Some(&n.address)));
    }
    out
}

/// The `EnvelopeParams` of a generated report: none of the original's.
pub fn report_params() -> EnvelopeParams {
    EnvelopeParams::default()
}
