//! The queue's data model: messages, recipients and their states.
//!
//! A recipient's state is a type, not a set of flags: it is [`RcptState::Ready`] until a delivery
//! attempt settles it as [`RcptState::Delivered`] or [`RcptState::Failed`], and a failure carries the
//! [`ReportState`] of its notification so that "failed but not yet reported" survives a crash and is
//! picked up again. A message leaves the queue when every recipient is settled and reported.

use chrono::{DateTime, Utc};
use mailroom_proto::smtp::{Body, DsnRet, Notify, Status};

use crate::ids::QueueId;
use crate::track::Event;

/// Envelope parameters carried with a message (RFC 3461, RFC 6152, RFC 6531).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeParams {
    /// ENVID, decoded.
    pub envid: Option<String>,
    /// RET.
    pub ret: Option<DsnRet>,
    /// BODY.
    pub body: Option<Body>,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
}

/// Why a message is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Ordinary mail.
    Normal,
    /// A delivery status notification generated here (sent from the null sender).
    Report,
}

impl MessageKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Normal => "normal",
            MessageKind::Report => "report",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "normal" => Some(MessageKind::Normal),
            "report" => Some(MessageKind::Report),
            _ => None,
        }
    }
}

/// Where a recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into the mailbox of a local user.
    Local {
        /// The user's directory ID.
        user_id: i64,
    },
    /// To another server (outbound SMTP).
    Remote,
    /// A member of an alias or list that does not exist in the directory: it fails with `5.1.1`
    /// when delivery is attempted, and the sender is told which address is wrong.
    Unresolved,
}

/// The queues of the queue viewer (Exchange's system queues and one link queue per next hop).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueKind {
    /// Recipients waiting for local delivery.
    Local,
    /// Local deliveries that failed transiently and wait for a retry ("failed message retry").
    Retry,
    /// Remote recipients whose destination could not be found or reached at all.
    Unreachable,
    /// Outcomes waiting for their report ("DSN messages pending submission").
    Dsn,
    /// One queue per next hop (a domain, or a smart host).
    Link(String),
    /// Copies handed to another server of the organization, kept until it confirms that it
    /// delivered or passed them on (shadow redundancy), by that server's name.
    Shadow(String),
}

impl QueueKind {
    /// The stored key (`local`, `retry`, `unreachable`, `dsn`, `link:HOP`).
    pub fn key(&self) -> String {
        match self {
            QueueKind::Local => "local".into(),
            QueueKind::Retry => "retry".into(),
            QueueKind::Unreachable => "unreachable".into(),
            QueueKind::Dsn => "dsn".into(),
            QueueKind::Link(h) => format!("link:{h}"),
            QueueKind::Shadow(h) => format!("shadow:{h}"),
        }
    }

    /// Parses a stored key or a name an operator typed (`example.org` means its link queue).
    pub fn parse(s: &str) -> QueueKind {
        match s {
            "local" => QueueKind::Local,
            "retry" => QueueKind::Retry,
            "unreachable" => QueueKind::Unreachable,
            "dsn" => QueueKind::Dsn,
            other => match other.strip_prefix("shadow:") {
                Some(server) => QueueKind::Shadow(server.to_lowercase()),
                None => {
                    QueueKind::Link(other.strip_prefix("link:").unwrap_or(other).to_lowercase())
                }
            },
        }
    }

    /// The queue's name in the viewer, as Exchange names it.
    pub fn describe(&self) -> String {
        match self {
            QueueKind::Local => "Local delivery".into(),
            QueueKind::Retry => "Failed message retry".into(),
            QueueKind::Unreachable => "Messages with an unreachable destination".into(),
            QueueKind::Dsn => "DSN messages pending submission".into(),
            QueueKind::Link(h) => format!("Link queue to {h}"),
            QueueKind::Shadow(h) => format!("Shadow copies held for {h}"),
        }
    }

    /// The system queues, always shown even when empty.
    pub fn system() -> [QueueKind; 4] {
        [
            QueueKind::Local,
            QueueKind::Retry,
            QueueKind::Unreachable,
            QueueKind::Dsn,
        ]
    }
}

/// A delivery problem: what went wrong, in codes and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 status; its class says transient (4) or permanent (5).
    pub status: Status,
    /// The reason in plain words, for the report's human part.
    pub reason: String,
    /// The remote server's reply (`550 5.1.1 ...`) or a local diagnostic, for `Diagnostic-Code`.
    pub diagnostic: Option<String>,
    /// The server that gave the reply, for `Remote-MTA`.
    pub remote_mta: Option<String>,
}

