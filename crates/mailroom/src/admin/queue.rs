//! The queue viewer and its actions: what `mailroom queue …` does, for any surface.
//!
//! Works on the store directly, so it answers whether or not the server runs; a running server
//! sees the changes at its next poll (`queue.poll_interval`, one second by default).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::QueueId;
use crate::model::{Hold, QueueControl, QueueKind, QueuedMessage, RcptState, ReportState};
use crate::store::{
    AdminAction, ControlChange, QuarantineEntry, QueueAdmin, QueueFilter, QueueInfo, StoreError,
    SummaryRow, SUMMARY_BUCKETS,
};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The request is malformed or not allowed (the text says how to put it right).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which messages an operator means: a queue ID, a Message-ID or a queue name, and filters.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// A queue ID, a Message-ID (`<...@...>`), or a queue name (`local`, `retry`,
    /// `unreachable`, `dsn`, or a link queue such as `example.org`).
    pub target: Option<String>,
    /// Messages from this sender.
    pub sender: Option<String>,
    /// Messages to this recipient.
    pub recipient: Option<String>,
    /// Messages with a recipient in this domain.
    pub domain: Option<String>,
    /// Messages at least this old (`2h`, `3d`).
    pub older_than: Option<String>,
}

impl Selection {
    /// The store filter for this selection at `now`.
    pub fn filter(&self, now: DateTime<Utc>) -> Result<QueueFilter, AdminError> {
        let mut f = QueueFilter {
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            domain: self.domain.clone(),
            ..Default::default()
        };
        if let Some(t) = &self.target {
            if let Ok(q) = t.parse::<QueueId>() {
                f.queue_id = Some(q.to_string());
            } else if t.contains('@') {
                f.message_id = Some(t.clone());
            } else {
                f.queue = Some(QueueKind::parse(t));
            }
        }
        if let Some(o) = &self.older_than {
            let d = humantime::parse_duration(o)
                .map_err(|e| AdminError::Invalid(format!("--older-than {o:?}: {e}")))?;
            let d = chrono::Duration::from_std(d)
                .map_err(|e| AdminError::Invalid(format!("--older-than {o:?}: {e}")))?;
            f.older_than = Some(now - d);
        }
        Ok(f)
    }
}

/// One queue in the viewer.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    /// Its key (`local`, `link:example.org`).
    pub queue: String,
    /// Its name, as Exchange names it.
    pub name: String,
    /// Empty, Active, Disabled, Scheduled, Ready, Retry or Frozen.
    pub state: &'static str,
    /// Messages in it.
    pub messages: u64,
    /// Recipients in it.
    pub recipients: u64,
    /// Octets of its messages.
    pub size: u64,
    /// Arrival of its oldest message (RFC 3339).
    pub oldest: Option<String>,
    /// Age of its oldest message.
    pub oldest_age_seconds: Option<i64>,
    /// Its earliest next retry (RFC 3339).
    pub next_retry: Option<String>,
    /// The last error seen in it.
    pub last_error: Option<String>,
    /// Deliveries from it in progress.
    pub active: u64,
    /// Since when outbound mail to it is disabled (RFC 3339).
    pub disabled_since: Option<String>,
    /// Until when its delivery is scheduled to wait (RFC 3339).
    pub scheduled_until: Option<String>,
}

impl QueueView {
    fn new(q: &QueueInfo, now: DateTime<Utc>) -> QueueView {
        let (disabled_since, scheduled_until) = match &q.hold {
            Some(Hold::Disabled { since }) => (Some(since.to_rfc3339()), None),
            Some(Hold::Scheduled { until }) => (None, Some(until.to_rfc3339())),
            None => (None, None),
        };
        QueueView {
            queue: q.kind.key(),
            name: q.kind.describe(),
            state: q.state.as_str(),
            messages: q.messages,
            recipients: q.recipients,
            size: q.size,
            oldest: q.oldest.map(|t| t.to_rfc3339()),
            oldest_age_seconds: q.oldest.map(|t| (now - t).num_seconds().max(0)),
            next_retry: q.next_retry.map(|t| t.to_rfc3339()),
            last_error: q.last_error.clone(),
            active: q.active,
            disabled_since,
            scheduled_until,
        }
    }
}

/// `queue list`: every queue with its figures and state.
pub async fn list(
    store: &dyn QueueAdmin,
    now: DateTime<Utc>,
) -> Result<Vec<QueueView>, AdminError> {
    let queues = store.queues(now).await?;
    Ok(queues.iter().map(|q| QueueView::new(q, now)).collect())
}

