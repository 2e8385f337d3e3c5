//! The organization part of the store: this server's membership and the replicated state.

use super::StoreFuture;
use crate::org::{Membership, OrgState};

/// This server's membership in an organization and the state it holds.
///
/// Every change goes through [`OrgStore::org_merge`], one transaction that reads what is stored,
/// merges and writes back: the CLI's edits and the server's replication may run at once, and
/// merging (not overwriting) is what keeps both.
pub trait OrgStore: Send + Sync {
    /// The membership and state, if this server is in an organization.
    fn org(&self) -> StoreFuture<'_, Option<(Membership, OrgState)>>;
    /// Makes this server a member (`org create`, `org join`); refused when it already is one.
    fn org_init(&self, membership: Membership, state: OrgState) -> StoreFuture<'_, ()>;
    /// Merges `state` into the stored state: the result, and whether the stored state changed.
    fn org_merge(&self, state: OrgState) -> StoreFuture<'_, (OrgState, bool)>;
    /// Leaves the organization (forgets membership and state).
    fn org_leave(&self) -> StoreFuture<'_, ()>;
}
