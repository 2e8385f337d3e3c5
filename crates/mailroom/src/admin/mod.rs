//! Administration: the operations an operator performs and the views they read, as library
//! code that every surface calls: the command line today, the admin API and `doctor` next.
//!
//! Each operation takes a store and plain arguments, and returns a view that serializes to the
//! JSON the `--json` flags print (a contract that scripts rely on: fields are only ever added).
//! Text rendering stays with the command line.
//!
//! - [`queue`]: the queue viewer (Exchange's) and its actions;
//! - [`config`]: the config store's changes and checks.

pub mod config;
pub mod queue;
