//! The listener services (`smtp-receive`, `submission`, `pop3`, `imap`). Each address of a
//! service is bound and supervised on its own: one that cannot be bound (its port taken) leaves
//! the others serving, the service is `degraded` and its reason names the address that failed,
//! and the supervisor tries that address again every `supervisor.restart_interval` (issue 21:
//! the POP3S port taken used to take POP3 down with it).

use std::net::SocketAddr;

use tokio::sync::{oneshot, watch};

use super::Supervisor;
use crate::conn::ListenerControl;
use crate::limits::{Capacity, ConnectionLimits};
use crate::services::{port_owner, State};

/// An address of a listener service, and whether its sessions start with TLS.
type Addr = (SocketAddr, bool);

/// A listener service while some of its addresses are bound.
pub(super) struct Listeners {
    /// Every address it should listen on.
    addrs: Vec<Addr>,
    limits: Capacity,
    /// The connection limits its listeners share.
    lim: std::sync::Arc<ConnectionLimits>,
    stop: watch::Sender<bool>,
    closed: Vec<oneshot::Receiver<()>>,
    /// The addresses that could not be bound yet, with why.
    failed: Vec<(Addr, String)>,
}

impl Listeners {
    /// Stops accepting and waits (briefly) until every socket is closed.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        for c in self.closed {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
        }
    }
}