impl Failure {
    /// A failure with no diagnostic.
    pub fn new(status: Status, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason.into(),
            diagnostic: None,
            remote_mta: None,
        }
    }
}

/// Whether the sender has been told about a recipient's outcome (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportState {
    /// Nothing to report (delivered without NOTIFY=SUCCESS, or still in progress).
    None,
    /// A report must still be generated (the "DSN messages pending submission" queue).
    Pending,
    /// A report was queued under this queue ID.
    Sent(String),
    /// The sender is null: the failure was absorbed (event 1018).
    Absorbed,
    /// NOTIFY excluded this outcome: no report, by the sender's choice.
    NotRequested,
}

/// A recipient's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Due for a delivery attempt now.
    Ready,
    /// Waiting to be retried after a transient failure.
    Deferred {
        /// When the next attempt is due.
        next_attempt: DateTime<Utc>,
        /// What the last attempt ran into.
        last_error: Failure,
    },
    /// Delivered into a local mailbox or handed to the next server; final.
    Delivered {
        /// When.
        at: DateTime<Utc>,
        /// The server that took it, for remote delivery.
        remote_mta: Option<String>,
        /// True when the next server does not support DSN, so it was "relayed" (RFC 3461 §4.2).
        relayed: bool,
    },
    /// Failed permanently; final.
    Failed {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        failure: Failure,
    },
}

impl RcptState {
    /// True for Delivered and Failed.
    pub fn is_final(&self) -> bool {
        matches!(self, RcptState::Delivered { .. } | RcptState::Failed { .. })
    }

    /// The stored name of the state.
    pub fn name(&self) -> &'static str {
        match self {
            RcptState::Ready => "ready",
            RcptState::Deferred { .. } => "deferred",
            RcptState::Delivered { .. } => "delivered",
            RcptState::Failed { .. } => "failed",
        }
    }
}

/// A message being submitted to the queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its queue ID.
    pub queue_id: QueueId,
    /// Envelope sender; empty for the null sender.
    pub sender: String,
    /// Envelope parameters.
    pub params: EnvelopeParams,
    /// The Message-ID header (without brackets).
    pub message_id: Option<String>,
    /// When it arrived.
    pub arrival: DateTime<Utc>,
    /// The SMTP client's address.
    pub client_ip: Option<String>,
    /// Ordinary mail or a report.
    pub kind: MessageKind,
    /// The complete message as it will be delivered (trace headers included).
    pub content: Content,
    /// Resolved recipients.
    pub recipients: Vec<NewRecipient>,
    /// Tracking events to write in the same transaction.
    pub events: Vec<Event>,
    /// The organization metadata it arrived with from another server of the organization.
    pub org_meta: Option<super::OrgMeta>,
}

/// What the store records of a spooled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledFile {
    /// The file's name in the spool directory.
    pub name: String,
    /// Its size in octets.
    pub size: u64,
    /// True when an octet has the high bit set (it needs 8BITMIME outbound).
    pub eight_bit: bool,
}

/// A message's text as submitted to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// All of it in memory: stored in the database, in the submission's own commit.
    Memory(Vec<u8>),
    /// The trace fields added here in memory, then the text as received in a spool file that
    /// the session has written and synced (see [`crate::store::spool`]).
    Spooled {
        /// The fields added here (Received, perhaps Message-ID).
        prefix: Vec<u8>,
        /// The received text.
        file: SpooledFile,
    },
}

impl Content {
    /// Its size in octets.
    pub fn len(&self) -> u64 {
        match self {
            Content::Memory(v) => v.len() as u64,
            Content::Spooled { prefix, file } => prefix.len() as u64 + file.size,
        }
    }

    /// True when it has no octets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for Content {
    fn from(v: Vec<u8>) -> Content {
        Content::Memory(v)
    }
}

/// A recipient of a message being submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    /// The final address (after alias and list expansion).
    pub address: String,
    /// The address as given at RCPT, before expansion.
    pub original: String,
    /// ORCPT in wire form (`rfc822;user@example.com`), if given.
    pub orcpt: Option<String>,
    /// NOTIFY, if given.
    pub notify: Option<Notify>,
    /// Where it goes.
    pub route: Route,
    /// The queue it waits in until its first attempt: `local`, or the link queue of its next
    /// hop (named after the smart host when there is one).
    pub queue: QueueKind,
    /// For a local recipient: its mailbox copy, written in the same transaction as the
    /// submission. Delivery then costs no second transaction; if the copy cannot be made (the
    /// quota), the recipient stays queued and takes the ordinary path.
    pub deliver_now: Option<MailboxDrop>,
}

