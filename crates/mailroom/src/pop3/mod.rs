//! POP3 access (RFC 1939, RFC 2449, RFC 5034): users read what was delivered to their INBOX.
//!
//! A session authenticates (USER/PASS or AUTH PLAIN), takes an exclusive lock on the maildrop
//! (RFC 1939 §8: a second session gets `-ERR [IN-USE]`), works on a snapshot of the message list,
//! and applies deletions only at QUIT (the UPDATE state); a dropped connection deletes nothing.
//! A failed login is answered after a delay, with the same words whether or not the user exists.
//!
//! STLS (RFC 2595 §4) starts TLS on the clear-text listener; `pop3.tls_listen` addresses start
//! with it (RFC 8314). A password is taken without TLS only where `pop3.plaintext_login` allows
//! (by default from loopback only, as Dovecot does).

mod session;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

use crate::config::Config;
use crate::limits::{AuthGuard, AuthLimits, ConnectionLimits};
use crate::store::Pop3Store;

pub use session::Session;

/// What POP3 sessions share.
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Pop3Store>,
    /// Users whose maildrop is locked by a session.
    pub locks: Mutex<HashSet<i64>>,
    /// Failed logins by client address and by account, across sessions.
    pub guard: AuthGuard,
    /// The certificate, if TLS is configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl Context {
    /// A context with failed logins counted apart.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Pop3Store>,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Arc<Context> {
        let guard = AuthGuard::new(limits(&config));
        Context::with_guard(config, store, tls, guard)
    }

    /// A context counting failed logins in `shared`'s counts (the server's other protocols),
    /// under the `[pop3]` limits.
    pub fn sharing(
        config: Arc<Config>,
        store: Arc<dyn Pop3Store>,
        tls: Option<Arc<crate::tls::Tls>>,
        shared: &AuthGuard,
    ) -> Arc<Context> {
        let guard = shared.sharing(limits(&config));
        Context::with_guard(config, store, tls, guard)
    }

    fn with_guard(
        config: Arc<Config>,
        store: Arc<dyn Pop3Store>,
        tls: Option<Arc<crate::tls::Tls>>,
        guard: AuthGuard,
    ) -> Arc<Context> {
        Arc::new(Context {
            config,
            store,
            locks: Mutex::new(HashSet::new()),
            guard,
            tls,
        })
    }
}

/// The `[pop3]` failed-login limits.
fn limits(config: &Config) -> AuthLimits {
    let p = &config.pop3;
    AuthLimits {
        max_per_ip: p.max_auth_failures_per_ip,
        max_per_account: p.max_auth_failures_per_account,
        lockout: p.auth_lockout,
        delay: p.auth_failure_delay,
        max_delay: p.max_auth_failure_delay.max(p.auth_failure_delay),
    }
}

/// A held maildrop lock, released on drop.
pub struct MaildropLock {
    ctx: Arc<Context>,
    user: i64,
}

impl MaildropLock {
    /// Locks `user`'s maildrop unless another session holds it.
    pub fn acquire(ctx: &Arc<Context>, user: i64) -> Option<MaildropLock> {
        let mut l = ctx.locks.lock().ok()?;
        l.insert(user).then(|| MaildropLock {
            ctx: ctx.clone(),
            user,
        })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Ok(mut l) = self.ctx.locks.lock() {
            l.remove(&self.user);
        }
    }
}

/// Accepts POP3 connections until the service is stopped or the server shuts down, then closes
/// the listener and waits for sessions to end. The limits are the
/// service's, shared with its other listeners.
pub async fn serve(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: Arc<Context>,
    limits: Arc<ConnectionLimits>,
    control: crate::conn::ListenerControl,
) {
    // RFC 3206 §4: SYS/TEMP says it is worth trying again later.
    let refusal: fn(&str) -> String = |why| format!("-ERR [SYS/TEMP] {why}\r\n");
    let tls = ctx.tls.clone();
    let session = move |stream, peer, shutdown| {
        crate::metrics::get()
            .sessions
            .with_label_values(&["pop3"])
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
