//! The queue: the durable state of every accepted message until each recipient is settled and
//! reported, and the manager that drives delivery, retries, expiry and reports.

mod attempt;
pub mod clock;
pub mod manager;
mod report;
pub mod retry;
pub mod types;

#[cfg(test)]
mod tests;

pub use report::{report_message, resolve_sender};
pub use types::*;