/// What became of a submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its row ID.
    pub rowid: i64,
    /// True when the queue still has work for it (remote recipients, a failure, a report).
    pub pending: bool,
    /// The recipients delivered into their mailboxes with the submission itself.
    pub delivered: Vec<String>,
}

/// A message in the queue with its recipients.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Store row ID.
    pub rowid: i64,
    /// Queue ID.
    pub queue_id: String,
    /// Envelope sender; empty for null.
    pub sender: String,
    /// Envelope parameters.
    pub params: EnvelopeParams,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Arrival time.
    pub arrival: DateTime<Utc>,
    /// Client IP.
    pub client_ip: Option<String>,
    /// Kind.
    pub kind: MessageKind,
    /// The content's ID in the store.
    pub content_id: i64,
    /// Size of the content.
    pub size: u64,
    /// Held by an administrator: no delivery attempts until thawed.
    pub frozen: bool,
    /// The organization metadata it arrived with, if from another server of the organization.
    pub org_meta: Option<super::OrgMeta>,
    /// Recipients.
    pub recipients: Vec<QueuedRecipient>,
}

/// A recipient in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// Store row ID.
    pub id: i64,
    /// Final address.
    pub address: String,
    /// Address as given at RCPT.
    pub original: String,
    /// ORCPT wire form.
    pub orcpt: Option<String>,
    /// NOTIFY.
    pub notify: Option<Notify>,
    /// Route.
    pub route: Route,
    /// State.
    pub state: RcptState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Whether the sender has been told of the outcome.
    pub report: ReportState,
    /// Whether a delay report was sent (at most one per recipient).
    pub delay_reported: bool,
    /// The queue it waits in, while it waits in one.
    pub queue: Option<QueueKind>,
    /// Why its queue may not be delivered from now, if it may not (an administrator's choice).
    pub held: Option<Hold>,
    /// When a delivery to it began, while one is in progress.
    pub active_since: Option<DateTime<Utc>>,
}

/// Why an administrator holds a queue's delivery (Exchange's Disabled and Scheduled states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Outbound mail to this queue, or to all, is disabled until enabled again.
    Disabled {
        /// Since when.
        since: DateTime<Utc>,
    },
    /// Delivery from this queue waits until this time.
    Scheduled {
        /// When delivery may start.
        until: DateTime<Utc>,
    },
}

/// The administrator's settings of one queue, or of all outbound queues (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueControl {
    /// The queue's key, or `*` for every outbound queue.
    pub queue: String,
    /// Set while outbound mail to it is disabled.
    pub disabled_since: Option<DateTime<Utc>>,
    /// Set while its delivery is scheduled for later.
    pub scheduled_until: Option<DateTime<Utc>>,
    /// Who set it (the server or the command's user).
    pub by: String,
}

impl QueueControl {
    /// The key that stands for every outbound queue.
    pub const ALL: &'static str = "*";

    /// Whether this setting covers a recipient waiting in `queue` (a remote one when `remote`).
    pub fn covers(&self, queue: &str, remote: bool) -> bool {
        self.queue == queue || (self.queue == Self::ALL && remote)
    }

    /// The hold it puts on delivery at `now`, if any.
    pub fn hold(&self, now: DateTime<Utc>) -> Option<Hold> {
        if let Some(since) = self.disabled_since {
            return Some(Hold::Disabled { since });
        }
        self.scheduled_until
            .filter(|until| *until > now)
            .map(|until| Hold::Scheduled { until })
    }
}

/// The hold that `controls` put on a recipient waiting in `queue` at `now`: disabled wins over
/// scheduled, and the latest schedule wins over earlier ones.
pub fn hold_for(
    controls: &[QueueControl],
    queue: &str,
    remote: bool,
    now: DateTime<Utc>,
) -> Option<Hold> {
    let mut out: Option<Hold> = None;
    for h in controls
        .iter()
        .filter(|c| c.covers(queue, remote))
        .filter_map(|c| c.hold(now))
    {
        out = match (out, h) {
            (Some(d @ Hold::Disabled { .. }), _) | (_, d @ Hold::Disabled { .. }) => Some(d),
            (Some(Hold::Scheduled { until: a }), Hold::Scheduled { until: b }) => {
                Some(Hold::Scheduled { until: a.max(b) })
            }
            (None, h) => Some(h),
        };
    }
    out
}

