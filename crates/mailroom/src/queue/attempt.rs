//! Delivery attempts: which recipients are due, which target serves them, and what their
//! outcomes mean for the queue (settled, deferred until when, or expired).

use chrono::{DateTime, Utc};
use mailroom_proto::smtp::Status;

use super::manager::Manager;
use super::retry;
use super::{Failure, QueueKind, QueuedMessage, QueuedRecipient, RcptState, Settle};
use crate::deliver::{DeliveryTarget, Outcome};
use crate::route::org::Decision;
use crate::route::{self, next_hop, NextHop};
use crate::store::StoreError;
use crate::track::{EventBase, EventId};

impl Manager {
    pub(super) fn event_base(&self, msg: &QueuedMessage) -> EventBase {
        EventBase {
            server: self.config().server.hostname.clone(),
            queue_id: msg.queue_id.clone(),
            message_id: msg.message_id.clone(),
            sender: msg.sender.clone(),
            client_ip: None,
            size: Some(msg.size),
        }
    }

    /// Attempts the message's due recipients and records the outcomes.
    pub(super) async fn attempt(
        &self,
        msg: &QueuedMessage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let expires = retry::expires_at(&self.config().queue, msg.arrival);
        // Recipients whose queue an administrator disabled or scheduled for later are not due.
        let due: Vec<&QueuedRecipient> = msg
            .recipients
            .iter()
            .filter(|r| r.held.is_none())
            .filter(|r| match &r.state {
                RcptState::Ready => true,
                RcptState::Deferred { next_attempt, .. } => *next_attempt <= now,
                _ => false,
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut settles = Vec::new();
        let mut expired = Vec::new();
        let mut groups: Vec<(NextHop, Vec<QueuedRecipient>)> = Vec::new();
        let mut resubmitted = Vec::new();
        for r in due {
            if let Some(QueueKind::Shadow(server)) = &r.queue {
                match self.shadow_due(r, server, now, expires) {
                    Some(s) => {
                        settles.push((r.id, s));
                        continue;
                    }
                    None => resubmitted.push(
                        self.event_base(msg)
                            .event(EventId::ShadowResubmitted, Some(&r.address))
                            .detail(format!(
                                "{server} is DOWN and has not confirmed the message: sending it again"
                            )),
                    ),
                }
            }
            if now >= expires {
                expired.push(r.id);
                settles.push((r.id, Settle::Failed(self.expired(msg, r, now))));
                continue;
            }
            // Mail leaving this server waits, untouched, while the routing engine is not
            // running (local mail needs no route).
            if next_hop(r) != NextHop::Local && !self.services.running("routing-engine") {
                continue;
            }
            let hop = match self.route(msg, r, now, expires) {
                Ok(h) => h,
                Err(s) => {
                    settles.push((r.id, s));
                    continue;
                }
            };
            match groups.iter_mut().find(|(h, _)| *h == hop) {
                Some((_, g)) => g.push(r.clone()),
                None => groups.push((hop, vec![r.clone()])),
            }
        }
        for (hop, rcpts) in groups {
            let (target, service): (&dyn DeliveryTarget, _) = match hop {
                NextHop::Local => (&self.local, "local-delivery"),
                _ => (&self.smtp, "smtp-send"),
            };
            // Mail for a delivery service that is not running waits for it, untouched.
            if !self.services.running(service) {
                continue;
            }
            for (id, outcome) in run_delivery(target, msg, &hop, &rcpts).await {
                let Some(r) = rcpts.iter().find(|r| r.id == id) else {
                    continue;
                };
                settles.push((id, self.settle_for(r, &hop, outcome, now, expires)));
            }
        }
        if !resubmitted.is_empty() {
            self.store.track(resubmitted).await?;
        }
        let lines = settles
            .iter()
            .filter_map(|(id, s)| super::log::line(msg, *id, s, expired.contains(id)))
            .collect();
        let settled = self
            .store
            .settle(msg.rowid, self.event_base(msg), settles)
            .await?;
        super::log::write(&msg.queue_id, msg.arrival, now, lines, &settled);
        Ok(())
    }

    /// A shadow copy come due: kept longer while its server is UP, let go when the message
    /// expires (that server accepted it), or `None`: its server is DOWN, send it again.
    fn shadow_due(
        &self,
        r: &QueuedRecipient,
        server: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Option<Settle> {
        let up = self
            .org
            .get()
            .is_some_and(|s| s.state.dir.server(server).is_some() && s.state.links.is_up(server));
        if now >= expires {
            return Some(Settle::Delivered {
                drop: None,
                remote_mta: Some(server.to_string()),
                relayed: false,
                report: false,
                tls: None,
            });
        }
        if up {
            return Some(Settle::Shadow {
                server: server.to_string(),
                until: (now + self.config().org.shadow_timeout).min(expires),
                renew: true,
                tls: None,
            });
        }
        tracing::info!(recipient = %r.address, server, "shadow copy resubmitted: its server is DOWN");
        None
    }

    /// The next hop of a recipient; `Err` when routing itself settles it (no route now, or
    /// none ever). Inside an organization, remote recipients follow its routing
    /// ([`route::org::plan`]), from this server, with the hops the message has made so far.
    fn route(
        &self,
        msg: &QueuedMessage,
        r: &QueuedRecipient,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<NextHop, Settle> {
        let hop = next_hop(r);
        let NextHop::Remote(domain) = &hop else {
            return Ok(hop);
        };
        let Some(snap) = self.org.get() else {
            return Ok(hop);
        };
        let passed = msg
            .org_meta
            .as_ref()
            .map(|m| m.hops.as_slice())
            .unwrap_or_default();
        let req = route::org::Request {
            recipient: &r.address,
            size: msg.size,
            passed,
        };
        let wait = |f: Failure, queue: QueueKind| Settle::Deferred {
            failure: f,
            next_attempt: (now + self.config().org.glitch_retry).min(expires),
            queue,
        };
        match route::org::plan(&snap.state, snap.me(), req).decision {
            Decision::Server { name, address } => Ok(NextHop::Org {
                server: name,
                address,
            }),
            Decision::Outside {
                smart_host: Some(host),
                ..
            } => Ok(NextHop::SmartHost {
                domain: domain.clone(),
                host,
            }),
            Decision::Outside { .. } => Ok(hop),
            Decision::Local => Err(wait(
                Failure::new(Status::MAILBOX_TEMPORARY,
                    format!(
                        "the organization names this server as the home of {}, which has no mailbox here yet",
                        r.address
                    ),
                ),
                QueueKind::Retry,
            )),
            Decision::Unreachable { why } => {
                Err(wait(Failure::new(Status::CANNOT_ROUTE_YET, why), QueueKind::Unreachable))
            }
            Decision::Fail { status, why } => Err(Settle::Failed(Failure::new(status, why))),
        }
    }

    /// What an outcome means for the queue.
    fn settle_for(
        &self,
        r: &QueuedRecipient,
        hop: &NextHop,
        outcome: Outcome,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Settle {
        let notify = r.effective_notify();
        if let (NextHop::Org { server, .. }, Outcome::Relayed { tls, .. }) = (hop, &outcome) {
            // Kept until the next server confirms it (shadow redundancy).
            return Settle::Shadow {
                server: server.clone(),
                until: (now + self.config().org.shadow_timeout).min(expires),
                renew: false,
                tls: tls.clone(),
            };
        }
        match outcome {
            Outcome::Delivered(drop) => Settle::Delivered {
                drop,
                remote_mta: None,
                relayed: false,
                report: notify.success,
                tls: None,
            },
            Outcome::Relayed {
                remote_mta,
                dsn,
                tls,
            } => Settle::Delivered {
                drop: None,
                remote_mta: Some(remote_mta),
                relayed: !dsn,
                // A peer with DSN carries NOTIFY on; without, we say "relayed" if asked.
                report: !dsn && notify.success,
                tls,
            },
            Outcome::Failed(f) => Settle::Failed(f),
            Outcome::Deferred(f) => {
                let attempts = r.attempts + 1;
                let wait = retry::next_wait(
                    &self.config().queue,
                    attempts,
                    retry::is_glitch(f.status),
                    rand::random(),
                );
                let next_attempt = (now + wait).min(expires);
                let queue = match hop {
                    NextHop::Local => QueueKind::Retry,
                    _ if is_routing_failure(&f) => QueueKind::Unreachable,
                    hop => hop.queue(&self.config()),
                };
                Settle::Deferred {
                    failure: f,
                    next_attempt,
                    queue,
                }
            }
        }
    }

    /// The failure of a recipient whose message expired: how long, where, and the last error.
    fn expired(&self, msg: &QueuedMessage, r: &QueuedRecipient, now: DateTime<Utc>) -> Failure {
        let tried = retry::in_words(now - msg.arrival);
        let mut reason = format!(
            "mailroom tried to deliver the message for {tried} ({} attempt{}) and gave up when it expired",
            r.attempts,
            if r.attempts == 1 { "" } else { "s" }
        );
        let mut diagnostic = None;
        let mut remote_mta = None;
        if let RcptState::Deferred { last_error, .. } = &r.state {
            match &last_error.remote_mta {
                Some(m) => reason.push_str(&format!("; it was trying {m}")),
                None => reason.push_str(&format!(
                    "; it was trying to reach {}",
                    route::domain_of(&r.address)
                )),
            }
            reason.push_str(&format!("; the last attempt failed: {}", last_error.reason));
            diagnostic = last_error.diagnostic.clone();
            remote_mta = last_error.remote_mta.clone();
        }
        // Expired while no route was UP (the unreachable queue): "no route" is what the sender
        // needs to hear (RFC 3463 5.4.4), not only that time ran out.
        let unroutable = r.queue == Some(QueueKind::Unreachable);
        let detail = if unroutable { 4 } else { 7 };
        let status =
            mailroom_proto::smtp::Status::new(mailroom_proto::smtp::Class::Permanent, 4, detail);
        Failure {
            status,
            reason,
            diagnostic,
            remote_mta,
        }
    }
}

/// True when no destination could be found at all (DNS), as opposed to one that refused.
fn is_routing_failure(f: &Failure) -> bool {
    f.remote_mta.is_none() && f.status.subject == 4 && matches!(f.status.detail, 3 | 4)
}

/// Runs one delivery through a target: start → add recipients → body → commit.
async fn run_delivery(
    target: &dyn DeliveryTarget,
    msg: &QueuedMessage,
    hop: &NextHop,
    rcpts: &[QueuedRecipient],
) -> Vec<(i64, Outcome)> {
    let mut outcomes = Vec::new();
    let mut d = match target.start(msg, hop).await {
        Ok(d) => d,
        Err(f) => {
            return rcpts
                .iter()
                .map(|r| (r.id, Outcome::from_failure(f.clone())))
                .collect()
        }
    };
    let mut added = Vec::new();
    for r in rcpts {
        match d.add_recipient(r).await {
            Ok(()) => added.push(r.id),
            Err(o) => outcomes.push((r.id, o)),
        }
    }
    if added.is_empty() {
        d.abort();
        return outcomes;
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
    outcomes
}
