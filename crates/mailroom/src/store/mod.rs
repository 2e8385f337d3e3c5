//! Storage: the seam between mailroom's pipeline and its storage engines.
//!
//! One [`Store`] holds the directory (users, aliases, lists), the queue, the mailboxes and the
//! tracking log. They share one engine so that a state change and everything that must happen with
//! it commit together: a local delivery inserts the mailbox copy, settles the recipient and writes
//! event 1028 in one transaction, which is what makes delivery exactly-once across crashes.
//!
//! The embedded engine ([`sqlite`]) is the default; a PostgreSQL engine for the scale-out
//! organization implements the same trait. Every write that the pipeline waits on is durable when
//! its future resolves (`fsync` included), and concurrent writes share commits (group commit).

pub mod spool;
pub mod sqlite;

pub use crate::model::{DirEntry, User};

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::model::{
    Hold, NewMessage, QueueControl, QueueKind, QueuedMessage, ReportState, Settle, Submitted,
};
use crate::track::{Event, EventBase};

/// A boxed future returned by store methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (an I/O error, a locked database…).
    #[error("storage engine: {0}")]
    Engine(String),
    /// The disk is full: nothing was written; it may succeed once space returns.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The object already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request conflicts with the data (for example deleting a user whose mailbox holds mail).
    #[error("{0}")]
    Conflict(String),
    /// Stored data could not be decoded.
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

/// A message in a mailbox, as POP3 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEntry {
    /// Store ID.
    pub id: i64,
    /// Size in octets as delivered (prefix and content).
    pub size: u64,
    /// A unique, permanent identifier (POP3 UIDL, RFC 1939 §7).
    pub uidl: String,
}

/// Which tracking events to return.
#[derive(Debug, Clone, Default)]
pub struct TrackFilter {
    /// A Message-ID (with or without brackets) or a queue ID.
    pub message_id: Option<String>,
    /// An envelope sender.
    pub sender: Option<String>,
    /// A recipient (original or final).
    pub recipient: Option<String>,
    /// Only messages with events at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// The storage engine interface.
pub trait Store: Send + Sync + 'static {
    /// Where sessions write large message texts as they arrive ([`spool`]).
    fn spool(&self) -> &spool::Spool;