impl QueuedRecipient {
    /// The NOTIFY that applies (RFC 3461 §4.1: FAILURE and DELAY when absent).
    pub fn effective_notify(&self) -> Notify {
        self.notify.unwrap_or(Notify::DEFAULT)
    }
}

/// A message to put into a local mailbox as part of settling a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxDrop {
    /// The user.
    pub user_id: i64,
    /// Per-recipient header lines (Return-Path, Delivered-To) stored before the shared content.
    pub prefix: Vec<u8>,
}

/// What a delivery attempt did to one recipient.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Delivered.
    Delivered {
        /// For local delivery, the mailbox copy to create in the same transaction.
        drop: Option<MailboxDrop>,
        /// The server that accepted it, for remote delivery.
        remote_mta: Option<String>,
        /// Handed to a server without DSN support.
        relayed: bool,
        /// Whether a success (or relayed) report is owed to the sender.
        report: bool,
        /// For remote delivery, how it went (`over TLSv1.3 …`, `without TLS (…)`).
        tls: Option<String>,
    },
    /// Failed for now; try again at `next_attempt`.
    Deferred {
        /// What went wrong.
        failure: Failure,
        /// When to try again.
        next_attempt: DateTime<Utc>,
        /// The queue it waits in: its link queue, or "unreachable" when no route was found.
        queue: QueueKind,
    },
    /// Failed for good; a report is owed (unless the sender is null or asked for none).
    Failed(Failure),
    /// Accepted by another server of the organization: kept as a shadow copy (waiting in
    /// [`QueueKind::Shadow`]) until that server confirms, or until `until`, when it is looked
    /// at again (resubmitted if that server is DOWN).
    Shadow {
        /// The server that accepted it.
        server: String,
        /// When to look again.
        until: DateTime<Utc>,
        /// True when an existing shadow is only kept longer (no new tracking events).
        renew: bool,
        /// How it went over (`over TLSv1.3 …`, `without TLS (…)`), for tracking.
        tls: Option<String>,
    },
}

impl Settle {
    /// Delivered into a local mailbox, with no report owed.
    pub fn local(drop: MailboxDrop) -> Settle {
        Settle::Delivered {
            drop: Some(drop),
            remote_mta: None,
            relayed: false,
            report: false,
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_table() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let c = |queue: &str, disabled: bool, until: Option<DateTime<Utc>>| QueueControl {
            queue: queue.into(),
            disabled_since: disabled.then_some(now - hour),
            scheduled_until: until,
            by: "admin".into(),
        };
        let link = "link:far.test";
        let cases: Vec<(Vec<QueueControl>, &str, bool, Option<Hold>)> = vec![
            (vec![], link, true, None),
            (
                vec![c(link, true, None)],
                link,
                true,
                Some(Hold::Disabled { since: now - hour }),
            ),
            (vec![c("link:other.test", true, None)], link, true, None),
            // "*" covers every outbound queue, never local delivery.
            (
                vec![c("*", true, None)],
                link,
                true,
                Some(Hold::Disabled { since: now - hour }),
            ),
            (vec![c("*", true, None)], "local", false, None),
            (
                vec![c(link, false, Some(now + hour))],
                link,
                true,
                Some(Hold::Scheduled { until: now + hour }),
            ),
            // A schedule that has passed holds nothing.
            (vec![c(link, false, Some(now - hour))], link, true, None),
            // Disabled wins over scheduled; the later schedule wins.
            (
                vec![c(link, false, Some(now + hour)), c("*", true, None)],
                link,
                true,
                Some(Hold::Disabled { since: now - hour }),
            ),
            (
                vec![
                    c(link, false, Some(now + hour)),
                    c("*", false, Some(now + hour + hour)),
                ],
                link,
                true,
                Some(Hold::Scheduled {
                    until: now + hour + hour,
                }),
            ),
        ];
        for (i, (controls, queue, remote, want)) in cases.into_iter().enumerate() {
            assert_eq!(hold_for(&controls, queue, remote, now), want, "case {i}");
        }
    }
}
