//! The tracking part of the store: the event log and its search.

use super::StoreFuture;
use crate::track::Event;

/// The tracking log: typed events, searched by message, sender and recipient.
pub trait Tracking: Send + Sync {
    /// Writes events on their own (most events are written with the change they describe).
    fn track(&self, events: Vec<Event>) -> StoreFuture<'_, ()>;
    /// Events of the messages that match the filter, in time order.
    fn track_query(&self, filter: TrackFilter) -> StoreFuture<'_, Vec<Event>>;
}

pub use crate::track::TrackFilter;
