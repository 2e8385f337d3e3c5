//! SMTP receive: the listener, its connection limits, and the sessions.
//!
//! - [`session`]: the state machine and command loop of one session;
//! - [`envelope`]: MAIL, RCPT and the relay policy;
//! - [`data`]: DATA and BDAT;
//! - [`extensions`]: the registry of ESMTP extensions.

mod data;
mod envelope;
pub mod extensions;
pub mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::ingest::Ingest;
use crate::store::Store;
use extensions::Registry;

/// What every session of a server shares.
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The extension registry.
    pub registry: Arc<Registry>,
    /// The ingest stage.
    pub ingest: Arc<Ingest>,
    /// The store (for the directory).
    pub store: Arc<dyn Store>,
}

/// Counts connections per client address; the guard gives its slot back when dropped.
#[derive(Default)]
pub struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A held per-address slot.
pub struct PerIpGuard {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// Takes a slot for `ip` unless `max` are in use.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PerIpGuard> {
        let mut c = self.counts.lock().ok()?;
        let n = c.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.owner.counts.lock() {
            if let Some(n) = c.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&self.ip);
                }
            }
        }
    }
}

/// Accepts SMTP connections until `shutdown` turns true, then waits for sessions to end.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let limits = Arc::new(Semaphore::new(ctx.config.smtp.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let host = ctx.config.server.hostname.clone();
        let Ok(permit) = limits.clone().try_acquire_owned() else {
            refuse(stream, &host, "Too many connections, try again later").await;
            continue;
        };
        let Some(slot) = per_ip.acquire(peer.ip(), ctx.config.smtp.max_connections_per_ip) else {
            refuse(
                stream,
                &host,
                "Too many connections from your address, try again later",
            )
            .await;
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        sessions.spawn(async move {
            session::Session::new(stream, peer, ctx, sd).run().await;
            drop((permit, slot));
        });
    }
    while sessions.join_next().await.is_some() {}
}

async fn refuse(mut stream: tokio::net::TcpStream, host: &str, why: &str) {
    let line = format!("421 4.7.0 {host} {why}\r\n");
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.write_all(line.as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// The listening address of a server, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("smtp://{addr}")
}

#[cfg(test)]
mod tests;