/// Binds one listening address; the reason, naming the holder of a taken port, when it fails.
async fn bind_one(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let held = if e.kind() == std::io::ErrorKind::AddrInUse {
            port_owner::owner(addr.port())
                .map(|o| format!(" (held by {o})"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        format!("cannot listen on {addr}: {e}{held}")
    })
}

fn shown(addrs: impl Iterator<Item = Addr>) -> Vec<String> {
    addrs
        .map(|(a, tls)| {
            if tls {
                format!("{a} (tls)")
            } else {
                a.to_string()
            }
        })
        .collect()
}

impl Supervisor {
    /// A listener service's addresses and limits.
    fn listen_spec(&self, name: &str) -> (Vec<Addr>, Capacity) {
        let both = |plain: &[SocketAddr], tls: &[SocketAddr]| -> Vec<Addr> {
            let plain = plain.iter().map(|a| (*a, false));
            plain.chain(tls.iter().map(|a| (*a, true))).collect()
        };
        match name {
            "smtp-receive" => {
                let s = &self.config.smtp;
                (
                    both(&s.listen, &[]),
                    Capacity {
                        total: s.max_connections,
                        per_client: s.max_connections_per_ip,
                        per_network: s.max_connections_per_network,
                    },
                )
            }
            "submission" => {
                let m = &self.config.submission;
                (
                    both(&m.listen, &m.tls_listen),
                    Capacity {
                        total: m.max_connections,
                        per_client: m.max_connections_per_ip,
                        per_network: m.max_connections_per_network,
                    },
                )
            }
            "imap" => {
                let p = &self.boot.imap;
                let c = &self.config.imap;
                (
                    both(&c.listen, &c.tls_listen),
                    Capacity {
                        total: p.max_connections,
                        per_client: p.max_connections_per_ip,
                        per_network: p.max_connections_per_network,
                    },
                )
            }
            _ => {
                let p = &self.boot.pop3;
                let c = &self.config.pop3;
                (
                    both(&c.listen, &c.tls_listen),
                    Capacity {
                        total: p.max_connections,
                        per_client: p.max_connections_per_ip,
                        per_network: p.max_connections_per_network,
                    },
                )
            }
        }
    }

    pub(super) fn slot(&mut self, name: &str) -> &mut Option<Listeners> {
        match name {
            "smtp-receive" => &mut self.smtp,
            "submission" => &mut self.submission,
            "imap" => &mut self.imap,
            _ => &mut self.pop3,
        }
    }

    /// Brings a listener service to what its definition says: its addresses bound (those that
    /// can be), or stopped.
    pub(super) async fn listener(&mut self, name: &'static str, run: bool) {
        let (addrs, limits) = self.listen_spec(name);
        let mut bound: Vec<(SocketAddr, tokio::net::TcpListener)> = Vec::new();
        if let Some(l) = self.slot(name).take() {
            if run && l.addrs == addrs && l.limits == limits {
                return self.bind_failed(name, l).await;
            }
            if run {
                // The new addresses first, while the old listener still runs: a move to an
                // address that is taken leaves the service where it was, saying why.
                for &(addr, _) in addrs.iter().filter(|a| !l.addrs.iter().any(|o| o.0 == a.0)) {
                    match bind_one(addr).await {
                        Ok(x) => bound.push((addr, x)),
                        Err(why) => {
                            let old = shown(l.addrs.iter().copied()).join(" ");
                            let why = format!("{why}; still listening on {old}");
                            tracing::error!(service = name, "{why}");
                            *self.slot(name) = Some(l);
                            self.p.services.set(name, State::Failed, Some(why));
                            return;
                        }
                    }
                }
            }
            tracing::info!(service = name, "stopping the listener");
            l.stop().await;
        }
        if !run {
            return;
        }
        self.p.services.set(name, State::Starting, None);
        let mut failed = Vec::new();
        for &(addr, tls) in &addrs {
            if bound.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            match bind_one(addr).await {
                Ok(x) => bound.push((addr, x)),
                Err(why) => failed.push(((addr, tls), why)),
            }
        }
        if bound.is_empty() {
            let why = failed
                .iter()
                .map(|(_, w)| w.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if self.p.services.get(name).and_then(|s| s.reason) != Some(why.clone()) {
                tracing::error!(
                    service = name,
                    "{why}; trying again every {:?}",
                    self.config.supervisor.restart_interval
                );
            }
            self.p.services.set(name, State::Failed, Some(why));
            return;
        }
        let (stop, _) = watch::channel(false);
        let mut l = Listeners {
            lim: ConnectionLimits::new(limits),
            addrs,
            limits,
            stop,
            closed: Vec::new(),
            failed: Vec::new(),
        };
        for (addr, socket) in bound {
            let tls = l.addrs.iter().any(|&(a, t)| a == addr && t);
            let closed = self.spawn_listener(name, socket, tls, &l);
            l.closed.push(closed);
        }
        self.settle(name, l, failed);
    }

    /// Tries again the addresses of a running service that could not be bound.
    async fn bind_failed(&mut self, name: &'static str, mut l: Listeners) {
        let mut failed = Vec::new();
        for (addr, why) in std::mem::take(&mut l.failed) {
            match bind_one(addr.0).await {
                Ok(socket) => {
                    let closed = self.spawn_listener(name, socket, addr.1, &l);
                    l.closed.push(closed);
                }
                Err(now) => failed.push((addr, if now == why { why } else { now })),
            }
        }
        self.settle(name, l, failed);
    }

    /// Records a listener service's state (running, or degraded naming what failed) and keeps it.
    fn settle(&mut self, name: &'static str, mut l: Listeners, failed: Vec<(Addr, String)>) {
        let up = l
            .addrs
            .iter()
            .copied()
            .filter(|a| !failed.iter().any(|(f, _)| f == a));
        let listening = shown(up);
        self.p.services.set_listen(name, listening.clone());
        if failed.is_empty() {
            self.p.services.set(name, State::Running, None);
        } else {
            let whys: Vec<&str> = failed.iter().map(|(_, w)| w.as_str()).collect();
            let why = format!("{}; listening on {}", whys.join("; "), listening.join(" "));
            if self.p.services.get(name).and_then(|s| s.reason) != Some(why.clone()) {
                tracing::error!(
                    service = name,
                    "{why}; trying again every {:?}",
                    self.config.supervisor.restart_interval
                );
            }
            self.p.services.set(name, State::Degraded, Some(why));
        }
        l.failed = failed;
        *self.slot(name) = Some(l);
    }

    /// Starts serving one bound address of a listener service; the receiver says when its
    /// socket is closed.
    fn spawn_listener(
        &mut self,
        name: &'static str,
        socket: tokio::net::TcpListener,
        implicit_tls: bool,
        l: &Listeners,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let control = ListenerControl {
            stop: l.stop.subscribe(),
            shutdown: self.p.shutdown.clone(),
            closed: tx,
        };
        let at = socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(addr = %at, "{name} listening");
        let lim = l.lim.clone();
        match name {
            "imap" => {
                self.tasks.spawn(crate::imap::serve(
                    socket,
                    implicit_tls,
                    self.p.imap.clone(),
                    lim,
                    control,
                ));
            }
            "pop3" => {
                self.tasks.spawn(crate::pop3::serve(
                    socket,
                    implicit_tls,
                    self.p.pop3.clone(),
                    lim,
                    control,
                ));
            }
            _ => {
                let mode = if name == "submission" {
                    crate::receive::session::Mode::Submission
                } else {
                    crate::receive::session::Mode::Mx
                };
                let kind = crate::receive::Listener { mode, implicit_tls };
                self.tasks.spawn(crate::receive::serve(
                    socket,
                    kind,
                    self.smtp_ctx.subscribe(),
                    lim,
                    control,
                ));
            }
        }
        rx
    }
}
