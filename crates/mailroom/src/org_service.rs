//! What a running server does for its organization: keeps its copy of the replicated state in
//! step with its peers, watches whether they answer, and publishes what it sees.
//!
//! **Peers.** A server talks to the members of its routing group and, when it is a bridgehead
//! of a routing group connector, to the bridgeheads at the other end. Changes so travel member
//! → group → bridgehead → the next group, as Exchange's did (through the master), and a group
//! keeps working when its master is gone, since every member talks to every other.
//!
//! **Contact.** Each contact is an authenticated `X-LINKSTATE` exchange (digests compared; the
//! states sent both ways when they differ, and merged). A peer is contacted every
//! `org.probe_interval`, at once when this server's state changed since they last agreed, and
//! after a failure every `org.glitch_retry`; [`Health`] decides when failures make it DOWN
//! and a success UP again, and that is published in the link table for every server to see.
//!
//! **Changes from elsewhere** come in by the sessions' `X-LINKSTATE` (which wake this loop) and
//! by `mailroom org` commands (seen in the store within a poll): either way the new state is
//! taken into the server's [`OrgView`] and passed on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::org::channel::{Channel, ChannelError, Timeouts};
use crate::org::dir::{live, ConnectorKind};
use crate::org::links::{Health, Link, Timers};
use crate::org::view::{OrgView, Snapshot};
use crate::org::OrgState;
use crate::store::OrgServiceStore;

/// How often the store is checked for changes made by `mailroom org` commands.
const POLL: Duration = Duration::from_millis(500);

/// Contacts in progress: each ends with the peer's name, the digest sent, and the outcome.
type Contacts = JoinSet<(String, String, Result<Option<OrgState>, ChannelError>)>;

/// The least time between two contacts with one peer, however much news there is.
const MIN_GAP: Duration = Duration::from_millis(200);

struct Peer {
    health: Health,
    next: Instant,
    /// When the last contact ended.
    last: Option<Instant>,
    agreed: Option<String>,
    busy: bool,
}

/// The servers this one keeps in step with, by name, with their addresses.
pub fn peers(state: &OrgState, me: &str) -> Vec<(String, String)> {
    let dir = &state.dir;
    let Some(mine) = dir.server(me) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .members(&mine.group)
        .into_iter()
        .filter(|s| *s != me)
        .map(String::from)
        .collect();
    for (_, c) in live(&dir.connectors) {
        let ConnectorKind::Group { between } = &c.kind else {
            continue;
        };
        let Some(i) = between.iter().position(|g| *g == mine.group) else {
            continue;
        };
        if !dir.bridgeheads_in(c, &mine.group).iter().any(|b| b == me) {
            continue;
        }
        out.extend(dir.bridgeheads_in(c, &between[1 - i]));
    }
    out.sort();
    out.dedup();
    out.into_iter()
        .filter_map(|n| dir.server(&n).map(|s| (n.clone(), s.address.clone())))
        .collect()
}

/// The organization service.
pub struct OrgService {
    store: Arc<dyn OrgServiceStore>,
    config: Arc<Config>,
    view: Arc<OrgView>,
    peers: HashMap<String, Peer>,
    /// The digest of the state whose users were last provisioned.
    provisioned: Option<String>,
    /// The task sending confirmations (`X-ORG-META DONE`), while one runs.
    discharging: Option<tokio::task::JoinHandle<()>>,
    /// When the stored state had last changed at the last reload.
    loaded_at: Option<i64>,
    /// When this server started.
    started: chrono::DateTime<Utc>,
}

impl OrgService {
    /// A service over the server's store and view.
    pub fn new(
        store: Arc<dyn OrgServiceStore>,
        config: Arc<Config>,
        view: Arc<OrgView>,
    ) -> OrgService {
        OrgService {
            store,
            config,
            view,
            peers: HashMap::new(),
            provisioned: None,
            discharging: None,
            loaded_at: None,
            started: Utc::now(),
        }
    }

