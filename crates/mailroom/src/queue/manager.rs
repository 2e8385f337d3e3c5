//! The queue manager: drives every Ready recipient to a final state, and every failure to a report.
//!
//! It learns of new messages from ingest (a notification per message) and, as a safety net and
//! after a restart, by scanning the store. A message is worked on by one task at a time (the
//! in-flight set); the store's settle is idempotent besides, so a message scheduled twice cannot
//! be delivered twice. Delivery of many messages runs concurrently, which is what lets their store
//! writes share commits.
//!
//! Reports: once recipients have failed, [`Manager::report`] decides, per RFC 3461 and RFC 5321
//! §4.5.5, whether the sender is told: a null sender never is (the failure is absorbed, event
//! 1018), a NOTIFY without FAILURE is respected (event 2002), and otherwise one non-delivery report
//! names every failed recipient of the message (event 1030). The report is queued in the same
//! transaction that records it, so a crash can neither lose it nor send it twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::deliver::local::LocalTarget;
use crate::deliver::{DeliveryTarget, Outcome};
use crate::directory::{self, Resolution, Target};
use crate::dsn::{self, FailedRecipient, FailureReport};
use crate::ids::QueueId;
use crate::ingest::{self, AcceptedRcpt};
use crate::queue::{MessageKind, NewMessage, QueuedMessage, RcptState, ReportState, Route, Settle};
use crate::route::{next_hop, NextHop};
use crate::store::{Store, StoreError};
use crate::track::{EventBase, EventId};

/// Tells the manager about new work.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<i64>,
}

impl QueueHandle {
    /// A handle and the receiver the manager reads.
    pub fn channel() -> (QueueHandle, mpsc::UnboundedReceiver<i64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (QueueHandle { tx }, rx)
    }

    /// Announces a newly queued message (by store row ID).
    pub fn notify(&self, rowid: i64) {
        let _ = self.tx.send(rowid);
    }
}

/// The queue manager.
pub struct Manager {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    handle: QueueHandle,
    local: LocalTarget,
    /// Messages being worked on, with a flag asking for another pass when news arrived meanwhile.
    in_flight: Mutex<HashMap<i64, bool>>,
    slots: Arc<Semaphore>,
}

