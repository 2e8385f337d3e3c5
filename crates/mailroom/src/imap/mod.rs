//! IMAP access (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1): users read and organize their mail
//! in folders, on the same store that local delivery fills and POP3 reads.
//!
//! The protocol's syntax is pure code in [`mailroom_proto::imap`]; this module runs sessions:
//! [`session`] reads commands and logs in, [`folders`] answers LIST, CREATE and the other
//! commands on folders, [`view`] keeps a selected folder's messages in step with the store (and
//! so with other sessions, local delivery and POP3), [`fetch`] and [`search`] answer FETCH and
//! SEARCH, and [`mail`] the commands that change messages (STORE, COPY, MOVE, EXPUNGE,
//! APPEND).
//!
//! Changes reach every session through the store's announcements ([`crate::store::Folders::
//! mail_changes`]): a session that IDLEs is told at once (EXISTS, EXPUNGE, FETCH FLAGS), the
//! others at their next command, as RFC 9051 §7 allows.

mod fetch;
mod folders;
mod mail;
mod search;
mod session;
mod view;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::limits::{AuthGuard, AuthLimits, ConnectionLimits, Refusal};
use crate::store::Store;

pub use session::Session;

/// What IMAP sessions share.
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Failed logins by client address and by account, across sessions (and protocols).
    pub guard: AuthGuard,
    /// The certificate, if TLS is configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl Context {
    /// A context counting failed logins in `shared`'s counts (the server's other protocols),
    /// under the `[imap]` limits.
    pub fn sharing(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        tls: Option<Arc<crate::tls::Tls>>,
        shared: &AuthGuard,
    ) -> Arc<Context> {
        let guard = shared.sharing(limits(&config));
        Arc::new(Context {
            config,
            store,
            guard,
            tls,
        })
    }

    /// A context with failed logins counted apart (tests).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Arc<Context> {
        let guard = AuthGuard::new(limits(&config));
        Arc::new(Context {
            config,
            store,
            guard,
            tls,
        })
    }
}

/// The `[imap]` failed-login limits.
fn limits(config: &Config) -> AuthLimits {
    let p = &config.imap;
    AuthLimits {
        max_per_ip: p.max_auth_failures_per_ip,
        max_per_account: p.max_auth_failures_per_account,
        lockout: p.auth_lockout,
        delay: p.auth_failure_delay,
        max_delay: p.max_auth_failure_delay.max(p.auth_failure_delay),
    }
}

/// Accepts IMAP connections until the service is stopped or the server shuts down, then closes
/// the listener and waits for sessions to end.
pub async fn serve(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: Arc<Context>,
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
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Replies go out as they are written (a continuation request must not wait for
        // the next one).
        let _ = stream.set_nodelay(true);
        let admission = match limits.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                // RFC 9051 §7.1.5: BYE at once, with the reason.
                let text: &'static [u8] = match why {
                    Refusal::Total => b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
                    Refusal::PerClient => {
                        b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n"
                    }
                };
                sessions.spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        stream.write_all(text),
                    )
                    .await;
                });
                continue;
            }
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        sessions.spawn(async move {
            let stream = crate::conn::QuickAck(stream);
            let Some(stream) =
                crate::tls::accept(ctx.tls.as_deref(), stream, implicit_tls, peer).await
            else {
                return;
            };
            Session::new(stream, peer, ctx, sd).run().await;
            drop(admission);
        });
    }
    drop(listener);
    let _ = closed.send(());
    while sessions.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
