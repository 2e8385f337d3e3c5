//! POP3 access (RFC 1939, RFC 2449, RFC 5034): users read what was delivered to their INBOX.
//!
//! A session authenticates (USER/PASS or AUTH PLAIN), takes an exclusive lock on the maildrop
//! (RFC 1939 §8: a second session gets `-ERR [IN-USE]`), works on a snapshot of the message list,
//! and applies deletions only at QUIT (the UPDATE state); a dropped connection deletes nothing.
//! A failed login is answered after a delay, with the same words whether or not the user exists.

mod session;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::store::Store;

pub use session::Session;

/// What POP3 sessions share.
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Users whose maildrop is locked by a session.
    pub locks: Mutex<HashSet<i64>>,
}

impl Context {
    /// A context.
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Arc<Context> {
        Arc::new(Context {
            config,
            store,
            locks: Mutex::new(HashSet::new()),
        })
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

/// Accepts POP3 connections until shutdown, then waits for sessions to end.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let limits = Arc::new(Semaphore::new(ctx.config.pop3.max_connections));
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        while sessions.try_join_next().is_some() {}
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limits.clone().try_acquire_owned() else {
            let _ = stream
                .write_all(b"-ERR [SYS/TEMP] Too many connections, try again later\r\n")
                .await;
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        sessions.spawn(async move {
            Session::new(stream, peer, ctx, sd).run().await;
            drop(permit);
        });
    }
    while sessions.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
