//! Outbound SMTP: delivery to other servers (RFC 5321), our own client on the pure protocol code.
//!
//! For each message and next hop: find the destinations (smart host, or MX hosts in preference
//! order, see [`crate::route::destinations`]), take a cached connection to the hop or open one,
//! then run one transaction: MAIL with SIZE/BODY/SMTPUTF8 and the DSN parameters the peer
//! understands, one RCPT per recipient (pipelined when the peer offers PIPELINING), DATA, and
//! the message. Each recipient's outcome comes from the reply it got, through [`classify`]: the
//! one place where a reply becomes delivered, deferred or failed.
//!
//! What the peer lacks is handled as the RFCs say: a message larger than its SIZE fails at once
//! (`5.3.4`, RFC 1870 §6); a message that needs SMTPUTF8 fails with `5.6.7` (RFC 6531 §3.2); an
//! 8-bit message to a server without 8BITMIME fails with `5.6.3` (RFC 6152 §3: mailroom does not
//! downgrade); without DSN, recipients that asked for success notices are reported "relayed".
//!
//! Connections are reused for up to `max_messages_per_connection` messages and kept idle for
//! `idle_timeout`; at most `max_connections` are open in total and `max_connections_per_domain`
//! to one hop.

mod conn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mailroom_proto::smtp::client::{dot_stuff, mail_command, rcpt_command, Response};
use mailroom_proto::smtp::{Body, Class};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Delivery, DeliveryFuture, DeliveryTarget, Failure, Outcome};
use crate::config::Config;
use crate::queue::{QueuedMessage, QueuedRecipient};
use crate::route::dns::Resolver;
use crate::route::{self, NextHop};
use crate::store::Store;
use crate::track::{EventBase, EventId};
use conn::{Conn, ConnError};

/// Turns a reply to MAIL, RCPT or the end of data into an outcome (RFC 5321 §4.2.1: 2yz
/// success, 4yz transient, 5yz permanent; the basic code decides, RFC 3463 §2).
pub fn classify(r: &Response, host: &str, what: &str) -> Outcome {
    if r.is_success() {
        return Outcome::Relayed {
            remote_mta: host.to_string(),
            dsn: false,
        };
    }
    let status = r.effective_status();
    let reason = match status.class {
        Class::Permanent => format!("{host} refused the {what}"),
        _ => format!("{host} did not accept the {what} for now"),
    };
    Outcome::from_failure(Failure {
        status,
        reason,
        diagnostic: Some(r.to_string()),
        remote_mta: Some(host.to_string()),
    })
}

