//! Recipient resolution: what an address of a local domain means, after aliases and lists.
//!
//! This is the categorizer's job in Exchange's terms (event 1033): an alias redirects (event 1042),
//! a distribution list expands to its members (which may be lists themselves), and every final
//! recipient appears once however many paths lead to it. A list that contains itself, directly or
//! through others, is a loop: the loop is cut and reported, and if nothing deliverable remains the
//! recipient is refused with `5.4.6`.

pub mod password;

use std::collections::HashSet;

use crate::config::Config;
use crate::queue::Route;
use crate::store::{DirEntry, Store, StoreError};

/// Deepest nesting of aliases and lists followed.
pub const MAX_DEPTH: usize = 20;
/// Most final recipients one address may expand to.
pub const MAX_EXPANSION: usize = 10_000;

/// One final recipient of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The final address (lower case).
    pub address: String,
    /// Where it goes. [`Route::Unresolved`] marks an alias or list member that does not exist.
    pub route: Route,
}

/// A step of an expansion, for tracking (event 1042).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The alias or list.
    pub from: String,
    /// One of its targets.
    pub to: String,
    /// "alias" or "list".
    pub kind: &'static str,
}

/// The outcome of resolving one address of a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Not in the directory.
    Unknown,
    /// Only loops: aliases and lists that lead back to themselves and nowhere else.
    Loop,
    /// More final recipients than [`MAX_EXPANSION`] or deeper than [`MAX_DEPTH`].
    TooLarge,
    /// Deliverable, to these targets.
    Targets {
        /// Final recipients, each once.
        targets: Vec<Target>,
        /// The alias and list steps taken.
        redirects: Vec<Redirect>,
        /// True when a loop was cut on the way.
        loop_cut: bool,
    },
}

/// Resolves `address` (lower case, local domain) through the directory.
pub async fn resolve(
    store: &dyn Store,
    config: &Config,
    address: &str,
) -> Result<Resolution, StoreError> {
    let mut targets = Vec::new();
    let mut redirects = Vec::new();
    let mut seen = HashSet::new();
    let mut loop_cut = false;
    // Depth-first, with the current path kept to tell a loop from a second path to the same place.
    let mut stack: Vec<(String, usize, Vec<String>)> = vec![(address.to_string(), 0, Vec::new())];
    while let Some((addr, depth, path)) = stack.pop() {
        if path.contains(&addr) {
            loop_cut = true;
            continue;
        }
        if !seen.insert(addr.clone()) {
            continue;
        }
        if depth > MAX_DEPTH || targets.len() > MAX_EXPANSION {
            return Ok(Resolution::TooLarge);
        }
        let local = addr
            .rsplit_once('@')
            .is_some_and(|(_, d)| config.is_local_domain(d));
        if !local {
            targets.push(Target {
                address: addr,
                route: Route::Remote,
            });
            continue;
        }
        let (members, kind) = match store.lookup(&addr).await? {
            None => {
                if depth == 0 {
                    return Ok(Resolution::Unknown);
                }
                targets.push(Target {
                    address: addr,
                    route: Route::Unresolved,
                });
                continue;
            }
            Some(DirEntry::User(u)) => {
                targets.push(Target {
                    address: u.address,
                    route: Route::Local { user_id: u.id },
                });
                continue;
            }
            Some(DirEntry::Alias(t)) => (t, "alias"),
            Some(DirEntry::List(m)) => (m, "list"),
        };
        let mut next_path = path.clone();
        next_path.push(addr.clone());
        for m in &members {
            redirects.push(Redirect {
                from: addr.clone(),
                to: m.clone(),
                kind,
            });
        }
        for m in members.into_iter().rev() {
            stack.push((m, depth + 1, next_path.clone()));
        }
    }
    if targets.is_empty() {
        return Ok(if loop_cut {
            Resolution::Loop
        } else {
            Resolution::Unknown
        });
    }
    Ok(Resolution::Targets {
        targets,
        redirects,
        loop_cut,
    })
}
