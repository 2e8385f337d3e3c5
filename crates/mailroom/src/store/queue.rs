//! The queue part of the store: submission, due work, settling, reports, quarantine.

use chrono::{DateTime, Utc};

use super::spool::Spool;
use super::StoreFuture;
use crate::model::{NewMessage, QueuedMessage, ReportState, Settle, Submitted};
use crate::track::{Event, EventBase};

/// The queue: messages from their submission until every recipient is settled and reported.
///
/// **One transaction per step.** Each method is one durable transaction with everything that
/// must happen with it: [`Queue::submit`] stores the content, the mailbox copies of the
/// recipients delivered at once, the queue rows and the tracking events together; [`Queue::settle`]
/// writes a local recipient's mailbox copy, its new state and its event 1028 together (what makes
/// local delivery exactly-once across crashes); [`Queue::record_reports`] queues a report with
/// the record that it was sent. This is why the mailboxes and the tracking log live in the same
/// engine as the queue.
pub trait Queue: Send + Sync {
    /// Where sessions write large message texts as they arrive ([`crate::store::spool`]).
    fn spool(&self) -> &Spool;

    /// Stores a new message with its recipients and events. Durable when it returns.
    fn submit(&self, msg: NewMessage) -> StoreFuture<'_, Submitted>;
    /// Stores several messages in one transaction (a message and the reports it causes at once).
    fn submit_batch(&self, msgs: Vec<NewMessage>) -> StoreFuture<'_, Vec<Submitted>>;
    /// Messages with work to do at `now`: a delivery attempt due (Ready, or Deferred until no
    /// later than `now`), a report pending, or a delay report due (arrived no later than
    /// `delay_cutoff` and still deferred). Frozen messages are left out. Row IDs above `after`,
    /// at most `limit`, oldest first. Unreadable messages are returned apart, by row ID with the
    /// reason, for [`Queue::quarantine`].
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
    /// The first octets of a queued message's content, at most `limit` beyond what the
    /// database holds: what a report quotes when it quotes the header section only.
    fn content_head(&self, content_id: i64, limit: u64) -> StoreFuture<'_, Vec<u8>>;
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

impl StoredText {
    /// A reader of the whole text from its start: the octets in the database, then the file.
    pub async fn open(&self) -> std::io::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin + '_>> {
        let head: &[u8] = &self.head;
        Ok(match &self.file {
            None => Box::new(head),
            Some(path) => {
                let f = tokio::fs::File::open(path).await?;
                Box::new(tokio::io::AsyncReadExt::chain(head, f))
            }
        })
    }
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

/// The state a recipient ended in after [`Queue::settle`].
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
