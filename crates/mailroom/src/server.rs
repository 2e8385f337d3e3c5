//! The server: opens the store, starts the queue manager and the SMTP and POP3 services, and stops
//! them in order on shutdown.
//!
//! Start-up fails with a specific error naming the service and the cause (an address in use, an
//! unreadable store), never half-started: this is the "service could not start" symptom of the
//! seed made explicit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::ingest::{Ingest, QueueHandle};
use crate::limits::ConnectionLimits;
use crate::queue::manager::Manager;
use crate::receive::extensions::Registry;
use crate::store::sqlite::{self, SqliteStore};
use crate::store::{Store, StoreError};

/// How long sessions get to finish after a shutdown signal before the server exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: StoreError,
    },
    /// The DNS resolver could not be set up.
    #[error("the DNS resolver cannot start: {reason}")]
    Dns {
        /// The cause.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("the {service} service cannot listen on {addr}: {source}")]
    Bind {
        /// "smtp" or "pop3".
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Opens the embedded store of a data directory.
pub fn open_store(data: &Path) -> Result<Arc<SqliteStore>, ServerError> {
    let path = data.join(sqlite::FILE_NAME);
    SqliteStore::open(&path).map_err(|source| ServerError::Store { path, source })
}

async fn bind(
    service: &'static str,
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, ServerError> {
    let mut out = Vec::new();
    for &addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                service,
                addr,
                source,
            })?;
        out.push(l);
    }
    Ok(out)
}

/// Runs the server until `shutdown` turns true.
pub async fn run(
    data: &Path,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    for (key, advice) in config.legacy_settings() {
        tracing::warn!(key, "legacy setting: {advice}");
    }
    crate::directory::password::set_concurrency(config.server.max_password_checks);
    let config = Arc::new(config);
    let sqlite = open_store(data)?;
    let store: Arc<dyn Store> = sqlite.clone();
    // Texts of messages that were never acknowledged (a crash before their commit).
    match sqlite.sweep_spool().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed spool files of unacknowledged messages"),
        Err(e) => tracing::warn!(error = %e, "spool sweep failed"),
    }
    // No delivery is in progress when the server starts, whatever a crash left recorded.
    store
        .clear_active()
        .await
        .map_err(|source| ServerError::Store {
            path: data.join(sqlite::FILE_NAME),
            source,
        })?;
    let org = crate::org::view::OrgView::new(
        store
            .org()
            .await
            .map_err(|source| ServerError::Store {
                path: data.join(sqlite::FILE_NAME),
                source,
            })?
            .map(|(membership, state)| crate::org::view::Snapshot { membership, state }),
    );
    let smtp = bind("smtp", &config.smtp.listen).await?;
    let pop3 = bind("pop3", &config.pop3.listen).await?;

    let resolver = crate::route::dns::HickoryResolver::new(&config.dns.nameservers)
        .map_err(|reason| ServerError::Dns { reason })?;
    let (handle, rx) = QueueHandle::channel();
    let manager = Manager::new(
        store.clone(),
        config.clone(),
        handle.clone(),
        Arc::new(crate::queue::clock::SystemClock),
        Arc::new(resolver),
        org.clone(),
    );
    let ingest = Arc::new(Ingest::new(store.clone(), config.clone(), handle).with_org(org.clone()));
    let smtp_ctx = Arc::new(crate::receive::Context {
        config: config.clone(),
        registry: Arc::new(Registry::configured(&config)),
        ingest,
        store: store.clone(),
        org: org.clone(),
    });
    let pop3_ctx = crate::pop3::Context::new(config.clone(), store.clone());

    // Each service's limits are shared by all of its listeners.
    let smtp_limits = ConnectionLimits::new(
        config.smtp.max_connections,
        config.smtp.max_connections_per_ip,
    );
    let pop3_limits = ConnectionLimits::new(
        config.pop3.max_connections,
        config.pop3.max_connections_per_ip,
    );
    let mut services = JoinSet::new();
    for l in smtp {
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "smtp listening");
        services.spawn(crate::receive::serve(
            l,
            smtp_ctx.clone(),
            smtp_limits.clone(),
            shutdown.clone(),
        ));
    }
    for l in pop3 {
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "pop3 listening");
        services.spawn(crate::pop3::serve(
            l,
            pop3_ctx.clone(),
            pop3_limits.clone(),
            shutdown.clone(),
        ));
    }
    let queue = tokio::spawn(manager.run(rx, shutdown.clone()));
    let org_service =
        crate::org_service::OrgService::new(store.clone(), config.clone(), org.clone());
    let org_task = tokio::spawn(org_service.run(shutdown.clone()));
    tracing::info!(
        hostname = %config.server.hostname,
        domains = ?config.server.domains,
        "mailroom ready"
    );

    let mut sd = shutdown.clone();
    while !*sd.borrow() {
        if sd.changed().await.is_err() {
            break;
        }
    }
    tracing::info!("shutting down: no new connections; waiting for sessions to finish");
    let drain = async {
        while services.join_next().await.is_some() {}
        let _ = queue.await;
        let _ = org_task.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            "sessions still open after {:?}; closing them",
            SHUTDOWN_GRACE
        );
    }
    sqlite.close();
    tracing::info!("stopped");
    Ok(())
}
