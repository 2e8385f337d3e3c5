//! The queue: the durable state of every accepted message until each recipient is settled and
//! reported, and the manager that drives delivery.

pub mod manager;
pub mod types;

#[cfg(test)]
mod tests;

pub use types::*;
