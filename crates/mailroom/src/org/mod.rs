//! The organization: several mailroom servers in routing groups, joined by connectors, sharing
//! one directory and one link-state table, and proving to each other that they belong.
//!
//! - [`dir`]: the replicated directory (domains, groups, servers, connectors, users' homes);
//! - [`links`]: the link-state table and how a server decides that a peer is DOWN;
//! - [`auth`]: `X-ORG-AUTH`, mutual challenge–response over the organization's secret;
//! - [`view`]: the running server's current view of the organization;
//! - [`channel`]: the client side of the organization channel (authenticate, exchange state);
//! - [`meta`] (a domain type, in [`crate::model`]): `X-ORG-META`, what travels with a message between the organization's servers;

//!
//! The whole replicated state is an [`OrgState`]; its [`OrgState::digest`] is what two servers
//! compare to see whether they agree, and its versions are those of its two parts: the
//! directory's (a topology or user change) and the link table's (a server UP or DOWN), in the
//! manner of Exchange's major and minor link-state versions.

pub mod auth;
pub mod channel;
pub mod dir;
pub mod links;
pub mod probe;
pub use crate::model::meta;
pub mod view;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use dir::{Directory, Entry, Stamp};
use links::LinkTable;

/// The largest state a server accepts from another (directory and link table, as JSON).
pub const MAX_STATE: usize = 64 * 1024 * 1024;

/// Why an organization change or message is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrgError {
    /// The change names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the organization as it is.
    #[error("{0}")]
    Conflict(String),
    /// A token or state that cannot be read.
    #[error("{0}")]
    Malformed(String),
}

/// The organization's replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgState {
    /// The organization's id (random, made at `org create`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The directory.
    pub dir: Directory,
    /// The link-state table.
    pub links: LinkTable,
}

impl OrgState {
    /// A new organization with one server, master of its group.
    pub fn create(id: &str, name: &str, server: &str, address: &str, group: &str) -> OrgState {
        let mut s = OrgState {
            id: id.to_string(),
            name: name.to_string(),
            dir: Directory::default(),
            links: LinkTable::default(),
        };
        s.add_group(server, group, server);
        s.set_server(server, server, group, address);
        s
    }

    /// The next stamp for a change made by `me`.
    pub fn stamp(&self, me: &str) -> Stamp {
        Stamp {
            counter: self.dir.version().max(self.links.version()) + 1,
            origin: me.to_string(),
        }
    }