    fn timers(&self) -> Timers {
        Timers {
            glitch_retries: self.config.org.glitch_retries,
            damping: self.config.org.damping,
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts::of(&self.config.org)
    }

    /// Runs until shutdown.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut contacts: Contacts = JoinSet::new();
        let mut tick = tokio::time::interval(POLL.min(self.config.org.glitch_retry));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.reload().await;
                    self.announce_self().await;
                    self.provision().await;
                    self.discharge();
                    self.contact_due(&mut contacts);
                }
                _ = self.view.changed.notified() => self.contact_due(&mut contacts),
                Some(done) = contacts.join_next() => {
                    if let Ok((peer, digest, result)) = done {
                        self.contacted(&peer, digest, result).await;
                        self.contact_due(&mut contacts);
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        contacts.abort_all();
        if let Some(t) = self.discharging.take() {
            t.abort();
        }
    }

    /// Tells the servers that handed this one mail which of it is finished with, so that they
    /// let their shadow copies go; what cannot be told now is told at a later tick.
    fn discharge(&mut self) {
        if self.discharging.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Some(snap) = self.view.get() else { return };
        let store = self.store.clone();
        let t = self.timeouts();
        self.discharging = Some(tokio::spawn(async move {
            let owed = match store.discharges(1024).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the confirmations owed");
                    return;
                }
            };
            for (server, ids) in owed {
                let Some(address) = snap.state.dir.server(&server).map(|s| s.address.clone())
                else {
                    // A server no longer in the organization holds nothing to let go.
                    let _ = store.discharged(server, ids).await;
                    continue;
                };
                let sent = async {
                    let mut ch = Channel::open(&server, &address, &snap.membership, t).await?;
                    let r = ch.discharge(&ids).await;
                    ch.close().await;
                    r
                }
                .await;
                match sent {
                    Ok(()) => {
                        tracing::debug!(server, n = ids.len(), "shadow copies confirmed");
                        if let Err(e) = store.discharged(server, ids).await {
                            tracing::warn!(error = %e, "confirmations not recorded as sent");
                        }
                    }
                    Err(e) => tracing::debug!(server, error = %e, "confirmations not sent yet"),
                }
            }
        }));
    }

    /// Takes in what `mailroom org` commands changed in the store.
    async fn reload(&mut self) {
        match self.store.org_changed_at().await {
            Ok(at) if at.is_some() && at == self.loaded_at => return,
            Ok(at) => self.loaded_at = at,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organization state");
                return;
            }
        }
        match self.store.org().await {
            Ok(Some((membership, state))) => {
                let cur = self.view.get();
                if cur.as_ref().map(|s| &s.state) != Some(&state) {
                    self.adopt(&state);
                    self.view.set(Some(Snapshot { membership, state }));
                }
            }
            Ok(None) => {
                if self.view.get().is_some() {
                    self.view.set(None);
                    self.peers.clear();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the organization state"),
        }
    }

    /// Takes the published states of peers as this server's own view of them.
    fn adopt(&mut self, state: &OrgState) {
        for (name, p) in self.peers.iter_mut() {
            if let Some(l) = state.links.server(name) {
                p.health.adopt(l.up);
            }
        }
    }

    /// A server that finds itself published DOWN since before it started (by a peer, while it
    /// was away) says it is UP: recovery propagates from the recovered server itself. A DOWN
    /// published while it runs stands: a peer cannot reach it or its verbs are missing, which
    /// the server itself cannot judge.
    async fn announce_self(&mut self) {
        let Some(snap) = self.view.get() else { return };
        let me = snap.me().to_string();
        match snap.state.links.server(&me) {
            Some(l) if !l.up && l.since < self.started => {}
            _ => return,
        }
        let link = Link {
            up: true,
            why: format!("{me} started"),
            since: Utc::now(),
        };
        self.publish(&me, link).await;
    }

    /// Publishes a server's state and passes it on.
    async fn publish(&mut self, server: &str, link: Link) {
        let Some(snap) = self.view.get() else { return };
        let mut s = snap.state.clone();
        let st = s.stamp(snap.me());
        tracing::info!(server, up = link.up, why = %link.why, "link state change published");
        s.links.publish(server, link, st);
        self.merge(s).await;
    }

    async fn merge(&mut self, theirs: OrgState) {
        match self.store.org_merge(theirs).await {
            Ok((merged, true)) => {
                self.adopt(&merged);
                self.view.set_state(merged);
            }
            Ok((_, false)) => {}
            Err(e) => tracing::warn!(error = %e, "organization state not merged"),
        }
    }

    /// Makes the mailboxes of users homed here that this server does not have yet.
    async fn provision(&mut self) {
        let Some(snap) = self.view.get() else { return };
        let digest = snap.state.digest();
        if self.provisioned.as_deref() == Some(digest.as_str()) {
            return;
        }
        self.provisioned = Some(digest);
        let me = snap.me();
        for (address, u) in live(&snap.state.dir.users) {
            if u.home != me {
                continue;
            }
            match self.store.lookup(address).await {
                Ok(Some(_)) => {}
                Ok(None) => match self.store.user_add(address, None, None).await {
                    Ok(_) => tracing::info!(address, "mailbox made for a user homed here"),
                    Err(e) => {
                        tracing::warn!(address, error = %e, "cannot make the mailbox");
                        self.provisioned = None;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "directory lookup failed");
                    self.provisioned = None;
                }
            }
        }
    }

    /// Starts a contact with every peer that is due.
    fn contact_due(&mut self, contacts: &mut Contacts) {
        let Some(snap) = self.view.get() else { return };
        let me = snap.me().to_string();
        let now = Instant::now();
        let digest = snap.state.digest();
        let current = peers(&snap.state, &me);
        self.peers
            .retain(|name, _| current.iter().any(|(n, _)| n == name));
        for (name, address) in current {
            let p = self.peers.entry(name.clone()).or_insert_with(|| {
                let mut health = Health::new();
                health.adopt(snap.state.links.is_up(&name));
                Peer {
                    health,
                    next: now,
                    last: None,
                    agreed: None,
                    busy: false,
                }
            });
            // A peer that failed waits for its glitch retry even when there is news.
            let news = p.agreed.as_deref() != Some(digest.as_str())
                && p.health.failures() == 0
                && p.last
                    .is_none_or(|l| now.saturating_duration_since(l) >= MIN_GAP);
            if p.busy || (now < p.next && !news) {
                continue;
            }
            p.busy = true;
            let membership = snap.membership.clone();
            let state = snap.state.clone();
            let t = self.timeouts();
            let d = digest.clone();
            contacts.spawn(async move {
                let r = async {
                    let mut ch = Channel::open(&name, &address, &membership, t).await?;
                    let theirs = ch.sync(&state).await;
                    ch.close().await;
                    theirs
                }
                .await;
                (name, d, r)
            });
        }
    }

    /// Records the outcome of a contact.
    async fn contacted(
        &mut self,
        peer: &str,
        digest: String,
        result: Result<Option<OrgState>, ChannelError>,
    ) {
        let timers = self.timers();
        let now = Instant::now();
        let (ok, why) = match &result {
            Ok(_) => (true, String::new()),
            Err(e) => (false, e.to_string()),
        };
        let (probe, glitch) = (self.config.org.probe_interval, self.config.org.glitch_retry);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.busy = false;
        p.last = Some(now);
        let change = p.health.observe(ok, now, timers);
        if ok {
            p.next = now + probe;
        } else {
            tracing::info!(peer, failures = p.health.failures(), error = %why, "organization peer did not answer");
            p.next = now + glitch;
        }
        match result {
            Ok(Some(theirs)) => {
                self.merge(theirs).await;
                // After the exchange both sides hold the merge of the two.
                if let Some(p) = self.peers.get_mut(peer) {
                    p.agreed = self.view.get().map(|s| s.state.digest());
                }
            }
            Ok(None) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.agreed = Some(digest);
                }
            }
            Err(_) => {}
        }
        if let Some(up) = change {
            let link = Link {
                up,
                why: if up {
                    format!("answering again (seen by {})", self.me())
                } else {
                    format!("{why} (seen by {})", self.me())
                },
                since: Utc::now(),
            };
            self.publish(peer, link).await;
        }
    }

    fn me(&self) -> String {
        self.view
            .get()
            .map(|s| s.me().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::dir::Connector;

    #[test]
    fn peers_are_the_group_and_the_far_bridgeheads() {
        let mut s = OrgState::create("o", "Org", "s1", "127.0.0.1:1", "G1");
        s.set_server("s1", "s2", "G1", "127.0.0.1:2");
        s.add_group("s1", "G2", "s3");
        s.set_server("s1", "s3", "G2", "127.0.0.1:3");
        s.set_server("s1", "s4", "G2", "127.0.0.1:4");
        let c = Connector {
            kind: ConnectorKind::Group {
                between: ["G1".into(), "G2".into()],
            },
            cost: 1,
            bridgeheads: vec!["s2".into(), "s3".into()],
            max_size: None,
        };
        s.set_connector("s1", "c", c).unwrap();
        let names = |me: &str| -> Vec<String> { peers(&s, me).into_iter().map(|p| p.0).collect() };
        assert_eq!(names("s1"), ["s2"]);
        assert_eq!(names("s2"), ["s1", "s3"]);
        assert_eq!(names("s3"), ["s2", "s4"]);
        assert_eq!(names("s4"), ["s3"]);
        assert!(names("nobody").is_empty());
        assert_eq!(peers(&s, "s2")[1].1, "127.0.0.1:3");
    }
}
