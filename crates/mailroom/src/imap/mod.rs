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
mod prefetch;
mod search;
mod session;
mod sort;
mod vanished;
mod view;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::limits::{AuthGuard, AuthLimits, ConnectionLimits};
use crate::store::ImapStore;

pub use session::Session;

/// What IMAP sessions share.
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn ImapStore>,
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
        store: Arc<dyn ImapStore>,
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
        store: Arc<dyn ImapStore>,
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
    // RFC 9051 §7.1.5: BYE at once, with the reason.
    let refusal: fn(&str) -> String = |why| format!("* BYE [UNAVAILABLE] {why}\r\n");
    let tls = ctx.tls.clone();
    let session = move |stream, peer, shutdown| {
        crate::metrics::get()
            .sessions
            .with_label_values(&["imap"])
            .inc();
        Session::new(stream, peer, ctx.clone(), shutdown).run()
    };
    crate::conn::serve_sessions(
        listener,
        implicit_tls,
        tls,
        limits,
        control,
        refusal,
        session,
    )
    .await;
}

#[cfg(test)]
mod tests;
