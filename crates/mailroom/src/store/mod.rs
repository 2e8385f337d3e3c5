//! Storage: the seam between mailroom's pipeline and its storage engines.
//!
//! One [`Store`] holds the directory (users, aliases, lists), the queue, the mailboxes and the
//! tracking log. They share one engine so that a state change and everything that must happen with
//! it commit together: a local delivery inserts the mailbox copy, settles the recipient and writes
//! event 1028 in one transaction, which is what makes delivery exactly-once across crashes.
//!
//! The embedded engine ([`sqlite`]) is the only one today; the traits are the seam a second
//! engine (PostgreSQL, for one server across several machines) will implement. Every write
//! that the pipeline waits on is durable when its future resolves (`fsync` included), and
//! concurrent writes share commits (group commit).

mod admin;
mod config;
mod directory;
mod folders;
mod mailbox;
mod maintenance;
mod org;
mod queue;
pub mod spool;
pub mod sqlite;
mod track;

pub use admin::*;
pub use config::*;
pub use directory::*;
pub use folders::*;
pub use mailbox::*;
pub use maintenance::*;
pub use org::*;
pub use queue::*;
pub use track::*;

pub use crate::model::{DirEntry, User};

/// Every part of the store's interface, to call its methods on an engine's own type (`use
/// crate::store::prelude::*`); through `dyn Store` they are at hand without it.
pub mod prelude {
    pub use super::{
        ConfigStore, Directory, Folders, Mailboxes, Maintenance, OrgStore, Queue, QueueAdmin,
        Store, Tracking,
    };
}

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

/// A boxed future returned by store methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (an I/O error, a locked database…).
    #[error("storage engine: {0}")]
    Engine(String),
    /// The disk is full: nothing was written; it may succeed once space returns.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The object already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request conflicts with the data (for example deleting a user whose mailbox holds mail).
    #[error("{0}")]
    Conflict(String),
    /// The user's quota does not leave room (RFC 9208 §4.1 OVERQUOTA).
    #[error("{0}")]
    OverQuota(String),
    /// A limit on what a user may make would be passed (RFC 5530 LIMIT): keywords.
    #[error("{0}")]
    Limit(String),
    /// Stored data could not be decoded.
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

/// The part of the store each stage uses, named after the stage: a stage takes its own (IMAP
/// an `Arc<dyn ImapStore>`, delivery a `dyn Queue`), so that it reaches nothing it has no
/// business with, and a second engine can be built and tested one stage at a time. Each is
/// made of the concern traits below, and any store that has them has it; [`Store`] has them
/// all as supertraits, so an `Arc<dyn Store>` becomes any of them (trait upcasting).
macro_rules! stage {
    ($(#[$doc:meta])* $name:ident: $first:ident $(+ $more:ident)*) => {
        $(#[$doc])*
        pub trait $name: $first $(+ $more)* + 'static {}
        impl<T: $first $(+ $more)* + 'static> $name for T {}
    };
}

stage!(
    /// IMAP sessions: logins and owners (`Directory`), folders and flags, message texts, and
    /// the spool that APPEND streams into (`Queue::spool`).
    ImapStore: Directory + Folders + Mailboxes + Queue
);
stage!(
    /// POP3 sessions: logins and maildrops.
    Pop3Store: Directory + Mailboxes
);
stage!(
    /// SMTP receive: recipients and lists, the spool, the organization's exchanges (moves,
    /// tracking queries, shadow releases).
    ReceiveStore: Directory + Mailboxes + OrgStore + Tracking + Queue
);
stage!(
    /// The queue manager: the queue, the tracking log it writes, and the directory that says
    /// where a report to a local sender goes.
    QueueStore: Queue + Tracking + Directory
);
stage!(
    /// Ingest: the queue it writes, and the directory that resolves a local sender.
    IngestStore: Queue + Directory
);
stage!(
    /// The organization service: who lives where, and the organization's state.
    OrgServiceStore: Directory + OrgStore
);

/// A storage engine: every part of the store, in one engine, so that a change and what must happen
/// with it commit together (see [`Queue`]). Split by concern so that each stage names only what it
/// uses (the stage traits above); any type with every part is a `Store`.
pub trait Store:
    Directory
    + Queue
    + QueueAdmin
    + Mailboxes
    + Folders
    + Tracking
    + OrgStore
    + ConfigStore
    + Maintenance
    + ImapStore
    + Pop3Store
    + ReceiveStore
    + QueueStore
    + IngestStore
    + OrgServiceStore
    + 'static
{
}

impl<T> Store for T where
    T: Directory
        + Queue
        + QueueAdmin
        + Mailboxes
        + Folders
        + Tracking
        + OrgStore
        + ConfigStore
        + Maintenance
        + 'static
{
}