    // --- directory -------------------------------------------------------------------------
    /// Looks up an address (lower case).
    fn lookup(&self, address: &str) -> StoreFuture<'_, Option<DirEntry>>;
    /// Resolves an address of a local domain through aliases and lists to its final recipients
    /// ([`crate::model::expand`]), in one read. `local_domains` are the server's domains.
    fn resolve(
        &self,
        address: String,
        local_domains: Vec<String>,
    ) -> StoreFuture<'_, crate::model::Resolution>;
    /// The user and password hash for a login name.
    fn user_auth(&self, address: &str) -> StoreFuture<'_, Option<(User, String)>>;
    /// Adds a user with an INBOX. Fails if the address is already a user, alias or list.
    fn user_add(
        &self,
        address: &str,
        password_hash: Option<String>,
        quota: Option<u64>,
    ) -> StoreFuture<'_, i64>;
    /// Deletes a user. Refused if the mailbox holds mail unless `purge`.
    fn user_del(&self, address: &str, purge: bool) -> StoreFuture<'_, ()>;
    /// All users.
    fn user_list(&self) -> StoreFuture<'_, Vec<User>>;
    /// Sets a user's password hash.
    fn user_passwd(&self, address: &str, password_hash: String) -> StoreFuture<'_, ()>;
    /// Sets a user's quota.
    fn user_quota(&self, address: &str, quota: Option<u64>) -> StoreFuture<'_, ()>;
    /// Adds targets to an alias (creating it).
    fn alias_add(&self, alias: &str, targets: Vec<String>) -> StoreFuture<'_, ()>;
    /// Deletes an alias.
    fn alias_del(&self, alias: &str) -> StoreFuture<'_, ()>;
    /// All aliases with their targets.
    fn alias_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;
    /// Adds members to a list (creating it).
    fn list_add(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// Removes members from a list, or the whole list when `members` is empty.
    fn list_del(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// All lists with their members.
    fn list_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;

    // --- queue -----------------------------------------------------------------------------
    /// Stores a new message with its recipients and events. Durable when it returns.
    fn submit(&self, msg: NewMessage) -> StoreFuture<'_, Submitted>;
    /// Stores several messages in one transaction (a message and the reports it causes at once).
    fn submit_batch(&self, msgs: Vec<NewMessage>) -> StoreFuture<'_, Vec<Submitted>>;
    /// Messages with work to do at `now`: a delivery attempt due (Ready, or Deferred until no
    /// later than `now`), a report pending, or a delay report due (arrived no later than
    /// `delay_cutoff` and still deferred). Frozen messages are left out. Row IDs above `after`,
    /// at most `limit`, oldest first. Unreadable messages are returned apart, by row ID with the
    /// reason, for [`Store::quarantine`].
    fn due(
        &self,
        now: DateTime<Utc>,
        delay_cutoff: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> StoreFuture<'_, Loaded>;
    /// One message by row ID, if still queued.
    fn queued(&self, rowid: i64) -> StoreFuture<'_, Option<QueuedMessage>>;
    /// Messages whose stored values look damaged, checked by loading them: the start-up sweep
    /// that finds unreadable records before they come due.
    fn suspects(&self) -> StoreFuture<'_, Loaded>;
    /// The content of a queued message, whole in memory (for reports).
    fn content(&self, content_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// The content of a queued message as a text to stream (for outbound delivery).
    fn content_text(&self, content_id: i64) -> StoreFuture<'_, StoredText>;
    /// Deletes spool files whose content is gone (after the commit that let them go).
    fn collect_spool(&self) -> StoreFuture<'_, usize>;
    /// Settles recipients that are still Ready, atomically with their mailbox copies and their
    /// tracking events (1028 delivered, 2001 failed; built from `base`). A local drop that would
    /// exceed the user's quota settles as failed `5.2.2` instead. Recipients already settled are
    /// skipped, which makes a repeated attempt harmless. Removes the message when nothing is left
    /// to do. Returns the state each recipient ended in.
    fn settle(
        &self,
        message: i64,
        base: EventBase,
        results: Vec<(i64, Settle)>,
    ) -> StoreFuture<'_, Vec<(i64, SettledAs)>>;
    /// Records how outcomes were reported and which delays were dealt with, atomically with the
    /// report message (if any) and events; removes the message when nothing is left to do.
    /// Returns the report's row ID.
    fn record_reports(
        &self,
        message: i64,
        reports: Vec<(i64, ReportState)>,
        delays_done: Vec<i64>,
        report_message: Option<NewMessage>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Option<i64>>;
    /// Records that a transfer of `message` from `queue` has begun (the queue shows Active until
    /// the outcome is settled), with its events (1020).
    fn transfer_started(
        &self,
        message: i64,
        queue: String,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;
    /// Forgets every transfer in progress: called when the server starts, since none can be.
    fn clear_active(&self) -> StoreFuture<'_, ()>;
    /// Moves an unreadable message to quarantine (event 2011); the rest of the queue flows on.
    fn quarantine(&self, message: i64, reason: String, server: String) -> StoreFuture<'_, ()>;

    // --- queue viewer ----------------------------------------------------------------------
    /// Every queue with its figures: the system queues always, link queues when not empty.
    fn queues(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<QueueInfo>>;
    /// The messages that match a filter, with their recipients.
    fn queue_messages(&self, filter: QueueFilter) -> StoreFuture<'_, Vec<QueuedMessage>>;
    /// Applies an administrator's action to the matching messages (events 2010); returns how many
    /// messages it touched.
    fn queue_admin(
        &self,
        filter: QueueFilter,
        action: AdminAction,
        server: String,
    ) -> StoreFuture<'_, usize>;
    /// Changes an administrator's setting of an outbound queue (or of all, `*`): disable or
    /// enable outbound mail, schedule delivery for later or clear the schedule.
    fn queue_control(
        &self,
        queue: String,
        change: ControlChange,
        by: String,
    ) -> StoreFuture<'_, ()>;
    /// The administrator's queue settings in force.
    fn queue_controls(&self) -> StoreFuture<'_, Vec<QueueControl>>;
    /// Queued recipients counted by destination domain and age (like Postfix's qshape).
    fn queue_summary(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<SummaryRow>>;
    /// Quarantined records.
    fn quarantined(&self) -> StoreFuture<'_, Vec<QuarantineEntry>>;

    // --- mailboxes -------------------------------------------------------------------------
    /// The messages in a user's INBOX, in delivery order.
    fn mailbox_list(&self, user_id: i64) -> StoreFuture<'_, Vec<MailEntry>>;
    /// A message as delivered (prefix and content).
    fn mail_read(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, Vec<u8>>;
    /// Deletes messages from a user's mailbox; returns how many were deleted.
    fn mail_delete(&self, user_id: i64, mail_ids: Vec<i64>) -> StoreFuture<'_, usize>;

    // --- tracking --------------------------------------------------------------------------
    /// Writes events on their own (most events are written with the change they describe).
    fn track(&self, events: Vec<Event>) -> StoreFuture<'_, ()>;
    /// Events of the messages that match the filter, in time order.
    fn track_query(&self, filter: TrackFilter) -> StoreFuture<'_, Vec<Event>>;
}

/// A stored message text to stream: the octets kept in the database, then its spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredText {
    /// The octets in the database: the whole text, or the fields added here before the file.
    pub head: Vec<u8>,
    /// The spool file with the rest, for a large text.
    pub file: Option<std::path::PathBuf>,
    /// The whole size in octets.
    pub size: u64,
    /// True when an octet has the high bit set.
    pub eight_bit: bool,
}

/// Messages loaded from the queue, and those that could not be read (row ID and reason), which
/// are to be quarantined rather than dropped.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The readable messages.
    pub messages: Vec<QueuedMessage>,
    /// Unreadable messages: row ID and what is wrong.
    pub unreadable: Vec<(i64, String)>,
}

/// The state a recipient ended in after [`Store::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettledAs {
    /// Delivered now.
    Delivered,
    /// Failed now (perhaps converted from delivered by the quota check).
    Failed {
        /// Status.
        status: String,
        /// Reason.
        reason: String,
    },
    /// Deferred for a retry.
    Deferred,
    /// It was no longer open (settled before, for example by an earlier attempt).
    AlreadySettled,
}

/// Which queued messages an operator means.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// One message by queue ID.
    pub queue_id: Option<String>,
    /// Messages by Message-ID (without brackets).
    pub message_id: Option<String>,
    /// Messages with a recipient waiting in this queue.
    pub queue: Option<QueueKind>,
    /// By envelope sender.
    pub sender: Option<String>,
    /// By recipient (final or as given).
    pub recipient: Option<String>,
    /// By recipient domain.
    pub domain: Option<String>,
    /// Messages that arrived at or before this time.
    pub older_than: Option<DateTime<Utc>>,
}

impl QueueFilter {
    /// True when the filter selects nothing in particular (everything).
    pub fn is_everything(&self) -> bool {
        self.queue_id.is_none()
            && self.message_id.is_none()
            && self.queue.is_none()
            && self.sender.is_none()
            && self.recipient.is_none()
            && self.domain.is_none()
            && self.older_than.is_none()
    }
}

/// An operator's action on queued messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Hold: no delivery attempts until thawed.
    Freeze,
    /// Release a hold.
    Thaw,
    /// Attempt waiting recipients now.
    Retry,
    /// Remove from the queue; with `ndr`, the sender is told (status 5.3.2).
    Delete {
        /// Send a non-delivery report.
        ndr: bool,
    },
}

impl AdminAction {
    /// The action in words, for tracking.
    pub fn describe(self) -> &'static str {
        match self {
            AdminAction::Freeze => "frozen by an administrator",
            AdminAction::Thaw => "thawed by an administrator",
            AdminAction::Retry => "retry requested by an administrator",
            AdminAction::Delete { ndr: true } => "deleted by an administrator, with NDR",
            AdminAction::Delete { ndr: false } => "deleted by an administrator, without NDR",
        }
    }
}

/// A change to an administrator's setting of an outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlChange {
    /// Stop outbound mail to it (Exchange's "disable outbound mail"): nothing is attempted
    /// until it is enabled again; mail keeps arriving and waits.
    Disable,
    /// Let outbound mail flow again.
    Enable,
    /// Hold its delivery until this time.
    Schedule(DateTime<Utc>),
    /// Clear a schedule: deliver as soon as due.
    Unschedule,
}

/// The state of a queue, as the queue viewer shows it (Exchange's states), in the order they
/// take precedence: a delivery in progress shows as Active whatever else holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Nothing in it.
    Empty,
    /// A delivery from it is in progress.
    Active,
    /// An administrator disabled outbound mail to it (or to all).
    Disabled,
    /// An administrator scheduled its delivery for later.
    Scheduled,
    /// Work is due now.
    Ready,
    /// Everything in it waits for a retry.
    Retry,
    /// Everything in it is frozen.
    Frozen,
}

impl QueueState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Empty => "Empty",
            QueueState::Active => "Active",
            QueueState::Disabled => "Disabled",
            QueueState::Scheduled => "Scheduled",
            QueueState::Ready => "Ready",
            QueueState::Retry => "Retry",
            QueueState::Frozen => "Frozen",
        }
    }
}

