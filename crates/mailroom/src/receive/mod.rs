//! SMTP receive: the listener, its connection limits, and the sessions.
//!
//! - [`session`]: the state machine and command loop of one session;
//! - [`auth`]: STARTTLS, AUTH and the submission rules;
//! - [`envelope`]: MAIL, RCPT and the relay policy;
//! - [`data`]: DATA and BDAT;
//! - [`extensions`]: the registry of ESMTP extensions;
//! - [`org`]: the organization's verbs;
//! - [`maildrop`] and [`pickup`]: what local programs send with `sendmail`.

mod auth;
mod data;
mod envelope;
pub mod extensions;
pub mod maildrop;
pub mod org;
pub mod pickup;
pub mod session;

use std::sync::Arc;

use mailroom_proto::smtp::Reply;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::ingest::Ingest;
use crate::limits::ConnectionLimits;
use crate::store::ReceiveStore;
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
    pub store: Arc<dyn ReceiveStore>,
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
    let admit = |peer: std::net::SocketAddr| {
        let ctx = ctx.borrow().clone();
        let cfg = &ctx.config;
        let refuse = |why: &str| {
            // RFC 5321 §3.1: 421 at once, through the same reply code as every session's.
            let mut line = Vec::new();
            let text = format!("{} {why}", cfg.server.hostname);
            Reply::code(421, "4.7.0", text).write_with(&mut line, true);
            line
        };
        if !cfg.is_inside(peer.ip())
            && !ctx
                .rates
                .connections
                .allow(peer.ip(), cfg.smtp.max_connection_rate)
        {
            tracing::info!(%peer, "connection refused: over smtp.max_connection_rate");
            return Err(refuse(
                "Too many connections from your address in the last minute, try again later",
            ));
        }
        match limits.admit(peer.ip()) {
            Ok(admission) => Ok((ctx.clone(), admission)),
            Err(why) => Err(refuse(why.reason())),
        }
    };
    let session = |stream, peer, (ctx, admission): (Arc<Context>, _), shutdown| async move {
        let Some(stream) =
            crate::tls::accept(ctx.tls.as_deref(), stream, kind.implicit_tls, peer).await
        else {
            return;
        };
        crate::metrics::get()
            .sessions
            .with_label_values(&["smtp"])
            .inc();
        session::Session::new(stream, peer, ctx, shutdown, kind.mode)
            .run()
            .await;
        drop(admission);
    };
    control.accept(listener, admit, session).await;
}

#[cfg(test)]
mod tests;
