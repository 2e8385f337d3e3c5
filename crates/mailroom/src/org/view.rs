//! The running server's view of its organization: the membership and the state last merged,
//! swapped as a whole when replication or an operator changes it, read without waiting by every
//! session and delivery.

use std::sync::{Arc, RwLock};

use super::{Membership, OrgState};

/// The organization as this server sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// This server's membership.
    pub membership: Membership,
    /// The replicated state.
    pub state: OrgState,
}

impl Snapshot {
    /// This server's name in the organization.
    pub fn me(&self) -> &str {
        &self.membership.me
    }

    /// The home server of an organization user homed on another server.
    pub fn remote_home(&self, address: &str) -> Option<&str> {
        self.state
            .dir
            .home_of(address)
            .filter(|h| !h.eq_ignore_ascii_case(self.me()))
    }
}

/// A shared, swappable [`Snapshot`] (none: this server is in no organization).
#[derive(Debug, Default)]
pub struct OrgView {
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Signalled when a session merged a change from another server (to pass it on).
    pub changed: tokio::sync::Notify,
}

impl OrgView {
    /// A view of `snapshot`.
    pub fn new(snapshot: Option<Snapshot>) -> Arc<OrgView> {
        Arc::new(OrgView {
            current: RwLock::new(snapshot.map(Arc::new)),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The current snapshot.
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    /// Replaces the snapshot.
    pub fn set(&self, snapshot: Option<Snapshot>) {
        if let Ok(mut g) = self.current.write() {
            *g = snapshot.map(Arc::new);
        }
    }

    /// Replaces the state, keeping the membership (nothing when in no organization).
    pub fn set_state(&self, state: OrgState) {
        if let Ok(mut g) = self.current.write() {
            if let Some(cur) = g.as_ref() {
                let membership = cur.membership.clone();
                *g = Some(Arc::new(Snapshot { membership, state }));
            }
        }
    }

    /// True when `domain` is one of the organization's accepted domains.
    pub fn accepts(&self, domain: &str) -> bool {
        self.get().is_some_and(|s| s.state.dir.accepts(domain))
    }
}
