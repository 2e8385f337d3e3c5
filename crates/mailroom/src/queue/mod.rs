//! The queue: the durable state of every accepted message until each recipient is settled and
//! reported, and the manager that drives delivery, retries, expiry and reports.

mod attempt;
pub mod clock;
mod log;
pub mod manager;
mod report;
pub mod retry;

#[cfg(test)]
mod tests;

// The queue's own modules name the shared types as `super::X`.
use crate::model::*;
