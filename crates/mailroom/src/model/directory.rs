//! The directory's shape: users, aliases and lists as entries, and the expansion of an address
//! to its final recipients (pure: any way of looking an entry up will do, and the store runs it
//! inside one read).
//!
//! This is the categorizer's job in Exchange's terms (event 1033): an alias redirects (event 1042),
//! a distribution list expands to its members (which may be lists themselves), and every final
//! recipient appears once however many paths lead to it. A list that contains itself, directly or
//! through others, is a loop: the loop is cut and reported, and if nothing deliverable remains the
//! recipient is refused with `5.4.6`.

use std::collections::HashSet;

use super::queue::Route;

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Directory ID.
    pub id: i64,
    /// The address, lower case.
    pub address: String,
    /// Mailbox quota in octets; `None` is unlimited.
    pub quota: Option<u64>,
    /// Octets in the mailbox now.
    pub used: u64,
    /// Messages in the mailbox now.
    pub messages: u64,
}

/// What an address is in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEntry {
    /// A user with a mailbox.
    User(User),
    /// An alias: mail is redirected to the targets.
    Alias(Vec<String>),
    /// A distribution list: mail is expanded to the members (which may be lists).
    List(Vec<String>),
}

/// Who may post to a distribution list (Exchange's "accept messages from").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Posting {
    /// Anyone, from anywhere.
    #[default]
    Anyone,
    /// Its members only (a final recipient of its expansion, or a direct member).
    Members,
    /// Senders of the organization: logged-in users, clients inside, servers of the
    /// organization.
    Local,
}

/// A distribution list's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListPolicy {
    /// Who may post.
    pub post: Posting,
    /// Whether members outside this server's domains may be added.
    pub outside_members: bool,
}

impl Default for ListPolicy {
    fn default() -> Self {
        ListPolicy {
            post: Posting::Anyone,
            outside_members: true,
        }
    }
}

/// How far an expansion may go (`smtp.max_expansion`, `smtp.max_expansion_depth`): past either,
/// the address is refused as too large (`550 5.5.3`) rather than expanded without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpansionLimits {
    /// Most final recipients one address may expand to.
    pub max_recipients: usize,
    /// Deepest nesting of aliases and lists followed.
    pub max_depth: usize,
}

impl Default for ExpansionLimits {
    fn default() -> Self {
        ExpansionLimits {
            max_recipients: 10_000,
            max_depth: 20,
        }
    }
}

/// One final recipient of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The final address (lower case).
    pub address: String,
    /// Where it goes. [`Route::Unresolved`] marks an alias or list member that does not exist.
    pub route: Route,
    /// For a mailbox with a quota: the octets left under it (0 when full). `None` otherwise.
    pub room: Option<u64>,
    /// For a mailbox with a quota: the quota itself. `None` otherwise.
    pub quota: Option<u64>,
}

impl Target {
    /// A recipient on another server.
    pub fn remote(address: impl Into<String>) -> Target {
        Target {
            address: address.into(),
            route: Route::Remote,
            room: None,
            quota: None,
        }
    }

    /// True when this is a mailbox without room for `size` more octets (at least one).
    pub fn is_full_for(&self, size: u64) -> bool {
        matches!(self.route, Route::Local { .. }) && self.room.is_some_and(|r| r < size.max(1))
    }

    /// True when this is a mailbox whose whole quota is smaller than `size` octets: a message
    /// that will never fit, however much the user deletes (RFC 3463 X.2.3).
    pub fn never_fits(&self, size: u64) -> bool {
        matches!(self.route, Route::Local { .. }) && self.quota.is_some_and(|q| q < size)
    }
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
    /// More final recipients, or deeper, than the [`ExpansionLimits`].
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

/// The expansion itself, over any way of looking an address up (the store runs it inside one
/// read transaction). `is_local` says whether an address belongs to a local domain.
///
/// Depth-first, keeping the aliases and lists on the current path to tell a loop (an entry that
/// contains itself, directly or through others) from a second path to the same place. Every
/// entry is looked up at most once and every member pushed once per entry that names it, so the
/// work is linear in the size of the directory reached.
pub fn expand<E>(
    address: &str,
    limits: ExpansionLimits,
    is_local: impl Fn(&str) -> bool,
    mut lookup: impl FnMut(&str) -> Result<Option<DirEntry>, E>,
) -> Result<Resolution, E> {
    let mut targets = Vec::new();
    let mut redirects = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut loop_cut = false;
    // The path: the entries being expanded, and for each, how many of its members remain on
    // the stack (an entry leaves the path when its last member has been taken).
    let mut on_path: HashSet<String> = HashSet::new();
    let mut path: Vec<(String, usize)> = Vec::new();
    let mut stack: Vec<(String, usize)> = vec![(address.to_string(), 0)];
    while let Some((addr, depth)) = stack.pop() {
        // Leave the entries whose members have all been taken.
        while let Some((_, 0)) = path.last() {
            if let Some((done, _)) = path.pop() {
                on_path.remove(&done);
            }
        }
        if let Some((_, left)) = path.last_mut() {
            *left -= 1;
        }
        if on_path.contains(&addr) {
            loop_cut = true;
            continue;
        }
        if !seen.insert(addr.clone()) {
            continue;
        }
        if depth > limits.max_depth || targets.len() > limits.max_recipients {
            return Ok(Resolution::TooLarge);
        }
        let local = addr.rsplit_once('@').is_some_and(|(_, d)| is_local(d));
        if !local {
            targets.push(Target::remote(addr));
            continue;
        }
        let (members, kind) = match lookup(&addr)? {
            None => {
                if depth == 0 {
                    return Ok(Resolution::Unknown);
                }
                targets.push(Target {
                    address: addr,
                    route: Route::Unresolved,
                    room: None,
                    quota: None,
                });
                continue;
            }
            Some(DirEntry::User(u)) => {
                targets.push(Target {
                    room: u.quota.map(|q| q.saturating_sub(u.used)),
                    quota: u.quota,
                    address: u.address,
                    route: Route::Local { user_id: u.id },
                });
                continue;
            }
            Some(DirEntry::Alias(t)) => (t, "alias"),
            Some(DirEntry::List(m)) => (m, "list"),
        };
        for m in &members {
            redirects.push(Redirect {
                from: addr.clone(),
                to: m.clone(),
                kind,
            });
        }
        let n = members.len();
        for m in members.into_iter().rev() {
            stack.push((m, depth + 1));
        }
        if n > 0 {
            on_path.insert(addr.clone());
            path.push((addr, n));
        }
    }
    if targets.len() > limits.max_recipients {
        return Ok(Resolution::TooLarge);
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

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
