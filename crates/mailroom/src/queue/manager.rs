//! The queue manager: drives every recipient to a final state, and every outcome the sender asked
//! about to a report.
//!
//! It learns of new messages from ingest (a notification per message) and polls the store every
//! `queue.poll_interval` for work that has come due: retries, reports, delay notices, and
//! anything a restart or an operator (`queue retry`) left for it. A message is worked on by one
//! task at a time (the in-flight map; news that arrives meanwhile asks for another pass), and
//! the store's settle is idempotent besides: a local delivery happens exactly once, and an
//! outbound one at most once per attempt (a crash between the peer's `250` and our record of it
//! sends it again, the window RFC 1047 describes).
//!
//! - [`attempt`](super::attempt): delivery attempts, retry scheduling and expiry;
//! - [`report`](super::report): failure, delay and success reports (RFC 3461, RFC 3464).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Semaphore};

pub use crate::ingest::QueueHandle;
use tokio::task::JoinSet;

use super::clock::Clock;
use super::retry;
use crate::config::Config;
use crate::deliver::local::LocalTarget;
use crate::deliver::smtp::SmtpTarget;
use crate::model::LiveConfig;
use crate::org::view::OrgView;
use crate::route::dns::Resolver;
use crate::store::{QueueStore, StoreError};

/// The queue manager.
pub struct Manager {
    pub(super) store: Arc<dyn QueueStore>,
    config: LiveConfig,
    pub(super) handle: QueueHandle,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) local: LocalTarget,
    pub(super) smtp: SmtpTarget,
    pub(super) org: Arc<OrgView>,
    /// The services' states: mail waits while a service it needs is not running.
    pub(super) services: Arc<crate::services::Services>,
    /// Messages being worked on, with a flag asking for another pass when news arrived meanwhile.
    in_flight: Mutex<HashMap<i64, bool>>,
    slots: Arc<Semaphore>,
}

impl Manager {
    /// A manager; `handle` must be the sender of the receiver later given to [`Manager::run`].
    pub fn new(
        store: Arc<dyn QueueStore>,
        config: LiveConfig,
        handle: QueueHandle,
        clock: Arc<dyn Clock>,
        resolver: Arc<dyn Resolver>,
        org: Arc<OrgView>,
        services: Arc<crate::services::Services>,
    ) -> Arc<Manager> {
        let slots = Arc::new(Semaphore::new(config.get().queue.delivery_concurrency));
        let smtp = SmtpTarget::new(config.clone(), resolver, store.clone(), org.clone());
        Arc::new(Manager {
            store,
            config,
            handle,
            clock,
            local: LocalTarget,
            smtp,
            org,
            services,
            in_flight: Mutex::new(HashMap::new()),
            slots,
        })
    }

    /// The configuration in effect (see [`LiveConfig`]).
    pub(super) fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Runs until shutdown: first a look at the whole queue (recovery after a restart), then
    /// notifications and polls. Work in progress is finished before returning, and the
    /// notifications' receiver is handed back (for the next run, when the service restarts).
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<i64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> mpsc::UnboundedReceiver<i64> {
        let mut tasks = JoinSet::new();
        let me = self.clone();
        tasks.spawn(async move { me.verify().await });
        let mut tick = tokio::time::interval(self.config().queue.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(id) = rx.recv() => self.schedule(id, true, &mut tasks),
                _ = tick.tick() => self.poll(&mut tasks).await,
                _ = shutdown.changed() => break,
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        rx
    }

    /// Sweeps the queue once after start-up for records that cannot be read, so that they are
    /// quarantined now rather than when they come due.
    pub async fn verify(&self) {
        let server = self.config().server.hostname.clone();
        let started = std::time::Instant::now();
        let found = match self.store.suspects().await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "queue check at start-up failed");
                return;
            }
        };
        let n = found.unreadable.len();
        for (rowid, reason) in found.unreadable {
            tracing::error!(message = rowid, %reason, "unreadable queue record: moving it to quarantine");
            if let Err(e) = self.store.quarantine(rowid, reason, server.clone()).await {
                tracing::error!(error = %e, "quarantine failed");
            }
        }
        tracing::info!(quarantined = n, elapsed = ?started.elapsed(), "queue checked");
    }

    /// Schedules every message with work due now; quarantines unreadable ones.
    pub async fn poll(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let now = self.clock.now();
        let delay_cutoff = now - (retry::delay_due_at(&self.config().queue, now) - now);
        let mut after = 0;
        loop {
            let (page, bad) = match self.store.due(now, delay_cutoff, after, 1000).await {
                Ok(l) => (l.messages, l.unreadable),
                Err(e) => {
                    tracing::error!(error = %e, "queue poll failed");
                    return;
                }
            };
            for (rowid, reason) in bad {
                tracing::error!(message = rowid, %reason, "unreadable queue record: moving it to quarantine");
                let server = self.config().server.hostname.clone();
                if let Err(e) = self.store.quarantine(rowid, reason, server).await {
                    tracing::error!(error = %e, "quarantine failed");
                }
                after = after.max(rowid);
            }
            let Some(last) = page.last().map(|m| m.rowid) else {
                break;
            };
            for m in page {
                self.schedule(m.rowid, false, tasks);
            }
            after = after.max(last);
        }
        self.smtp.purge_idle().await;
        // Spool files whose messages are gone (delivered, read and deleted, expired).
        match self.store.collect_spool().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(files = n, "spool files deleted"),
            Err(e) => tracing::warn!(error = %e, "spool collection failed; will retry"),
        }
    }

    /// Starts work on a message. `news` says the caller knows of a change the message's task may
    /// not have seen (a notification); then a message already in flight gets one more pass.
    /// A poll has no such news: what it found is either being handled or will be found again.
    fn schedule(self: &Arc<Self>, rowid: i64, news: bool, tasks: &mut JoinSet<()>) {
        let fresh = match self.in_flight.lock() {
            Ok(mut m) => match m.get_mut(&rowid) {
                Some(again) => {
                    *again |= news;
                    false
                }
                None => {
                    m.insert(rowid, false);
                    true
                }
            },
            Err(_) => false,
        };
        if !fresh {
            return;
        }
        let me = self.clone();
        tasks.spawn(async move {
            let _permit = me.slots.clone().acquire_owned().await;
            loop {
                if let Err(e) = me.process(rowid).await {
                    tracing::error!(error = %e, message = rowid, "queue work failed; it will be retried");
                }
                let again = match me.in_flight.lock() {
                    Ok(mut m) => match m.get_mut(&rowid) {
                        Some(again) if *again => {
                            *again = false;
                            true
                        }
                        _ => {
                            m.remove(&rowid);
                            false
                        }
                    },
                    Err(_) => false,
                };
                if !again {
                    break;
                }
            }
        });
    }

    /// Does what is due for one message: attempts, then reports.
    pub async fn process(&self, rowid: i64) -> Result<(), StoreError> {
        let msg = match self.store.queued(rowid).await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(StoreError::Corrupt(reason)) => {
                let server = self.config().server.hostname.clone();
                return self.store.quarantine(rowid, reason, server).await;
            }
            Err(e) => return Err(e),
        };
        if msg.frozen {
            return Ok(());
        }
        let now = self.clock.now();
        self.attempt(&msg, now).await?;
        self.report(rowid, now).await
    }
}