/// One recipient of a queued message.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientView {
    /// The final address.
    pub address: String,
    /// The address as given at RCPT.
    pub original: String,
    /// `ready`, `active`, `retry`, `delivered` or `failed`.
    pub state: &'static str,
    /// Attempts so far.
    pub attempts: u32,
    /// The next attempt (RFC 3339), when it waits for a retry.
    pub next_attempt: Option<String>,
    /// The last reply or error.
    pub last_reply: Option<String>,
    /// Whether and how the sender was told.
    pub report: Option<String>,
    /// The queue it waits in.
    pub queue: Option<String>,
    /// Why its queue is held: `disabled`, or `scheduled until TIME`.
    pub held: Option<String>,
}

/// A queued message with its recipients.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Its queue ID.
    pub queue_id: String,
    /// Its Message-ID.
    pub message_id: Option<String>,
    /// The envelope sender (empty for the null sender).
    pub sender: String,
    /// When it arrived (RFC 3339).
    pub arrival: String,
    /// Octets.
    pub size: u64,
    /// Held by an administrator.
    pub frozen: bool,
    /// Its recipients.
    pub recipients: Vec<RecipientView>,
}

/// A recipient's state for the viewer: its name, the next attempt and the last reply.
pub fn rcpt_state(s: &RcptState) -> (&'static str, Option<String>, Option<String>) {
    let reply = |f: &crate::model::Failure| {
        f.diagnostic
            .clone()
            .unwrap_or_else(|| format!("{} {}", f.status, f.reason))
    };
    match s {
        RcptState::Ready => ("ready", None, None),
        RcptState::Deferred {
            next_attempt,
            last_error,
        } => (
            "retry",
            Some(next_attempt.to_rfc3339()),
            Some(reply(last_error)),
        ),
        RcptState::Delivered { remote_mta, .. } => (
            "delivered",
            None,
            remote_mta.as_ref().map(|m| format!("accepted by {m}")),
        ),
        RcptState::Failed { failure, .. } => ("failed", None, Some(reply(failure))),
    }
}

impl MessageView {
    /// The view of a queued message.
    pub fn new(m: &QueuedMessage) -> MessageView {
        let recipients = m
            .recipients
            .iter()
            .map(|r| {
                let (state, next, last) = rcpt_state(&r.state);
                RecipientView {
                    address: r.address.clone(),
                    original: r.original.clone(),
                    state: if r.active_since.is_some() {
                        "active"
                    } else {
                        state
                    },
                    attempts: r.attempts,
                    next_attempt: next,
                    last_reply: last,
                    report: match &r.report {
                        ReportState::None => None,
                        ReportState::Pending => Some("pending".to_string()),
                        ReportState::Sent(q) => Some(format!("sent as {q}")),
                        ReportState::Absorbed => Some("absorbed".to_string()),
                        ReportState::NotRequested => Some("not requested".to_string()),
                    },
                    queue: r.queue.as_ref().map(QueueKind::key),
                    held: r.held.as_ref().map(|h| match h {
                        Hold::Disabled { .. } => "disabled".to_string(),
                        Hold::Scheduled { until } => {
                            format!("scheduled until {}", until.to_rfc3339())
                        }
                    }),
                }
            })
            .collect();
        MessageView {
            queue_id: m.queue_id.clone(),
            message_id: m.message_id.clone(),
            sender: m.sender.clone(),
            arrival: m.arrival.to_rfc3339(),
            size: m.size,
            frozen: m.frozen,
            recipients,
        }
    }
}

/// `queue show`: the messages a selection means.
pub async fn show(
    store: &dyn QueueAdmin,
    filter: QueueFilter,
) -> Result<Vec<MessageView>, AdminError> {
    let msgs = store.queue_messages(filter).await?;
    Ok(msgs.iter().map(MessageView::new).collect())
}

/// A quarantined record.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineView {
    /// When it was quarantined (RFC 3339).
    pub time: String,
    /// Its queue ID, if that much was readable.
    pub queue_id: Option<String>,
    /// Why.
    pub reason: String,
    /// The raw record.
    pub record: String,
}

impl From<&QuarantineEntry> for QuarantineView {
    fn from(e: &QuarantineEntry) -> Self {
        QuarantineView {
            time: e.time.to_rfc3339(),
            queue_id: e.queue_id.clone(),
            reason: e.reason.clone(),
            record: e.record.clone(),
        }
    }
}

