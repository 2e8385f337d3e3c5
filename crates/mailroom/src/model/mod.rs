//! The domain types every stage shares, on the ground floor: a message and its recipients as the
//! queue holds them, their states and outcomes, the administrator's holds, the directory's
//! entries and the expansion of an address. Nothing here depends on another module of the crate
//! (but the tracking events a submission carries), so that receive, ingest, queue, route,
//! deliver, dsn and the store can all use them without depending on each other.

pub mod directory;
pub mod meta;
pub mod queue;

pub use directory::*;
pub use meta::OrgMeta;
pub use queue::*;

/// The configuration in effect, as the supervisor last applied it: what a long-lived part
/// (the queue manager, outbound delivery) reads at each piece of work, so that the sections a
/// reload applies (`outbound.`, issue 21: `outbound.smart_host` as Postfix's `relayhost`)
/// take effect without a restart.
#[derive(Debug, Clone)]
pub struct LiveConfig(tokio::sync::watch::Receiver<std::sync::Arc<crate::config::Config>>);

impl LiveConfig {
    /// Follows `rx`.
    pub fn new(rx: tokio::sync::watch::Receiver<std::sync::Arc<crate::config::Config>>) -> Self {
        LiveConfig(rx)
    }

    /// A configuration that never changes (tests, one-shot commands).
    pub fn fixed(config: std::sync::Arc<crate::config::Config>) -> Self {
        LiveConfig(tokio::sync::watch::channel(config).1)
    }

    /// The configuration now.
    pub fn get(&self) -> std::sync::Arc<crate::config::Config> {
        self.0.borrow().clone()
    }
}
