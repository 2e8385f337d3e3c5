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
    /// When the stored state last changed (a cheap check before reading it all), if any.
    fn org_changed_at(&self) -> StoreFuture<'_, Option<i64>>;
    /// Makes this server a member (`org create`, `org join`); refused when it already is one.
    fn org_init(&self, membership: Membership, state: OrgState) -> StoreFuture<'_, ()>;
    /// Merges `state` into the stored state: the result, and whether the stored state changed.
    fn org_merge(&self, state: OrgState) -> StoreFuture<'_, (OrgState, bool)>;
    /// Leaves the organization (forgets membership and state).
    fn org_leave(&self) -> StoreFuture<'_, ()>;
    /// Lets go of the shadow copies held for `server` of the messages with these organization
    /// ids (it confirmed them; `me` is this server's name); the number of recipients released.
    fn shadow_release(
        &self,
        me: String,
        server: String,
        ids: Vec<String>,
    ) -> StoreFuture<'_, usize>;
    /// Confirmations owed to other servers: (server, organization ids), at most `limit` ids.
    fn discharges(&self, limit: usize) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;
    /// Forgets confirmations that were delivered.
    fn discharged(&self, server: String, ids: Vec<String>) -> StoreFuture<'_, ()>;
}