    /// The digest two servers compare (SHA-256 of the canonical JSON, hex).
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.to_json()))
    }

    /// The canonical JSON (maps are ordered, so equal states give equal bytes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a state another server sent, refusing one of another organization.
    pub fn from_json(data: &[u8], expect_id: &str) -> Result<OrgState, OrgError> {
        if data.len() > MAX_STATE {
            return Err(OrgError::Malformed(format!(
                "the state is larger than {MAX_STATE} octets"
            )));
        }
        let s: OrgState = serde_json::from_slice(data)
            .map_err(|e| OrgError::Malformed(format!("the state cannot be read: {e}")))?;
        if s.id != expect_id {
            return Err(OrgError::Malformed(format!(
                "the state is of organization {}, not {expect_id}",
                s.id
            )));
        }
        Ok(s)
    }

    /// Merges another server's state; true when this one changed.
    pub fn merge(&mut self, other: &OrgState) -> bool {
        // (The name is set once, at org create; a joining server starts without it.)
        let named = self.name.is_empty() && !other.name.is_empty();
        if named {
            self.name = other.name.clone();
        }
        let a = self.dir.merge(&other.dir) || named;
        let b = self.links.merge(&other.links);
        a || b
    }

    /// The versions: (directory, link state).
    pub fn versions(&self) -> (u64, u64) {
        (self.dir.version(), self.links.version())
    }

    fn put<T>(map: &mut dir::Registers<T>, key: &str, value: Option<T>, stamp: Stamp) {
        map.insert(key.to_string(), Entry { stamp, value });
    }

    /// Adds a routing group with its master.
    pub fn add_group(&mut self, me: &str, group: &str, master: &str) {
        let st = self.stamp(me);
        let g = dir::Group {
            master: master.to_string(),
        };
        Self::put(&mut self.dir.groups, group, Some(g), st);
    }

    /// Adds or updates a server.
    pub fn set_server(&mut self, me: &str, name: &str, group: &str, address: &str) {
        let st = self.stamp(me);
        let s = dir::Server {
            group: group.to_string(),
            address: address.to_string(),
        };
        Self::put(&mut self.dir.servers, name, Some(s), st);
    }

    /// Moves a server to another group (which must exist); a master that leaves its group
    /// hands the role to the first remaining member.
    pub fn move_server(&mut self, me: &str, name: &str, group: &str) -> Result<(), OrgError> {
        let s =
            self.dir.server(name).cloned().ok_or_else(|| {
                OrgError::NotFound(format!("no server {name} in the organization"))
            })?;
        if self.dir.group(group).is_none() {
            return Err(OrgError::NotFound(format!("no routing group {group}")));
        }
        self.set_server(me, name, group, &s.address);
        self.rehome_master(me, &s.group, name);
        if self.dir.members(group).len() == 1 {
            self.add_group(me, group, name);
        }
        Ok(())
    }

    fn rehome_master(&mut self, me: &str, group: &str, leaving: &str) {
        if self.dir.group(group).is_some_and(|g| g.master == leaving) {
            if let Some(next) = self
                .dir
                .members(group)
                .into_iter()
                .find(|m| *m != leaving)
                .map(String::from)
            {
                self.add_group(me, group, &next);
            }
        }
    }

    /// Removes a server; refused while users have it as home.
    pub fn remove_server(&mut self, me: &str, name: &str) -> Result<(), OrgError> {
        let s =
            self.dir.server(name).cloned().ok_or_else(|| {
                OrgError::NotFound(format!("no server {name} in the organization"))
            })?;
        let homed = dir::live(&self.dir.users)
            .filter(|(_, u)| u.home == name)
            .count();
        if homed > 0 {
            return Err(OrgError::Conflict(format!(
                "{homed} user(s) have {name} as home server: move them first (mailroom user move)"
            )));
        }
        self.rehome_master(me, &s.group, name);
        let st = self.stamp(me);
        Self::put(&mut self.dir.servers, name, None, st);
        Ok(())
    }

    /// Adds or replaces a connector, checking what it names.
    pub fn set_connector(
        &mut self,
        me: &str,
        name: &str,
        c: dir::Connector,
    ) -> Result<(), OrgError> {
        if let dir::ConnectorKind::Group { between } = &c.kind {
            for g in between {
                if self.dir.group(g).is_none() {
                    return Err(OrgError::NotFound(format!("no routing group {g}")));
                }
            }
            if between[0] == between[1] {
                return Err(OrgError::Conflict(
                    "a routing group connector joins two different groups".into(),
                ));
            }
        }
        for b in &c.bridgeheads {
            let Some(s) = self.dir.server(b) else {
                return Err(OrgError::NotFound(format!(
                    "no server {b} in the organization"
                )));
            };
            if let dir::ConnectorKind::Group { between } = &c.kind {
                if !between.contains(&s.group) {
                    return Err(OrgError::Conflict(format!(
                        "bridgehead {b} is in group {}, which the connector does not join",
                        s.group
                    )));
                }
            }
        }
        let st = self.stamp(me);
        Self::put(&mut self.dir.connectors, name, Some(c), st);
        Ok(())
    }

    /// Removes a connector.
    pub fn remove_connector(&mut self, me: &str, name: &str) -> Result<(), OrgError> {
        if self
            .dir
            .connectors
            .get(name)
            .is_none_or(|e| e.value.is_none())
        {
            return Err(OrgError::NotFound(format!("no connector {name}")));
        }
        let st = self.stamp(me);
        Self::put(&mut self.dir.connectors, name, None, st);
        Ok(())
    }

    /// Sets (or, with `None`, removes) a user's home server.
    pub fn set_user(
        &mut self,
        me: &str,
        address: &str,
        home: Option<&str>,
    ) -> Result<(), OrgError> {
        if let Some(h) = home {
            if self.dir.server(h).is_none() {
                return Err(OrgError::NotFound(format!(
                    "no server {h} in the organization"
                )));
            }
        }
        let st = self.stamp(me);
        let u = home.map(|h| dir::User {
            home: h.to_string(),
        });
        Self::put(&mut self.dir.users, &address.to_lowercase(), u, st);
        Ok(())
    }

    /// Adds (or removes) an accepted domain.
    pub fn set_domain(&mut self, me: &str, domain: &str, accepted: bool) {
        let st = self.stamp(me);
        Self::put(
            &mut self.dir.domains,
            &domain.to_lowercase(),
            accepted.then_some(dir::Accepted {}),
            st,
        );
    }
}

/// What `org create` prints and `org join` reads: the organization, its secret, and a server
/// to join through. One line, no spaces (`mrorg1.` and base64url of JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The organization's id.
    pub org: String,
    /// The organization's secret (hex).
    pub secret: String,
    /// The server to join through.
    pub server: String,
    /// Its SMTP address (`host:port`).
    pub address: String,
}

const TOKEN_PREFIX: &str = "mrorg1.";

impl JoinToken {
    /// The one-line form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Reads a token (surrounding white space ignored).
    pub fn decode(s: &str) -> Result<JoinToken, OrgError> {
        let bad = |why: &str| OrgError::Malformed(format!("not a mailroom join token: {why}"));
        let body = s
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| bad("it does not start with mrorg1."))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not base64url"))?;
        let t: JoinToken =
            serde_json::from_slice(&json).map_err(|_| bad("its content is not a token"))?;
        if t.secret.len() < 32 || hex::decode(&t.secret).is_err() {
            return Err(bad("its secret is malformed"));
        }
        Ok(t)
    }
}

/// This server's membership: the organization, its secret, and this server's name in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The organization's id.
    pub org: String,
    /// The secret (hex); never printed.
    pub secret: String,
    /// This server's name in the organization.
    pub me: String,
}

/// A fresh random hex string of `bytes` octets.
pub fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

#[cfg(test)]
mod tests;
