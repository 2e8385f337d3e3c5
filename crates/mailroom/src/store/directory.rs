//! The directory part of the store: users, aliases and distribution lists.

use super::StoreFuture;
use crate::model::{DirEntry, User};

/// The directory: users, aliases and distribution lists.
pub trait Directory: Send + Sync {
    /// Looks up an address (lower case).
    fn lookup(&self, address: &str) -> StoreFuture<'_, Option<DirEntry>>;
    /// Resolves an address of a local domain through aliases and lists to its final recipients
    /// ([`crate::model::expand`]), in one read. `local_domains` are the server's domains.
    fn resolve(
        &self,
        address: String,
        local_domains: Vec<String>,
        limits: crate::model::ExpansionLimits,
    ) -> StoreFuture<'_, crate::model::Resolution>;
    /// The user and password hash for a login name.
    fn user_auth(&self, address: &str) -> StoreFuture<'_, Option<(User, String)>>;
    /// Adds a user with an INBOX. Fails if the address is already a user, alias or list.
    fn user_add(
        &self,
        address: &str,
        password_hash: Option<String>,
        quota: Option<u64>,
    ) -> StoreFuture<'_, i64>;
    /// Deletes a user. Refused if the mailbox holds mail unless `purge`.
    fn user_del(&self, address: &str, purge: bool) -> StoreFuture<'_, ()>;
    /// All users.
    fn user_list(&self) -> StoreFuture<'_, Vec<User>>;
    /// Sets a user's password hash.
    fn user_passwd(&self, address: &str, password_hash: String) -> StoreFuture<'_, ()>;
    /// Every user's address and stored credential (users without a password are left out),
    /// for the checks that read credentials in bulk (doctor).
    fn user_credentials(&self) -> StoreFuture<'_, Vec<(String, String)>>;
    /// Replaces a user's credential with `new` only if it is still `old` (a password set
    /// meanwhile wins); whether it was replaced. Completes a credential made before SCRAM.
    fn user_password_upgrade(
        &self,
        address: &str,
        old: String,
        new: String,
    ) -> StoreFuture<'_, bool>;
    /// Sets a user's quota.
    fn user_quota(&self, address: &str, quota: Option<u64>) -> StoreFuture<'_, ()>;
    /// Adds targets to an alias (creating it).
    fn alias_add(&self, alias: &str, targets: Vec<String>) -> StoreFuture<'_, ()>;
    /// Deletes an alias.
    fn alias_del(&self, alias: &str) -> StoreFuture<'_, ()>;
    /// All aliases with their targets.
    fn alias_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;
    /// Adds members to a list (creating it).
    fn list_add(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// Removes members from a list, or the whole list when `members` is empty.
    fn list_del(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()>;
    /// All lists with their members.
    fn list_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>>;
    /// A list's policy (the default for a list without one); `None` when it is not a list.
    fn list_policy(&self, list: &str) -> StoreFuture<'_, Option<crate::model::ListPolicy>>;
    /// Sets a list's policy; fails when it is not a list.
    fn list_set_policy(&self, list: &str, policy: crate::model::ListPolicy) -> StoreFuture<'_, ()>;
}
