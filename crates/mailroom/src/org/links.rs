//! The link-state table: which servers of the organization are reachable, and so which
//! connectors are UP, and since when and why not.
//!
//! A server observes the servers it talks to (the members of its group; across a connector,
//! the bridgeheads at the other end) and publishes a change only when [`Health`] decides one:
//! a peer goes DOWN after `glitch_retries` failed attempts in a row (Exchange's glitch retry,
//! 60 s × 3), comes back UP at its first success, and no change follows the previous one for
//! a peer sooner than the damping time, so a flapping link does not flood the organization
//! with versions. Published states are replicated like the directory (last writer wins, by
//! [`Stamp`]); a connector's state is derived from its bridgeheads' ([`connector_state`]).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dir::{merge_registers, ConnectorKind, Directory, Registers, Stamp};

/// A server's published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Reachable.
    pub up: bool,
    /// Why it is DOWN (the last error), or who saw it come back.
    pub why: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// The link-state table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LinkTable {
    /// Published server states, by server name.
    pub servers: Registers<Link>,
}

impl LinkTable {
    /// Merges another server's table; true when this one changed.
    pub fn merge(&mut self, other: &LinkTable) -> bool {
        merge_registers(&mut self.servers, &other.servers)
    }

    /// The greatest counter in the table: its version.
    pub fn version(&self) -> u64 {
        self.servers
            .values()
            .map(|e| e.stamp.counter)
            .max()
            .unwrap_or(0)
    }

    /// A server's state: UP unless a DOWN state is published for it.
    pub fn server(&self, name: &str) -> Option<&Link> {
        self.servers.get(name).and_then(|e| e.value.as_ref())
    }

    /// True unless the server is published DOWN.
    pub fn is_up(&self, name: &str) -> bool {
        self.server(name).is_none_or(|l| l.up)
    }

    /// Publishes a state with `stamp`.
    pub fn publish(&mut self, server: &str, link: Link, stamp: Stamp) {
        self.servers.insert(
            server.to_string(),
            super::dir::Entry {
                stamp,
                value: Some(link),
            },
        );
    }
}

/// A connector's state as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorState {
    /// Usable.
    pub up: bool,
    /// Why not (the bridgeheads that are DOWN and their errors), empty when UP.
    pub why: String,
    /// Since when it is in this state (the latest change of a bridgehead's state).
    pub since: Option<DateTime<Utc>>,
}

/// The state of a connector: a routing group connector is UP while it has an UP bridgehead on
/// each side; an SMTP connector while it has one UP bridgehead.
pub fn connector_state(dir: &Directory, links: &LinkTable, name: &str) -> ConnectorState {
    let Some(c) = dir.connectors.get(name).and_then(|e| e.value.as_ref()) else {
        return ConnectorState {
            up: false,
            why: format!("no connector {name}"),
            since: None,
        };
    };
    let sides: Vec<Vec<String>> = match &c.kind {
        ConnectorKind::Group { between } => {
            between.iter().map(|g| dir.bridgeheads_in(c, g)).collect()
        }
        ConnectorKind::Smtp { .. } => vec![dir.smtp_bridgeheads(c)],
    };
    let mut since = None;
    let mut why = Vec::new();
    let mut up = true;
    for side in &sides {
        if side.is_empty() {
            up = false;
            why.push("it has no bridgehead on one side".to_string());
            continue;
        }
        if !side.iter().any(|s| links.is_up(s)) {
            up = false;
            for s in side {
                if let Some(l) = links.server(s) {
                    why.push(format!("{s} is DOWN: {}", l.why));
                }
            }
        }
        for s in side {
            if let Some(l) = links.server(s) {
                since = since.max(Some(l.since));
            }
        }
    }
    ConnectorState {
        up,
        why: why.join("; "),
        since,
    }
}

/// The timers of link-state observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Failed attempts in a row before a peer is DOWN.
    pub glitch_retries: u32,
    /// Least time between two published changes of one peer's state.
    pub damping: Duration,
}

