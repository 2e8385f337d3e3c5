//! The tracking part of the store: the event log and its search.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::track::Event;

/// The tracking log: typed events, searched by message, sender and recipient.
pub trait Tracking: Send + Sync {
    /// Writes events on their own (most events are written with the change they describe).
    fn track(&self, events: Vec<Event>) -> StoreFuture<'_, ()>;
    /// Events of the messages that match the filter, in time order.
    fn track_query(&self, filter: TrackFilter) -> StoreFuture<'_, Vec<Event>>;
}

/// Which tracking events to return (also sent to other servers by `track --org`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
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
