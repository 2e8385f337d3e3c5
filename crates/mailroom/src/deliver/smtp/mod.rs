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
//!
//! - [`transaction`]: one transaction, and when its outcomes stand;
//! - [`pool`]: the connection limits and the idle connections;
//! - [`crate::client`]: one connection, each command and reply under its RFC 5321 §4.5.3.2
//!   timeout.

mod pool;
mod transaction;

use std::sync::Arc;

use mailroom_proto::smtp::client::Response;
use mailroom_proto::smtp::{Class, Status};
use tokio::io::AsyncRead;

use super::{Delivery, DeliveryFuture, DeliveryTarget, Failure, Outcome};
use crate::client::{self as conn, Conn};
use crate::config::Config;
use crate::model::LiveConfig;
use crate::model::{OrgMeta, QueuedMessage, QueuedRecipient};
use crate::org::channel::Channel;
use crate::org::view::OrgView;
use crate::route::dns::Resolver;
use crate::route::{self, NextHop};
use crate::store::{Queue, StoredText};
use crate::track::{EventBase, EventId};
use pool::{Held, Pool, Slot};
use transaction::{Transaction, TxError};

/// Turns a reply to MAIL, RCPT or the end of data into an outcome (RFC 5321 §4.2.1: 2yz
/// success, 4yz transient, 5yz permanent; the basic code decides, RFC 3463 §2).
pub fn classify(r: &Response, host: &str, what: &str) -> Outcome {
    if r.is_success() {
        return Outcome::Relayed {
            remote_mta: host.to_string(),
            dsn: false,
            tls: None,
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

/// The text of a message to send: its size, whether it has 8-bit octets, and a reader that can
/// be opened more than once (a second transaction, on a fresh connection, reads it again).
pub trait MessageText: Send + Sync {
    /// Its size in octets.
    fn size(&self) -> u64;
    /// True when an octet has the high bit set (RFC 6152: it needs 8BITMIME).
    fn eight_bit(&self) -> bool;
    /// A reader of the whole text from its start.
    fn open(&self) -> DeliveryFuture<'_, std::io::Result<Box<dyn AsyncRead + Send + Unpin + '_>>>;
}

/// A text held in memory.
impl MessageText for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn eight_bit(&self) -> bool {
        !self.is_ascii()
    }
    fn open(&self) -> DeliveryFuture<'_, std::io::Result<Box<dyn AsyncRead + Send + Unpin + '_>>> {
        let text: &[u8] = self;
        Box::pin(async move { Ok(Box::new(text) as Box<dyn AsyncRead + Send + Unpin>) })
    }
}

/// A stored text: the octets kept in the database, then its spool file, read as it is sent.
impl MessageText for StoredText {
    fn size(&self) -> u64 {
        self.size
    }
    fn eight_bit(&self) -> bool {
        self.eight_bit
    }
    fn open(&self) -> DeliveryFuture<'_, std::io::Result<Box<dyn AsyncRead + Send + Unpin + '_>>> {
        Box::pin(StoredText::open(self))
    }
}

/// The outbound SMTP delivery target.
#[derive(Clone)]
pub struct SmtpTarget {
    inner: Arc<Inner>,
}

struct Inner {
    config: LiveConfig,
    resolver: Arc<dyn Resolver>,
    store: Arc<dyn Queue>,
    /// The connection pool and the settings it was made with.
    pool: std::sync::Mutex<(PoolSettings, Arc<Pool>)>,
    org: Arc<OrgView>,
}

/// What the transactions of one delivery share: the configuration and the pool in effect at
/// its start, the hop's queue key, and the `X-ORG-META` to send.
struct Leg<'a> {
    cfg: &'a Config,
    pool: &'a Pool,
    hop: &'a str,
    meta: Option<&'a str>,
}

/// The `outbound` keys a pool is made with.
type PoolSettings = (usize, usize, u32, std::time::Duration);

fn pool_settings(config: &Config) -> PoolSettings {
    let o = &config.outbound;
    (
        o.max_connections,
        o.max_connections_per_domain,
        o.max_messages_per_connection,
        o.idle_timeout,
    )
}

fn new_pool(s: PoolSettings) -> Arc<Pool> {
    Arc::new(Pool::new(s.0, s.1, s.2, s.3))
}

impl SmtpTarget {
    /// A target using `resolver` for MX and address lookups. Every delivery reads the
    /// configuration in effect at its start, so that a reload's `outbound.` keys apply.
    pub fn new(
        config: LiveConfig,
        resolver: Arc<dyn Resolver>,
        store: Arc<dyn Queue>,
        org: Arc<OrgView>,
    ) -> SmtpTarget {
        let settings = pool_settings(&config.get());
        SmtpTarget {
            inner: Arc::new(Inner {
                config,
                resolver,
                store,
                pool: std::sync::Mutex::new((settings, new_pool(settings))),
                org,
            }),
        }
    }

    /// The pool for the limits in effect: when a reload changed them, a new one (connections of
    /// the old one finish their work and close).
    fn pool(&self, config: &Config) -> Arc<Pool> {
        let want = pool_settings(config);
        let mut p = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.0 != want {
            *p = (want, new_pool(want));
        }
        p.1.clone()
    }

    /// Closes idle connections older than the idle timeout.
    pub async fn purge_idle(&self) {
        let pool = self.pool(&self.inner.config.get());
        pool.purge_idle().await;
    }

    /// Delivers `text` for `rcpts` of `msg` to the servers of `hop`. Recipients that a peer
    /// puts off because of its recipient limit go in further transactions at once, for as long as
    /// each transaction makes progress.
    pub async fn deliver(
        &self,
        msg: &QueuedMessage,
        text: &dyn MessageText,
        hop: &NextHop,
        rcpts: &[QueuedRecipient],
    ) -> Vec<(i64, Outcome)> {
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let mut pending = rcpts.to_vec();
        loop {
            let (done, excess) = self.deliver_once(msg, text, hop, &pending).await;
            let progress = !done.is_empty();
            outcomes.extend(done);
            if excess.is_empty() {
                break;
            }
            if !progress {
                // The peer took none of them: they wait for the next attempt like any 4yz.
                let host = hop.host(&self.inner.config.get());
                outcomes.extend(
                    excess
                        .into_iter()
                        .map(|(r, reply)| (r.id, classify(&reply, &host, "recipient"))),
                );
                break;
            }
            pending = excess.into_iter().map(|(r, _)| r).collect();
        }
        outcomes
    }

    /// The `X-ORG-META` of `msg` for a hop to another server of the organization: what it
    /// arrived with, with this server added to its hops; or new, when it starts here.
    fn org_meta(&self, msg: &QueuedMessage, hop: &NextHop) -> Option<String> {
        let NextHop::Org { .. } = hop else {
            return None;
        };
        let me = self
            .inner
            .org
            .get()
            .map(|s| s.me().to_string())
            .unwrap_or_else(|| self.inner.config.get().server.hostname.clone());
        let mut m = msg.org_meta.clone().unwrap_or_else(|| OrgMeta {
            org_id: format!("{me}/{}", msg.queue_id),
            origin: me.clone(),
            origin_queue_id: msg.queue_id.clone(),
            arrival: msg.arrival,
            hops: Vec::new(),
        });
        m.hops.push(me);
        Some(m.encode())
    }

    /// The servers to try for a hop.
    async fn destinations(
        &self,
        cfg: &Config,
        hop: &NextHop,
    ) -> Result<Vec<route::Destination>, Failure> {
        let r = self.inner.resolver.as_ref();
        match hop {
            NextHop::Remote(domain) => route::destinations(cfg, r, domain).await,
            NextHop::SmartHost { host, .. } | NextHop::Org { address: host, .. } => {
                let Some((h, port)) = route::parse_host_port(host, 25) else {
                    return Err(Failure::new(
                        Status::CANNOT_ROUTE,
                        format!("{host:?} is not host:port"),
                    ));
                };
                let addrs = route::host_addrs(r, &h, port).await?;
                let name = match hop {
                    NextHop::Org { server, .. } => server.clone(),
                    _ => h,
                };
                Ok(vec![route::Destination { host: name, addrs }])
            }
            NextHop::Local => Err(Failure::new(
                Status::SYSTEM_TEMPORARY,
                "a local recipient was routed to SMTP (routing error)",
            )),
        }
    }

    /// One transaction for `rcpts`: on a connection left idle by an earlier delivery, or on a
    /// new one to the first destination that answers. Returns the outcomes that stand and the
    /// recipients the peer put off with `452`.
    async fn deliver_once(
        &self,
        msg: &QueuedMessage,
        text: &dyn MessageText,
        next: &NextHop,
        rcpts: &[QueuedRecipient],
    ) -> (Vec<(i64, Outcome)>, Vec<(QueuedRecipient, Response)>) {
        let cfg = &*self.inner.config.get();
        let pool = self.pool(cfg);
        let all = |o: Outcome| rcpts.iter().map(|r| (r.id, o.clone())).collect::<Vec<_>>();
        let hop = next.queue(cfg).key();
        let meta = self.org_meta(msg, next);
        let leg = Leg {
            cfg,
            pool: &pool,
            hop: &hop,
            meta: meta.as_deref(),
        };
        let permits = match pool.slot(&hop).await {
            Slot::New(p) => p,
            Slot::Idle(held) => {
                let host = held.conn.host.clone();
                let started = std::time::Instant::now();
                let done = self.transaction(*held, msg, text, rcpts, &leg).await;
                crate::metrics::get()
                    .outbound_transaction
                    .observe(started.elapsed().as_secs_f64());
                match done {
                    Ok(tx) => return tx,
                    Err(TxError::Unknown(e)) => return (all(broke_off(&host, &e)), Vec::new()),
                    Err(TxError::NotSent(e)) => {
                        // Nothing was delivered on the cached connection (it had gone stale): a
                        // fresh one may send it now.
                        tracing::debug!(hop, error = %e, "cached connection failed; opening a new one");
                        match pool.slot(&hop).await {
                            Slot::New(p) => p,
                            Slot::Idle(held) => {
                                let Held { conn, permits } = *held;
                                conn.quit().await;
                                permits
                            }
                        }
                    }
                }
            }
        };
        let dests = match self.destinations(cfg, next).await {
            Ok(d) => d,
            Err(f) => return (all(Outcome::from_failure(f)), Vec::new()),
        };
        let helo = cfg
            .outbound
            .helo_name
            .clone()
            .unwrap_or_else(|| cfg.server.hostname.clone());
        let mut last = String::from("no mail host could be reached");
        let mut permits = Some(permits);
        for d in &dests {
            for addr in &d.addrs {
                let opened = Conn::open_opportunistic(
                    &d.host,
                    *addr,
                    &helo,
                    cfg.outbound.connect_timeout,
                    cfg.outbound.command_timeout,
                    cfg.outbound.starttls,
                )
                .await;
                let conn = match opened {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(host = %d.host, %addr, error = %e, "outbound connection failed");
                        last = e.0;
                        continue;
                    }
                };
                let conn = match self.org_authenticate(conn, next).await {
                    Ok(c) => c,
                    Err(f) => return (all(Outcome::Deferred(f)), Vec::new()),
                };
                let Some(permits) = permits.take() else {
                    break;
                };
                return match self
                    .transaction(Held { conn, permits }, msg, text, rcpts, &leg)
                    .await
                {
                    Ok(tx) => tx,
                    // The connection broke mid-transaction: retry later rather than risk
                    // sending twice to another host.
                    Err(TxError::NotSent(e) | TxError::Unknown(e)) => {
                        (all(broke_off(&d.host, &e)), Vec::new())
                    }
                };
            }
        }
        let tried = dests
            .iter()
            .map(|d| d.host.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let what = match next {
            NextHop::Remote(domain) | NextHop::SmartHost { domain, .. } => {
                format!("no mail server for {domain} answered")
            }
            NextHop::Org { server, .. } => format!("{server} (of the organization) did not answer"),
            NextHop::Local => "no server answered".to_string(),
        };
        let f = Failure {
            status: Status::new(Class::Transient, 4, 1),
            reason: format!("{what} (tried {tried})"),
            diagnostic: Some(last),
            remote_mta: None,
        };
        (all(Outcome::Deferred(f)), Vec::new())
    }

    /// Proves membership to another server of the organization (`X-ORG-AUTH`); other hops
    /// pass as they are.
    async fn org_authenticate(&self, conn: Conn, next: &NextHop) -> Result<Conn, Failure> {
        let NextHop::Org { server, .. } = next else {
            return Ok(conn);
        };
        let Some(snap) = self.inner.org.get() else {
            return Err(Failure::new(
                Status::SYSTEM_TEMPORARY,
                "this server left the organization: it cannot hand mail to its servers",
            ));
        };
        let t = crate::org::channel::Timeouts::of(&self.inner.config.get().org);
        Channel::over(conn, server, &snap.membership, t)
            .await
            .map_err(|e| Failure {
                status: Status::new(Class::Transient, 7, 0),
                reason: format!("{server} cannot take part in the organization: {e}"),
                diagnostic: None,
                remote_mta: Some(server.clone()),
            })
    }

    /// Runs one transaction, records its start (event 1020), and keeps the connection for the
    /// next message when it is fit for one.
    async fn transaction(
        &self,
        held: Held,
        msg: &QueuedMessage,
        text: &dyn MessageText,
        rcpts: &[QueuedRecipient],
        leg: &Leg<'_>,
    ) -> Result<(Vec<(i64, Outcome)>, Vec<(QueuedRecipient, Response)>), TxError> {
        self.track_start(msg, rcpts, &held.conn, leg.hop).await;
        let Transaction {
            outcomes,
            excess,
            conn,
        } = transaction::run(held, &leg.cfg.outbound, msg, text, rcpts, leg.meta).await?;
        if let Some(held) = conn {
            if let Some(old) = leg.pool.put_idle(leg.hop, held) {
                old.conn.quit().await;
            }
        }
        Ok((outcomes, excess))
    }

    /// Records the transfer's start: event 1020 for each recipient, and the queue shows Active
    /// until the outcomes are settled.
    async fn track_start(
        &self,
        msg: &QueuedMessage,
        rcpts: &[QueuedRecipient],
        c: &Conn,
        hop: &str,
    ) {
        let base = EventBase {
            server: self.inner.config.get().server.hostname.clone(),
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
        let started = self
            .inner
            .store
            .transfer_started(msg.rowid, hop.to_string(), events);
        if let Err(e) = started.await {
            tracing::warn!(error = %e, "tracking event not written");
        }
    }
}

/// The outcome of recipients whose connection broke off during the transaction.
fn broke_off(host: &str, e: &conn::ConnError) -> Outcome {
    Outcome::Deferred(Failure {
        status: Status::new(Class::Transient, 4, 2),
        reason: format!("the connection to {host} broke off during delivery"),
        diagnostic: Some(e.0.clone()),
        remote_mta: Some(host.to_string()),
    })
}

struct SmtpDelivery {
    target: SmtpTarget,
    msg: QueuedMessage,
    hop: NextHop,
    rcpts: Vec<QueuedRecipient>,
    content: Option<StoredText>,
}

impl DeliveryTarget for SmtpTarget {
    fn start<'a>(
        &'a self,
        msg: &'a QueuedMessage,
        hop: &'a NextHop,
    ) -> DeliveryFuture<'a, Result<Box<dyn Delivery>, Failure>> {
        Box::pin(async move {
            if *hop == NextHop::Local {
                return Err(Failure::new(
                    Status::SYSTEM_TEMPORARY,
                    "a local recipient was routed to SMTP (routing error)",
                ));
            }
            Ok(Box::new(SmtpDelivery {
                target: self.clone(),
                msg: msg.clone(),
                hop: hop.clone(),
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
                .content_text(self.msg.content_id)
                .await
                .map_err(|e| {
                    Failure::new(
                        Status::SYSTEM_TEMPORARY,
                        format!("the message could not be read from the queue: {e}"),
                    )
                })?;
            self.content = Some(c);
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> DeliveryFuture<'static, Vec<(i64, Outcome)>> {
        Box::pin(async move {
            let Some(content) = self.content else {
                // (body() was not called or failed: nothing was sent.)
                let f = Failure::new(Status::SYSTEM_TEMPORARY, "the message text was not loaded");
                return self
                    .rcpts
                    .iter()
                    .map(|r| (r.id, Outcome::Deferred(f.clone())))
                    .collect();
            };
            self.target
                .deliver(&self.msg, &content, &self.hop, &self.rcpts)
                .await
        })
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests;
