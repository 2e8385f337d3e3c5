//! Outbound connection limits and the pool of idle connections.
//!
//! At most `outbound.max_connections` connections are open in total and
//! `outbound.max_connections_per_domain` to one hop; an idle connection keeps its permits, so that
//! the limits count what is really open. A delivery that finds no way to reach its hop waits on a
//! notification, given whenever a connection is put back, closed, or gives its permits up, never
//! by polling. When the total limit is what stands in the way, the longest-idle connection to
//! another hop is closed to make room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::client::Conn;

/// The permits an open connection holds: one of the total, one of its hop's. Giving them back
/// wakes the deliveries that wait for a slot.
pub(super) struct Permits {
    held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    changed: Arc<Notify>,
}

impl Drop for Permits {
    fn drop(&mut self) {
        // Release first, then wake: a waiter woken before the release would find nothing free.
        drop(self.held.take());
        self.changed.notify_waiters();
    }
}

/// An open connection with its permits.
pub(super) struct Held {
    pub conn: Conn,
    pub permits: Permits,
}

/// A way to reach a hop: a connection left idle by an earlier delivery, or permits to open one.
pub(super) enum Slot {
    Idle(Box<Held>),
    New(Permits),
}

/// The limits and the idle connections of one outbound target.
pub(super) struct Pool {
    max_per_hop: usize,
    max_messages: u32,
    idle_timeout: Duration,
    total: Arc<Semaphore>,
    per_hop: Mutex<HashMap<String, Arc<Semaphore>>>,
    idle: Mutex<HashMap<String, Vec<Held>>>,
    changed: Arc<Notify>,
}

impl Pool {
    pub fn new(
        max_total: usize,
        max_per_hop: usize,
        max_messages: u32,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            max_per_hop,
            max_messages,
            idle_timeout,
            total: Arc::new(Semaphore::new(max_total)),
            per_hop: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
        }
    }

    fn hop_limit(&self, hop: &str) -> Arc<Semaphore> {
        match self.per_hop.lock() {
            Ok(mut m) => m
                .entry(hop.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_hop)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(self.max_per_hop)),
        }
    }

    /// Waits for a way to reach `hop` within the limits.
    pub async fn slot(&self, hop: &str) -> Slot {
        let per_hop = self.hop_limit(hop);
        loop {
            // Registered before looking, so that a change between the look and the wait is not
            // missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(c) = self.take_idle(hop) {
                return Slot::Idle(Box::new(c));
            }
            if let Ok(h) = per_hop.clone().try_acquire_owned() {
                match self.total.clone().try_acquire_owned() {
                    Ok(t) => {
                        return Slot::New(Permits {
                            held: Some((t, h)),
                            changed: self.changed.clone(),
                        })
                    }
                    Err(_) => {
                        drop(h);
                        if let Some(c) = self.take_any_idle() {
                            c.conn.quit().await;
                            continue;
                        }
                    }
                }
            }
            notified.await;
        }
    }

    /// Takes the longest-idle connection to any hop.
    fn take_any_idle(&self) -> Option<Held> {
        let mut idle = self.idle.lock().ok()?;
        let hop = idle
            .iter()
            .filter_map(|(h, v)| v.first().map(|c| (h.clone(), c.conn.idle_since)))
            .min_by_key(|(_, t)| *t)?
            .0;
        let conns = idle.get_mut(&hop)?;
        let c = conns.remove(0);
        if conns.is_empty() {
            idle.remove(&hop);
        }
        Some(c)
    }

    fn take_idle(&self, hop: &str) -> Option<Held> {
        let mut idle = self.idle.lock().ok()?;
        let conns = idle.get_mut(hop)?;
        while let Some(c) = conns.pop() {
            if c.conn.idle_since.elapsed() < self.idle_timeout {
                return Some(c);
            }
        }
        None
    }

    /// Keeps a connection for the next message to `hop`, unless it has carried its share of
    /// messages; then it is handed back to be closed.
    pub fn put_idle(&self, hop: &str, mut c: Held) -> Option<Held> {
        if c.conn.messages >= self.max_messages {
            return Some(c);
        }
        c.conn.idle_since = Instant::now();
        match self.idle.lock() {
            Ok(mut idle) => {
                idle.entry(hop.to_string()).or_default().push(c);
                drop(idle);
                self.changed.notify_waiters();
                None
            }
            Err(_) => Some(c),
        }
    }

    /// Closes idle connections older than the idle timeout.
    pub async fn purge_idle(&self) {
        let stale: Vec<Held> = match self.idle.lock() {
            Ok(mut idle) => {
                let mut out = Vec::new();
                for conns in idle.values_mut() {
                    let (old, keep): (Vec<_>, Vec<_>) = conns
                        .drain(..)
                        .partition(|c| c.conn.idle_since.elapsed() >= self.idle_timeout);
                    *conns = keep;
                    out.extend(old);
                }
                idle.retain(|_, v| !v.is_empty());
                out
            }
            Err(_) => Vec::new(),
        };
        for c in stale {
            c.conn.quit().await;
        }
    }
}
