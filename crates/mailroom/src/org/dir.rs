//! The organization's directory: its accepted domains, routing groups, servers, connectors and
//! each user's home server, one definition shared by every server.
//!
//! Any server may change it, so it is replicated as a set of last-writer-wins registers (a
//! state-based CRDT): every entry carries the [`Stamp`] of the change that wrote it, a Lamport
//! counter and the name of the server that made it, and a merge keeps, key by key, the entry
//! with the greater stamp. A deletion is an entry without a value (a tombstone), so that it
//! wins over the older value everywhere. Merging is commutative, associative and idempotent:
//! servers that have seen the same changes hold the same directory, with the same digest,
//! whatever order the changes reached them in; two changes made at once to *different* keys
//! both survive, and two made at once to the *same* key resolve the same way everywhere (the
//! higher counter, then the server name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// When and where a change was made: a Lamport counter, then the server that made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Greater than every counter the server had seen when it made the change.
    pub counter: u64,
    /// The server that made it.
    pub origin: String,
}

/// One replicated entry: a value, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// The change that wrote it.
    pub stamp: Stamp,
    /// The value; `None` once deleted.
    pub value: Option<T>,
}

/// A map of replicated entries.
pub type Registers<T> = BTreeMap<String, Entry<T>>;

/// Merges `theirs` into `ours`, key by key; returns true when `ours` changed.
///
/// Two entries with the same stamp but different values (two writers of one server, the
/// command line and the running server, that stamped at the same moment) are told apart by
/// their JSON, so that every server still keeps the same one.
pub fn merge_registers<T: Clone + PartialEq + Serialize>(
    ours: &mut Registers<T>,
    theirs: &Registers<T>,
) -> bool {
    let mut changed = false;
    for (k, e) in theirs {
        match ours.get(k) {
            Some(mine) if mine.stamp > e.stamp => {}
            Some(mine) if mine.stamp == e.stamp => {
                let json = |v: &Option<T>| serde_json::to_string(v).unwrap_or_default();
                if mine.value != e.value && json(&e.value) > json(&mine.value) {
                    ours.insert(k.clone(), e.clone());
                    changed = true;
                }
            }
            _ => {
                ours.insert(k.clone(), e.clone());
                changed = true;
            }
        }
    }
    changed
}

/// The live values of a map (tombstones left out).
pub fn live<T>(r: &Registers<T>) -> impl Iterator<Item = (&String, &T)> {
    r.iter()
        .filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
}

/// An accepted domain's entry (it has no settings yet; a braced struct, so that a live entry
/// is `{}` in JSON, not `null`, which would read back as a deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Accepted {}

/// A routing group: servers with reliable connectivity, which deliver to each other directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The routing group master: the member that the others report to first.
    pub master: String,
}

/// A server of the organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Its routing group.
    pub group: String,
    /// Where the other servers reach its SMTP listener (`host:port`).
    pub address: String,
}

/// What a connector joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectorKind {
    /// A routing group connector between two groups (it carries mail both ways).
    Group {
        /// The two groups.
        between: [String; 2],
    },
    /// An SMTP connector to the outside, for the domains its address spaces match.
    Smtp {
        /// Patterns: `*`, `example.com`, `*.example.com`.
        address_spaces: Vec<String>,
        /// Where it sends (`host:port`); without one, the domains' MX hosts.
        smart_host: Option<String>,
    },
}

/// A connector, with its cost and restrictions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    /// What it joins.
    #[serde(flatten)]
    pub kind: ConnectorKind,
    /// Its cost (routing chooses the lowest total).
    pub cost: u32,
    /// The servers that send over it; empty: any server of the groups it joins (a routing group
    /// connector) or of the organization (an SMTP connector).
    pub bridgeheads: Vec<String>,
    /// The largest message it carries, if restricted.
    pub max_size: Option<u64>,
}

/// A user of the organization (the local directory of the home server holds the mailbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The server that holds the mailbox.
    pub home: String,
}

/// The organization's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Directory {
    /// Accepted domains: mail for them is the organization's own.
    pub domains: Registers<Accepted>,
    /// Routing groups by name.
    pub groups: Registers<Group>,
    /// Servers by name.
    pub servers: Registers<Server>,
    /// Connectors by name.
    pub connectors: Registers<Connector>,
    /// Users by address (lower case).
    pub users: Registers<User>,
}

impl Directory {
    /// Merges another server's directory into this one; true when this one changed.
    pub fn merge(&mut self, other: &Directory) -> bool {
        // (Every map is merged: no short-circuit.)
        let a = merge_registers(&mut self.domains, &other.domains);
        let b = merge_registers(&mut self.groups, &other.groups);
        let c = merge_registers(&mut self.servers, &other.servers);
        let d = merge_registers(&mut self.connectors, &other.connectors);
        let e = merge_registers(&mut self.users, &other.users);
        a || b || c || d || e
    }