/// One queue's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    /// Which queue.
    pub kind: QueueKind,
    /// Its state.
    pub state: QueueState,
    /// Messages in it.
    pub messages: u64,
    /// Recipients in it.
    pub recipients: u64,
    /// Total size of its messages, in octets.
    pub size: u64,
    /// Arrival time of its oldest message.
    pub oldest: Option<DateTime<Utc>>,
    /// The earliest next retry among its waiting recipients.
    pub next_retry: Option<DateTime<Utc>>,
    /// The most recent error seen in it.
    pub last_error: Option<String>,
    /// Deliveries from it in progress.
    pub active: u64,
    /// The administrator's hold on it, if any.
    pub hold: Option<Hold>,
}

/// One line of `queue summary`: recipients to a domain, by age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// Destination domain.
    pub domain: String,
    /// Total recipients.
    pub total: u64,
    /// Counts by age: under 5, 10, 20, 40, 80, 160, 320, 640 minutes, and older.
    pub buckets: [u64; 9],
}

/// The age buckets of [`SummaryRow`], in minutes (upper bounds).
pub const SUMMARY_BUCKETS: [u64; 8] = [5, 10, 20, 40, 80, 160, 320, 640];

/// A quarantined queue record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// When it was quarantined.
    pub time: DateTime<Utc>,
    /// Its queue ID, if that much was readable.
    pub queue_id: Option<String>,
    /// Why.
    pub reason: String,
    /// The raw record, as text.
    pub record: String,
}
