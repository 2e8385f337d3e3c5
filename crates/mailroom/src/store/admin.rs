//! The queue viewer part of the store: figures by queue, the operator's actions and settings.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{Hold, QueueControl, QueueKind, QueuedMessage};

/// The queue viewer's figures and the operator's actions.
pub trait QueueAdmin: Send + Sync {
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