    /// The greatest counter of any entry: the directory's version.
    pub fn version(&self) -> u64 {
        fn max<T>(r: &Registers<T>) -> u64 {
            r.values().map(|e| e.stamp.counter).max().unwrap_or(0)
        }
        max(&self.domains)
            .max(max(&self.groups))
            .max(max(&self.servers))
            .max(max(&self.connectors))
            .max(max(&self.users))
    }

    /// A live server.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.get(name).and_then(|e| e.value.as_ref())
    }

    /// A live group.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name).and_then(|e| e.value.as_ref())
    }

    /// The live servers of a group, by name.
    pub fn members(&self, group: &str) -> Vec<&str> {
        live(&self.servers)
            .filter(|(_, s)| s.group == group)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The home server of an address, if it is an organization user.
    pub fn home_of(&self, address: &str) -> Option<&str> {
        self.users
            .get(&address.to_lowercase())
            .and_then(|e| e.value.as_ref())
            .map(|u| u.home.as_str())
    }

    /// True when `domain` is one of the organization's accepted domains.
    pub fn accepts(&self, domain: &str) -> bool {
        self.domains
            .get(&domain.to_lowercase())
            .is_some_and(|e| e.value.is_some())
    }

    /// The servers of a routing group connector on `group`'s side (its bridgeheads there, or
    /// every member when it names none there).
    pub fn bridgeheads_in(&self, c: &Connector, group: &str) -> Vec<String> {
        let named: Vec<String> = c
            .bridgeheads
            .iter()
            .filter(|b| self.server(b).is_some_and(|s| s.group == group))
            .cloned()
            .collect();
        if named.is_empty() {
            self.members(group).into_iter().map(String::from).collect()
        } else {
            named
        }
    }

    /// The servers that send over an SMTP connector.
    pub fn smtp_bridgeheads(&self, c: &Connector) -> Vec<String> {
        let named: Vec<String> = c
            .bridgeheads
            .iter()
            .filter(|b| self.server(b).is_some())
            .cloned()
            .collect();
        if named.is_empty() {
            live(&self.servers).map(|(n, _)| n.clone()).collect()
        } else {
            named
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(counter: u64, origin: &str) -> Stamp {
        Stamp {
            counter,
            origin: origin.into(),
        }
    }

    fn with_user(addr: &str, home: &str, s: Stamp) -> Directory {
        let mut d = Directory::default();
        d.users.insert(
            addr.into(),
            Entry {
                stamp: s,
                value: Some(User { home: home.into() }),
            },
        );
        d
    }

    #[test]
    fn merge_is_commutative_idempotent_and_keeps_concurrent_changes_to_other_keys() {
        let a = with_user("alice@x.test", "s1", stamp(3, "s1"));
        let b = with_user("bob@x.test", "s2", stamp(3, "s2"));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.users.len(), 2, "both concurrent additions survive");
        let before = ab.clone();
        assert!(!ab.merge(&before), "merging the same state changes nothing");
        assert_eq!(ab.version(), 3);
    }

    #[test]
    fn the_same_key_resolves_by_counter_then_origin_everywhere() {
        let table = [
            // (stamp a, stamp b, winner's home)
            (stamp(4, "s1"), stamp(3, "s9"), "one"),
            (stamp(4, "s1"), stamp(4, "s2"), "two"),
            (stamp(5, "s1"), stamp(4, "s2"), "one"),
        ];
        for (sa, sb, want) in table {
            let a = with_user("alice@x.test", "one", sa.clone());
            let b = with_user("alice@x.test", "two", sb.clone());
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab, ba, "{sa:?} vs {sb:?}");
            assert_eq!(ab.home_of("Alice@X.test"), Some(want), "{sa:?} vs {sb:?}");
        }
    }

    #[test]
    fn the_same_stamp_with_different_values_resolves_the_same_everywhere() {
        let a = with_user("alice@x.test", "one", stamp(4, "s1"));
        let b = with_user("alice@x.test", "two", stamp(4, "s1"));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
    }

    #[test]
    fn a_deletion_wins_over_the_older_value() {
        let a = with_user("alice@x.test", "s1", stamp(1, "s1"));
        let mut b = a.clone();
        b.users.insert(
            "alice@x.test".into(),
            Entry {
                stamp: stamp(2, "s2"),
                value: None,
            },
        );
        let mut m = a.clone();
        assert!(m.merge(&b));
        assert_eq!(m.home_of("alice@x.test"), None);
        let mut m2 = b.clone();
        assert!(!m2.merge(&a), "the old value does not come back");
    }
}