/// `queue show --quarantined`.
pub async fn quarantined(store: &dyn QueueAdmin) -> Result<Vec<QuarantineView>, AdminError> {
    Ok(store.quarantined().await?.iter().map(Into::into).collect())
}

/// What an action did.
#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    /// The action, in words.
    pub action: &'static str,
    /// Messages it touched.
    pub messages: usize,
}

/// `queue freeze|thaw|retry|delete`: applies an action to the selected messages (event 2010).
/// A retry of a queue also clears that queue's schedule, as Exchange's "force connection" does.
pub async fn act(
    store: &dyn QueueAdmin,
    filter: QueueFilter,
    action: AdminAction,
    by: &str,
) -> Result<ActionView, AdminError> {
    if let (AdminAction::Retry, Some(q)) = (action, &filter.queue) {
        if is_outbound(q) {
            store
                .queue_control(q.key(), ControlChange::Unschedule, by.to_string())
                .await?;
        }
    }
    let messages = store.queue_admin(filter, action, by.to_string()).await?;
    Ok(ActionView {
        action: action.describe(),
        messages,
    })
}

fn is_outbound(q: &QueueKind) -> bool {
    matches!(q, QueueKind::Link(_) | QueueKind::Unreachable)
}

/// The setting of an outbound queue, or of all of them.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    /// The queue's key, or `*` for all outbound queues.
    pub queue: String,
    /// Since when outbound mail to it is disabled (RFC 3339).
    pub disabled_since: Option<String>,
    /// Until when its delivery waits (RFC 3339).
    pub scheduled_until: Option<String>,
    /// Who set it.
    pub by: Option<String>,
}

/// The queue a disable, enable or schedule means: a link queue or `unreachable` by name, or
/// every outbound queue with `all`.
pub fn outbound_queue(name: Option<&str>, all: bool) -> Result<String, AdminError> {
    match (name, all) {
        (None, true) => Ok(QueueControl::ALL.to_string()),
        (Some(_), true) => Err(AdminError::Invalid(
            "give a queue or --all, not both".into(),
        )),
        (None, false) => Err(AdminError::Invalid(
            "give a queue (a link queue such as example.org, or unreachable), or --all for every outbound queue".into(),
        )),
        (Some(n), false) => {
            let q = QueueKind::parse(n);
            if !is_outbound(&q) {
                return Err(AdminError::Invalid(format!(
                    "{} is not an outbound queue; local delivery cannot be disabled or scheduled (freeze its messages instead)",
                    q.key()
                )));
            }
            Ok(q.key())
        }
    }
}

/// `queue disable|enable|schedule`: changes an outbound queue's setting; returns it as it now
/// stands.
pub async fn control(
    store: &dyn QueueAdmin,
    queue: String,
    change: ControlChange,
    by: &str,
) -> Result<ControlView, AdminError> {
    store
        .queue_control(queue.clone(), change, by.to_string())
        .await?;
    let now = store.queue_controls().await?;
    let c = now.into_iter().find(|c| c.queue == queue);
    Ok(ControlView {
        disabled_since: c
            .as_ref()
            .and_then(|c| c.disabled_since)
            .map(|t| t.to_rfc3339()),
        scheduled_until: c
            .as_ref()
            .and_then(|c| c.scheduled_until)
            .map(|t| t.to_rfc3339()),
        by: c.map(|c| c.by),
        queue,
    })
}

/// One line of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryView {
    /// Destination domain.
    pub domain: String,
    /// Recipients waiting.
    pub total: u64,
    /// Counts by age.
    pub buckets: [u64; 9],
    /// The upper bounds of the age buckets, in minutes (the last bucket is older).
    pub bucket_minutes: [u64; 8],
}

impl From<&SummaryRow> for SummaryView {
    fn from(r: &SummaryRow) -> Self {
        SummaryView {
            domain: r.domain.clone(),
            total: r.total,
            buckets: r.buckets,
            bucket_minutes: SUMMARY_BUCKETS,
        }
    }
}

/// `queue summary`: waiting recipients by domain and age.
pub async fn summary(
    store: &dyn QueueAdmin,
    now: DateTime<Utc>,
) -> Result<Vec<SummaryView>, AdminError> {
    Ok(store
        .queue_summary(now)
        .await?
        .iter()
        .map(Into::into)
        .collect())
}