impl Manager {
    /// A manager; `handle` must be the sender of the receiver later given to [`Manager::run`].
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, handle: QueueHandle) -> Arc<Manager> {
        let slots = Arc::new(Semaphore::new(config.queue.delivery_concurrency));
        Arc::new(Manager {
            store,
            config,
            handle,
            local: LocalTarget,
            in_flight: Mutex::new(HashMap::new()),
            slots,
        })
    }

    /// Runs until shutdown: first a scan of the whole queue (recovery after a restart), then
    /// notifications and periodic scans. Work in progress is finished before returning.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<i64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tasks = JoinSet::new();
        self.scan(&mut tasks).await;
        let mut tick = tokio::time::interval(self.config.queue.scan_interval);
        tick.reset();
        loop {
            tokio::select! {
                Some(id) = rx.recv() => self.schedule(id, &mut tasks),
                _ = tick.tick() => self.scan(&mut tasks).await,
                _ = shutdown.changed() => break,
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Schedules every message with work to do.
    async fn scan(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let mut after = 0;
        loop {
            let page = match self.store.ready(after, 1000).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "queue scan failed");
                    return;
                }
            };
            let Some(last) = page.last().map(|m| m.rowid) else {
                break;
            };
            for m in page {
                if m.recipients
                    .iter()
                    .any(|r| r.state == RcptState::Ready && next_hop(r) == NextHop::Local)
                {
                    self.schedule(m.rowid, tasks);
                }
            }
            after = last;
        }
        match self.store.unreported(10_000).await {
            Ok(msgs) => msgs.into_iter().for_each(|m| self.schedule(m.rowid, tasks)),
            Err(e) => tracing::error!(error = %e, "scan for unreported failures failed"),
        }
    }

    fn schedule(self: &Arc<Self>, rowid: i64, tasks: &mut JoinSet<()>) {
        // If the message is being worked on, ask for one more pass instead of dropping the news:
        // the task may already have read the message's old state.
        let fresh = match self.in_flight.lock() {
            Ok(mut m) => match m.get_mut(&rowid) {
                Some(again) => {
                    *again = true;
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
                    tracing::error!(error = %e, message = rowid, "delivery attempt failed; will retry at the next scan");
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

    /// Delivers what can be delivered of one message, then reports its failures.
    pub async fn process(&self, rowid: i64) -> Result<(), StoreError> {
        let Some(msg) = self.store.queued(rowid).await? else {
            return Ok(());
        };
        let pending = |m: &QueuedMessage| {
            m.recipients.iter().any(|r| {
                matches!(
                    r.state,
                    RcptState::Failed {
                        report: ReportState::Pending,
                        ..
                    }
                )
            })
        };
        // Report what this attempt failed, and what an earlier attempt failed but did not report.
        if self.deliver(&msg).await? || pending(&msg) {
            self.report(rowid).await?;
        }
        Ok(())
    }

    fn event_base(&self, msg: &QueuedMessage) -> EventBase {
        EventBase {
            server: self.config.server.hostname.clone(),
            queue_id: msg.queue_id.clone(),
            message_id: msg.message_id.clone(),
            sender: msg.sender.clone(),
            client_ip: None,
            size: Some(msg.size),
        }
    }

    /// Delivers the message's Ready local recipients. Returns true if any failed.
    async fn deliver(&self, msg: &QueuedMessage) -> Result<bool, StoreError> {
        let rcpts: Vec<_> = msg
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Ready && next_hop(r) == NextHop::Local)
            .collect();
        if rcpts.is_empty() {
            return Ok(false);
        }
        let mut outcomes = Vec::new();
        match self.local.start(msg).await {
            Err(f) => outcomes.extend(
                rcpts
                    .iter()
                    .map(|r| (r.id, Outcome::from_failure(f.clone()))),
            ),
            Ok(mut d) => {
                let mut added = Vec::new();
                for r in &rcpts {
                    match d.add_recipient(r).await {
                        Ok(()) => added.push(r.id),
                        Err(o) => outcomes.push((r.id, o)),
                    }
                }
                match d.body().await {
                    Ok(()) => outcomes.extend(d.commit().await),
                    Err(f) => {
                        d.abort();
                        outcomes.extend(
                            added
                                .into_iter()
                                .map(|id| (id, Outcome::from_failure(f.clone()))),
                        );
                    }
                }
            }
        }
        let settles: Vec<(i64, Settle)> = outcomes
            .into_iter()
            .filter_map(|(id, o)| match o {
                Outcome::Delivered(drop) => Some((id, Settle::Delivered(drop))),
                Outcome::Failed(f) => Some((
                    id,
                    Settle::Failed { status: f.status, reason: f.reason, diagnostic: f.diagnostic },
                )),
                Outcome::Deferred(f) => {
                    tracing::warn!(queue_id = %msg.queue_id, status = %f.status, reason = %f.reason, "recipient deferred");
                    None
                }
            })
            .collect();
        let settled = self
            .store
            .settle(msg.rowid, self.event_base(msg), settles)
            .await?;
        Ok(settled
            .iter()
            .any(|(_, s)| matches!(s, crate::store::SettledAs::Failed { .. })))
    }

    /// Reports the message's failures that are not yet reported.
    pub async fn report(&self, rowid: i64) -> Result<(), StoreError> {
        let Some(msg) = self.store.queued(rowid).await? else {
            return Ok(());
        };
        let base = self.event_base(&msg);
        let pending: Vec<_> = msg
            .recipients
            .iter()
            .filter(|r| {
                matches!(
                    r.state,
                    RcptState::Failed {
                        report: ReportState::Pending,
                        ..
                    }
                )
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut reports = Vec::new();
        let mut events = Vec::new();
        if msg.sender.is_empty() {
            for r in &pending {
                reports.push((r.id, ReportState::Absorbed));
                events.push(
                    base.event(EventId::ReportAbsorbed, Some(&r.address))
                        .detail("the sender is null (this is itself a report); no report is sent"),
                );
            }
            self.store
                .record_reports(rowid, reports, None, events)
                .await?;
            return Ok(());
        }
        let mut failed = Vec::new();
        for r in &pending {
            let RcptState::Failed {
                status,
                reason,
                diagnostic,
                at,
                ..
            } = &r.state
            else {
                continue;
            };
            if !r.effective_notify().failure {
                reports.push((r.id, ReportState::NotRequested));
                events.push(
                    base.event(EventId::ReportNotRequested, Some(&r.address))
                        .status(status.to_string()),
                );
                continue;
            }
            failed.push((
                r.id,
                FailedRecipient {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    original: (r.original != r.address).then(|| r.original.clone()),
                    status: *status,
                    reason: reason.clone(),
                    diagnostic: diagnostic.clone(),
                    last_attempt: *at,
                },
            ));
        }
        let mut ndr = None;
        if !failed.is_empty() {
            let content = self.store.content(msg.content_id).await?;
            let report = self.build_report(&msg, &content, &failed).await?;
            for (id, f) in &failed {
                reports.push((*id, ReportState::Sent(report.queue_id.to_string())));
                events.push(
                    base.event(EventId::NdrGenerated, Some(&f.address))
                        .status(f.status.to_string())
                        .detail(format!(
                            "NDR queued as {} for {}",
                            report.queue_id, msg.sender
                        )),
                );
            }
            ndr = Some(report);
        }
        if let Some(id) = self
            .store
            .record_reports(rowid, reports, ndr, events)
            .await?
        {
            self.handle.notify(id);
        }
        Ok(())
    }

    /// Builds the non-delivery report for `failed`, addressed to the message's sender.
    async fn build_report(
        &self,
        msg: &QueuedMessage,
        content: &[u8],
        failed: &[(i64, FailedRecipient)],
    ) -> Result<NewMessage, StoreError> {
        let host = &self.config.server.hostname;
        let queue_id = QueueId::generate();
        let message_id = format!("{queue_id}@{host}");
        let recipients: Vec<FailedRecipient> = failed.iter().map(|(_, f)| f.clone()).collect();
        let bytes = dsn::failure_report(&FailureReport {
            reporting_mta: host,
            message_id: &message_id,
            to: &msg.sender,
            envid: msg.params.envid.as_deref(),
            arrival: msg.arrival,
            ret: msg.params.ret,
            original: content,
            recipients: &recipients,
        });
        let targets = self.resolve_sender(&msg.sender).await?;
        let base = EventBase {
            server: host.clone(),
            queue_id: queue_id.to_string(),
            message_id: Some(message_id.clone()),
            sender: String::new(),
            client_ip: None,
            size: Some(bytes.len() as u64),
        };
        let accepted = AcceptedRcpt {
            given: msg.sender.to_lowercase(),
            params: Default::default(),
            targets,
            redirects: Vec::new(),
        };
        let mut events = Vec::new();
        let rcpts = ingest::merge_recipients(std::slice::from_ref(&accepted), &base, &mut events);
        Ok(NewMessage {
            queue_id,
            sender: String::new(),
            params: ingest::report_params(),
            message_id: Some(message_id),
            arrival: Utc::now(),
            client_ip: None,
            kind: MessageKind::Report,
            content: bytes,
            recipients: rcpts,
            events,
        })
    }

    /// Where a report to `sender` goes.
    async fn resolve_sender(&self, sender: &str) -> Result<Vec<Target>, StoreError> {
        let key = sender.to_lowercase();
        let local = key
            .rsplit_once('@')
            .is_some_and(|(_, d)| self.config.is_local_domain(d));
        if !local {
            return Ok(vec![Target {
                address: key,
                route: Route::Remote,
            }]);
        }
        Ok(
            match directory::resolve(self.store.as_ref(), &self.config, &key).await? {
                Resolution::Targets { targets, .. } => targets,
                _ => vec![Target {
                    address: key,
                    route: Route::Unresolved,
                }],
            },
        )
    }
}