/// What this server has seen of one peer, and what it last published.
#[derive(Debug, Clone)]
pub struct Health {
    failures: u32,
    published: Option<bool>,
    changed: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// A peer not yet observed.
    pub fn new() -> Health {
        Health {
            failures: 0,
            published: None,
            changed: None,
        }
    }

    /// Adopts a state published elsewhere, so that this server does not publish it again.
    pub fn adopt(&mut self, up: bool) {
        self.published = Some(up);
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records an attempt; returns the state to publish, if the attempt decides a change.
    pub fn observe(&mut self, ok: bool, now: Instant, t: Timers) -> Option<bool> {
        self.failures = if ok { 0 } else { self.failures + 1 };
        let want = if ok {
            true
        } else if self.failures >= t.glitch_retries.max(1) {
            false
        } else {
            return None;
        };
        if self.published == Some(want) {
            return None;
        }
        // Going DOWN is never damped (mail must reroute at once); coming back UP waits until
        // the damping time since the change to DOWN has passed.
        let damped = want
            && self.published == Some(false)
            && self
                .changed
                .is_some_and(|c| now.saturating_duration_since(c) < t.damping);
        if damped {
            return None;
        }
        self.published = Some(want);
        self.changed = Some(now);
        Some(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::dir::{Connector, Entry, Server};

    const T: Timers = Timers {
        glitch_retries: 3,
        damping: Duration::from_secs(10),
    };

    #[test]
    fn down_after_the_glitch_retries_up_at_once_damped_against_flapping() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut h = Health::new();
        h.adopt(true);
        assert_eq!(
            h.observe(true, at(0), T),
            None,
            "UP as published: nothing new"
        );
        assert_eq!(h.observe(false, at(1), T), None);
        assert_eq!(h.observe(false, at(2), T), None);
        assert_eq!(
            h.observe(false, at(13), T),
            Some(false),
            "third failure: DOWN"
        );
        assert_eq!(h.observe(false, at(14), T), None, "already DOWN");
        // Back within the damping time: not yet published.
        assert_eq!(h.observe(true, at(15), T), None);
        assert_eq!(h.observe(true, at(24), T), Some(true), "after damping: UP");
        // A single failure is a glitch, not a change.
        assert_eq!(h.observe(false, at(40), T), None);
        assert_eq!(h.observe(true, at(41), T), None);
        assert_eq!(h.failures(), 0);
    }

    fn org() -> Directory {
        let mut d = Directory::default();
        let s = |c| Stamp {
            counter: c,
            origin: "a1".into(),
        };
        for (name, group) in [("a1", "A"), ("a2", "A"), ("b1", "B")] {
            d.servers.insert(
                name.into(),
                Entry {
                    stamp: s(1),
                    value: Some(Server {
                        group: group.into(),
                        address: "127.0.0.1:25".into(),
                    }),
                },
            );
        }
        d.connectors.insert(
            "ab".into(),
            Entry {
                stamp: s(2),
                value: Some(Connector {
                    kind: ConnectorKind::Group {
                        between: ["A".into(), "B".into()],
                    },
                    cost: 1,
                    bridgeheads: vec!["a1".into(), "b1".into()],
                    max_size: None,
                }),
            },
        );
        d
    }

    #[test]
    fn a_connector_is_down_only_when_every_bridgehead_on_a_side_is() {
        let d = org();
        let mut links = LinkTable::default();
        assert!(connector_state(&d, &links, "ab").up);
        let down = |why: &str| Link {
            up: false,
            why: why.into(),
            since: Utc::now(),
        };
        let st = |c| Stamp {
            counter: c,
            origin: "a2".into(),
        };
        links.publish("a2", down("refused"), st(3));
        assert!(
            connector_state(&d, &links, "ab").up,
            "a2 is not a bridgehead"
        );
        links.publish("b1", down("connection refused"), st(4));
        let s = connector_state(&d, &links, "ab");
        assert!(!s.up);
        assert_eq!(s.why, "b1 is DOWN: connection refused");
        assert!(!connector_state(&d, &links, "nope").up);
    }
}
