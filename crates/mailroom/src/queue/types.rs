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

/// Whether the sender has been told about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportState {
    /// Not yet: a report must still be generated (the "DSN messages pending submission" work).
    Pending,
    /// A non-delivery report was queued under this queue ID.
    Sent(String),
    /// The sender is null: the failure was absorbed (event 1018).
    Absorbed,
    /// NOTIFY excluded FAILURE: no report, by the sender's choice.
    NotRequested,
}

/// A recipient's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Waiting for a delivery attempt.
    Ready,
    /// Delivered; final.
    Delivered {
        /// When.
        at: DateTime<Utc>,
    },
    /// Failed permanently; final.
    Failed {
        /// RFC 3463 status (class 5).
        status: Status,
        /// The reason in plain words, for the NDR's human part.
        reason: String,
        /// The remote server's reply or local diagnostic, for `Diagnostic-Code`.
        diagnostic: Option<String>,
        /// When.
        at: DateTime<Utc>,
        /// Whether the sender was told.
        report: ReportState,
    },
}

impl RcptState {
    /// True for Delivered and Failed.
    pub fn is_final(&self) -> bool {
        !matches!(self, RcptState::Ready)
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
    pub content: Vec<u8>,
    /// Resolved recipients.
    pub recipients: Vec<NewRecipient>,
    /// Tracking events to write in the same transaction.
    pub events: Vec<Event>,
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
}

impl QueuedRecipient {
    /// The NOTIFY that applies (RFC 3461 §4.1: FAILURE and DELAY when absent).
    pub fn effective_notify(&self) -> Notify {
        self.notify.unwrap_or(Notify::DEFAULT)
    }
}

/// A message to put into a local mailbox as part of settling a recipient.
#[derive(Debug, Clone)]
pub struct MailboxDrop {
    /// The user.
    pub user_id: i64,
    /// Per-recipient header lines (Return-Path, Delivered-To) stored before the shared content.
    pub prefix: Vec<u8>,
}

/// How one recipient was settled by a delivery attempt.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Delivered; for local delivery, the mailbox copy to create in the same transaction.
    Delivered(Option<MailboxDrop>),
    /// Failed permanently.
    Failed {
        /// Status (class 5).
        status: Status,
        /// Reason in plain words.
        reason: String,
        /// Diagnostic for `Diagnostic-Code`.
        diagnostic: Option<String>,
    },
}
