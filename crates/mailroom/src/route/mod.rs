//! Routing: which delivery target serves a recipient.
//!
//! With one server, a recipient of a local domain goes to the local mailbox store and any other
//! goes out over SMTP. The organization's routing groups, connectors and link state extend this
//! function; the queue asks it and nothing else.

use crate::queue::{QueuedRecipient, Route};

/// The next hop of a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The local mailbox store (including recipients that turned out not to exist).
    Local,
    /// Another server, for this domain.
    Remote(String),
}

/// Chooses the next hop for a recipient.
pub fn next_hop(rcpt: &QueuedRecipient) -> NextHop {
    match rcpt.route {
        Route::Local { .. } | Route::Unresolved => NextHop::Local,
        Route::Remote => NextHop::Remote(
            rcpt.address
                .rsplit_once('@')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default(),
        ),
    }
}
