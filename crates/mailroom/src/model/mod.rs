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