/// An open connection with the connection-limit permits it holds (total, and for its hop).
type Held = (Conn, OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A way to reach a hop: a cached connection, or permits to open one.
enum Slot {
    Idle(Box<Held>),
    New(OwnedSemaphorePermit, OwnedSemaphorePermit),
}

struct Inner {
    config: Arc<Config>,
    resolver: Arc<dyn Resolver>,
    store: Arc<dyn Store>,
    total: Arc<Semaphore>,
    per_hop: Mutex<HashMap<String, Arc<Semaphore>>>,
    idle: Mutex<HashMap<String, Vec<Held>>>,
}

/// The outbound SMTP delivery target.
#[derive(Clone)]
pub struct SmtpTarget {
    inner: Arc<Inner>,
}

impl SmtpTarget {
    /// A target using `resolver` for MX and address lookups.
    pub fn new(
        config: Arc<Config>,
        resolver: Arc<dyn Resolver>,
        store: Arc<dyn Store>,
    ) -> SmtpTarget {
        let total = Arc::new(Semaphore::new(config.outbound.max_connections));
        SmtpTarget {
            inner: Arc::new(Inner {
                config,
                resolver,
                store,
                total,
                per_hop: Mutex::new(HashMap::new()),
                idle: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Closes idle connections older than the idle timeout.
    pub async fn purge_idle(&self) {
        let timeout = self.inner.config.outbound.idle_timeout;
        let stale: Vec<Conn> = match self.inner.idle.lock() {
            Ok(mut idle) => {
                let mut out = Vec::new();
                for conns in idle.values_mut() {
                    let (old, keep): (Vec<_>, Vec<_>) = conns
                        .drain(..)
                        .partition(|(c, _, _)| c.idle_since.elapsed() >= timeout);
                    *conns = keep;
                    out.extend(old.into_iter().map(|(c, _, _)| c));
                }
                idle.retain(|_, v| !v.is_empty());
                out
            }
            Err(_) => Vec::new(),
        };
        for c in stale {
            c.quit().await;
        }
    }

    fn hop_limit(&self, hop: &str) -> Arc<Semaphore> {
        let max = self.inner.config.outbound.max_connections_per_domain;
        match self.inner.per_hop.lock() {
            Ok(mut m) => m
                .entry(hop.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(max)),
        }
    }

    /// Waits for a way to reach `hop` within the connection limits: an idle connection to it, or
    /// permits for a new one. Idle connections keep their permits, so while waiting this looks
    /// again at the idle pool (where a connection to this hop may have come back), and closes
    /// idle connections to other hops when the total limit is what stands in the way.
    async fn connection_slot(&self, hop: &str) -> Slot {
        let per_hop = self.hop_limit(hop);
        loop {
            if let Some(c) = self.take_idle(hop) {
                return Slot::Idle(Box::new(c));
            }
            if let Ok(h) = per_hop.clone().try_acquire_owned() {
                match self.inner.total.clone().try_acquire_owned() {
                    Ok(t) => return Slot::New(t, h),
                    Err(_) => {
                        drop(h);
                        if let Some(c) = self.take_any_idle() {
                            c.quit().await;
                            continue;
                        }
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Takes the longest-idle connection to any hop.
    fn take_any_idle(&self) -> Option<Conn> {
        let mut idle = self.inner.idle.lock().ok()?;
        let hop = idle
            .iter()
            .filter_map(|(h, v)| v.first().map(|c| (h.clone(), c.0.idle_since)))
            .min_by_key(|(_, t)| *t)?
            .0;
        let conns = idle.get_mut(&hop)?;
        let (c, _, _) = conns.remove(0);
        if conns.is_empty() {
            idle.remove(&hop);
        }
        Some(c)
    }

    fn take_idle(&self, hop: &str) -> Option<Held> {
        let timeout = self.inner.config.outbound.idle_timeout;
        let mut idle = self.inner.idle.lock().ok()?;
        let conns = idle.get_mut(hop)?;
        while let Some(c) = conns.pop() {
            if c.0.idle_since.elapsed() < timeout {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(
        &self,
        hop: &str,
        mut c: (Conn, OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) -> Option<Conn> {
        if c.0.messages >= self.inner.config.outbound.max_messages_per_connection {
            return Some(c.0);
        }
        c.0.idle_since = Instant::now();
        match self.inner.idle.lock() {
            Ok(mut idle) => {
                idle.entry(hop.to_string()).or_default().push(c);
                None
            }
            Err(_) => Some(c.0),
        }
    }

    /// Delivers `content` for `rcpts` of `msg` to the servers of `domain`.
    pub async fn deliver(
        &self,
        msg: &QueuedMessage,
        content: &[u8],
        domain: &str,
        rcpts: &[QueuedRecipient],
    ) -> Vec<(i64, Outcome)> {
        let cfg = &self.inner.config;
        let all = |o: Outcome| rcpts.iter().map(|r| (r.id, o.clone())).collect::<Vec<_>>();
        let hop = route::link_queue(cfg, domain).key();
        // A cached connection if there is one; if it turns out dead before anything was
        // settled, a fresh one.
        let (total, per_hop) = match self.connection_slot(&hop).await {
            Slot::New(t, h) => (t, h),
            Slot::Idle(c) => match self.transaction(*c, msg, content, rcpts, &hop).await {
                Ok(outcomes) => return outcomes,
                Err(e) => {
                    tracing::debug!(hop, error = %e, "cached connection failed; opening a new one");
                    match self.connection_slot(&hop).await {
                        Slot::New(t, h) => (t, h),
                        Slot::Idle(held) => {
                            let (c, t, h) = *held;
                            c.quit().await;
                            (t, h)
                        }
                    }
                }
            },
        };
        let dests = match route::destinations(cfg, self.inner.resolver.as_ref(), domain).await {
            Ok(d) => d,
            Err(f) => return all(Outcome::from_failure(f)),
        };
        let helo = cfg
            .outbound
            .helo_name
            .clone()
            .unwrap_or_else(|| cfg.server.hostname.clone());
        let mut last = String::from("no mail host could be reached");
        for d in &dests {
            for addr in &d.addrs {
                let opened = Conn::open(
                    &d.host,
                    *addr,
                    &helo,
                    cfg.outbound.connect_timeout,
                    cfg.outbound.command_timeout,
                )
                .await;
                let c = match opened {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(host = %d.host, %addr, error = %e, "outbound connection failed");
                        last = e.0;
                        continue;
                    }
                };
                match self
                    .transaction((c, total, per_hop), msg, content, rcpts, &hop)
                    .await
                {
                    Ok(outcomes) => return outcomes,
                    Err(e) => {
                        // The connection broke mid-transaction: retry later rather than risk
                        // sending twice to another host.
                        return all(Outcome::Deferred(Failure {
                            status: mailroom_proto::smtp::Status::new(Class::Transient, 4, 2),
                            reason: format!(
                                "the connection to {} broke off during delivery",
                                d.host
                            ),
                            diagnostic: Some(e.0),
                            remote_mta: Some(d.host.clone()),
                        }));
                    }
                }
            }
        }
        all(Outcome::Deferred(Failure {
            status: mailroom_proto::smtp::Status::new(Class::Transient, 4, 1),
            reason: format!(
                "no mail server for {domain} answered (tried {})",
                dests
                    .iter()
                    .map(|d| d.host.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            diagnostic: Some(last),
            remote_mta: None,
        }))
    }

    /// One transaction on an open connection. `Err` means the connection failed before any
    /// recipient was settled.
    async fn transaction(
        &self,
        (mut c, total, per_hop): Held,
        msg: &QueuedMessage,
        content: &[u8],
        rcpts: &[QueuedRecipient],
        hop: &str,
    ) -> Result<Vec<(i64, Outcome)>, ConnError> {
        let o = &self.inner.config.outbound;
        let host = c.host.clone();
        let caps = c.caps.clone();
        let all = |o: Outcome| rcpts.iter().map(|r| (r.id, o.clone())).collect::<Vec<_>>();

        // What the peer lacks (RFC 1870 §6, RFC 6531 §3.2, RFC 6152 §3).
        let size = content.len() as u64;
        let eight_bit = msg.params.body == Some(Body::EightBitMime) || !content.is_ascii();
        let refusal = if caps.size_limit().is_some_and(|l| size > l) {
            Some(Failure::new(
                "5.3.4",
                format!(
                    "the message ({size} octets) is larger than {host} accepts ({} octets)",
                    caps.size_limit().unwrap_or(0)
                ),
            ))
        } else if msg.params.smtputf8 && !caps.smtputf8 {
            Some(Failure::new("5.6.7", format!("the message needs SMTPUTF8 (international addresses), which {host} does not support")))
        } else if eight_bit && !caps.eight_bit_mime {
            Some(Failure::new(
                "5.6.3",
                format!("the message has 8-bit content and {host} does not support 8BITMIME"),
            ))
        } else {
            None
        };
        if let Some(mut f) = refusal {
            f.remote_mta = Some(host.clone());
            let out = all(Outcome::Failed(f));
            if let Some(c) = self.put_idle(hop, (c, total, per_hop)) {
                c.quit().await;
            }
            return Ok(out);
        }

        self.track_start(msg, rcpts, &c).await;
        let mail = mail_command(
            &msg.sender,
            &caps,
            size,
            eight_bit,
            msg.params.smtputf8,
            msg.params.ret,
            msg.params.envid.as_deref(),
        );
        let rcpt_lines: Vec<String> = rcpts
            .iter()
            .map(|r| rcpt_command(&r.address, &caps, r.notify, r.orcpt.as_deref()))
            .collect();
        let mut outcomes: Vec<(i64, Outcome)> = Vec::new();
        let mut accepted: Vec<&QueuedRecipient> = Vec::new();
        let mail_reply;
        if caps.pipelining {
            // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order.
            let mut batch = mail.clone().into_bytes();
            for l in &rcpt_lines {
                batch.extend_from_slice(l.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            c.send(&batch, o.command_timeout).await?;
            mail_reply = c.read(o.command_timeout).await?;
            for r in rcpts {
                let reply = c.read(o.command_timeout).await?;
                self.settle_rcpt(&mail_reply, &reply, r, &host, &mut outcomes, &mut accepted);
            }
        } else {
            c.send(mail.as_bytes(), o.command_timeout).await?;
            mail_reply = c.read(o.command_timeout).await?;
            if mail_reply.is_success() {
                for (r, line) in rcpts.iter().zip(&rcpt_lines) {
                    c.send(line.as_bytes(), o.command_timeout).await?;
                    let reply = c.read(o.command_timeout).await?;
                    self.settle_rcpt(&mail_reply, &reply, r, &host, &mut outcomes, &mut accepted);
                }
            } else {
                for r in rcpts {
                    outcomes.push((r.id, classify(&mail_reply, &host, "sender")));
                }
            }
            if !accepted.is_empty() {
                c.send(b"DATA\r\n", o.command_timeout).await?;
            }
        }

        let dsn = caps.dsn;
        let data_sent = caps.pipelining || !accepted.is_empty();
        if data_sent {
            let go = c.read(o.data_timeout).await?;
            if go.code == 354 && !accepted.is_empty() {
                let body = dot_stuff(content);
                c.send(&body, o.block_timeout).await?;
                let end = c.read(o.data_end_timeout).await?;
                for r in &accepted {
                    outcomes.push((r.id, with_dsn(classify(&end, &host, "message"), dsn)));
                }
            } else if go.code == 354 {
                // Pipelined DATA went through although no recipient was accepted: end it empty.
                c.send(b".\r\n", o.block_timeout).await?;
                let _ = c.read(o.data_end_timeout).await?;
            } else {
                for r in &accepted {
                    outcomes.push((r.id, classify(&go, &host, "message")));
                }
            }
        }
        c.messages += 1;
        let clean = outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Relayed { .. }));
        if !clean {
            // Leave the connection in a known state for the next message.
            c.send(b"RSET\r\n", o.command_timeout).await?;
            let _ = c.read(o.command_timeout).await?;
        }
        if let Some(c) = self.put_idle(hop, (c, total, per_hop)) {
            c.quit().await;
        }
        Ok(outcomes)
    }

    fn settle_rcpt<'r>(
        &self,
        mail: &Response,
        reply: &Response,
        r: &'r QueuedRecipient,
        host: &str,
        outcomes: &mut Vec<(i64, Outcome)>,
        accepted: &mut Vec<&'r QueuedRecipient>,
    ) {
        if !mail.is_success() {
            outcomes.push((r.id, classify(mail, host, "sender")));
        } else if reply.is_success() {
            accepted.push(r);
        } else {
            outcomes.push((r.id, classify(reply, host, "recipient")));
        }
    }

    async fn track_start(&self, msg: &QueuedMessage, rcpts: &[QueuedRecipient], c: &Conn) {
        let base = EventBase {
            server: self.inner.config.server.hostname.clone(),
            queue_id: msg.queue_id.clone(),
            message_id: msg.message_id.clone(),
            sender: msg.sender.clone(),
            client_ip: None,
            size: Some(msg.size),
        };
        let events = rcpts
            .iter()
            .map(|r| {
                base.event(EventId::OutboundStarted, Some(&r.address))
                    .detail(format!("to {} [{}]", c.host, c.addr.ip()))
            })
            .collect();
        if let Err(e) = self.inner.store.track(events).await {
            tracing::warn!(error = %e, "tracking event not written");
        }
    }
}

/// Marks a success with whether the peer took the DSN parameters along.
fn with_dsn(o: Outcome, dsn: bool) -> Outcome {
    match o {
        Outcome::Relayed { remote_mta, .. } => Outcome::Relayed { remote_mta, dsn },
        other => other,
    }
}

struct SmtpDelivery {
    target: SmtpTarget,
    msg: QueuedMessage,
    domain: String,
    rcpts: Vec<QueuedRecipient>,
    content: Option<Vec<u8>>,
}

impl DeliveryTarget for SmtpTarget {
    fn start<'a>(
        &'a self,
        msg: &'a QueuedMessage,
        hop: &'a NextHop,
    ) -> DeliveryFuture<'a, Result<Box<dyn Delivery>, Failure>> {
        Box::pin(async move {
            let NextHop::Remote(domain) = hop else {
                return Err(Failure::new(
                    "4.3.0",
                    "a local recipient was routed to SMTP (routing error)",
                ));
            };
            Ok(Box::new(SmtpDelivery {
                target: self.clone(),
                msg: msg.clone(),
                domain: domain.clone(),
                rcpts: Vec::new(),
                content: None,
            }) as Box<dyn Delivery>)
        })
    }
}

impl Delivery for SmtpDelivery {
    fn add_recipient<'a>(
        &'a mut self,
        rcpt: &'a QueuedRecipient,
    ) -> DeliveryFuture<'a, Result<(), Outcome>> {
        Box::pin(async move {
            self.rcpts.push(rcpt.clone());
            Ok(())
        })
    }

    fn body(&mut self) -> DeliveryFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            let c = self
                .target
                .inner
                .store
                .content(self.msg.content_id)
                .await
                .map_err(|e| {
                    Failure::new(
                        "4.3.0",
                        format!("the message could not be read from the queue: {e}"),
                    )
                })?;
            self.content = Some(c);
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> DeliveryFuture<'static, Vec<(i64, Outcome)>> {
        Box::pin(async move {
            let content = self.content.unwrap_or_default();
            self.target
                .deliver(&self.msg, &content, &self.domain, &self.rcpts)
                .await
        })
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests;
