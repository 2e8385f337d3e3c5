//! SMTP receive: the listener, its connection limits, and the sessions.
//!
//! - [`session`]: the state machine and command loop of one session;
//! - [`auth`]: STARTTLS, AUTH and the submission rules;
//! - [`envelope`]: MAIL, RCPT and the relay policy;
//! - [`data`]: DATA and BDAT;
//! - [`extensions`]: the registry of ESMTP extensions;
//! - [`org`]: the organization's verbs.

mod auth;
mod data;
mod envelope;
pub mod extensions;
pub mod org;
pub mod session;

use std::sync::Arc;

use mailroom_proto::smtp::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::ingest::Ingest;
use crate::limits::{ConnectionLimits, Refusal};
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
    /// The organization, if this server is in one.
    pub org: Arc<crate::org::view::OrgView>,
    /// The certificate, if TLS is configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Failed AUTH attempts, across the submission service's sessions.
    pub auth: Arc<crate::limits::AuthGuard>,
    /// SPF, DKIM and DMARC checks of mail from outside, when enabled.
    pub verifier: Option<Arc<crate::sender_auth::Verifier>>,
    /// The data directory (spool files, DKIM keys).
    pub data: std::path::PathBuf,
    /// Connections and messages per outside client and minute (kept across reloads).
    pub rates: Arc<Rates>,
}

/// The rate limits of outside clients (`smtp.max_connection_rate`, `smtp.max_message_rate`).
#[derive(Debug, Default)]
pub struct Rates {
    /// New connections.
    pub connections: crate::limits::RateLimiter,
    /// MAIL commands.
    pub messages: crate::limits::RateLimiter,
}

/// What one listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// MX or submission.
    pub mode: session::Mode,
    /// Sessions start with TLS (RFC 8314 implicit TLS).
    pub implicit_tls: bool,
}

/// Accepts SMTP connections until the service is stopped (`listener.stop`) or the server
/// shuts down, then closes the listener and waits for its sessions to end. Each session takes
/// the context current when it connects, so a reload reaches new sessions without dropping
/// any. The limits are the service's, shared with its other listeners.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    ctx: watch::Receiver<Arc<Context>>,
    limits: Arc<ConnectionLimits>,
    control: crate::conn::ListenerControl,
) {
    let crate::conn::ListenerControl {
        mut stop,
        shutdown,
        closed,
    } = control;
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let ctx = ctx.borrow().clone();
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
        let cfg = &ctx.config;
        if !cfg.is_inside(peer.ip())
            && !ctx
                .rates
                .connections
                .allow(peer.ip(), cfg.smtp.max_connection_rate)
        {
            tracing::info!(%peer, "connection refused: over smtp.max_connection_rate");
            let host = cfg.server.hostname.clone();
            sessions.spawn(refuse(
                stream,
                host,
                "Too many connections from your address in the last minute, try again later",
            ));
            continue;
        }
        let admission = match limits.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                let text = match why {
                    Refusal::Total => "Too many connections, try again later",
                    Refusal::PerClient => "Too many connections from your address, try again later",
                };
                let host = ctx.config.server.hostname.clone();
                sessions.spawn(refuse(stream, host, text));
                continue;
            }
        };
        let sd = shutdown.clone();
        sessions.spawn(async move {
            let Some(stream) =
                crate::tls::accept(ctx.tls.as_deref(), stream, kind.implicit_tls, peer).await
            else {
                return;
            };
            session::Session::new(stream, peer, ctx, sd, kind.mode)
                .run()
                .await;
            drop(admission);
        });
    }
    drop(listener);
    let _ = closed.send(());
    while sessions.join_next().await.is_some() {}
}

/// Refuses a connection at once with `421` (RFC 5321 §3.1), through the same reply code as
/// every session's replies, without waiting long for a client that does not read.
async fn refuse(mut stream: tokio::net::TcpStream, host: String, why: &'static str) {
    let mut line = Vec::new();
    Reply::code(421, "4.7.0", format!("{host} {why}")).write_with(&mut line, true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(&line)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests;
