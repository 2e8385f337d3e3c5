//! The server: opens the store, records the configuration in effect, and hands the services to
//! the [`supervisor`], which starts them as defined, keeps their states, applies reloads
//! (`mailroom config reload`, SIGHUP) and stops them in order on shutdown.
//!
//! The server refuses to start only when nothing could work: the store cannot be opened,
//! another server holds the data directory. One service that cannot start (an address in
//! use, a broken definition: the seed's "could not start" symptom) is marked failed with its
//! reason and the rest run; see [`crate::services`] for the policy.

mod metrics;
mod notify;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::ingest::QueueHandle;
use crate::queue::manager::Manager;
use crate::services::Services;
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
    /// The data directory's lock file could not be used.
    #[error("the data directory cannot be locked: {reason}")]
    Lock {
        /// The cause.
        reason: String,
    },
    /// Another server runs on this data directory.
    #[error("another mailroom server is already running on {data} (see `mailroom status`)")]
    Running {
        /// The data directory.
        data: PathBuf,
    },
}

/// Opens the embedded store of a data directory as it is, without making a missing spool
/// directory (`doctor`, `repair`).
pub fn open_store_as_is(data: &Path) -> Result<Arc<SqliteStore>, ServerError> {
    let path = data.join(sqlite::FILE_NAME);
    SqliteStore::open_as_is(&path).map_err(|source| ServerError::Store { path, source })
}

/// Opens the embedded store of a data directory to read it only (`doctor`): no migration, no
/// write, nothing made.
pub fn open_store_read_only(data: &Path) -> Result<Arc<SqliteStore>, ServerError> {
    let path = data.join(sqlite::FILE_NAME);
    SqliteStore::open_read_only(&path).map_err(|source| ServerError::Store { path, source })
}

/// Opens the embedded store of a data directory.
pub fn open_store(data: &Path) -> Result<Arc<SqliteStore>, ServerError> {
    let path = data.join(sqlite::FILE_NAME);
    SqliteStore::open(&path).map_err(|source| ServerError::Store { path, source })
}

/// The lock file of a data directory.
pub const LOCK_FILE: &str = "mailroom.lock";

/// Takes the data directory's lock: `Running` when another server holds it, `Lock` when it
/// cannot be taken at all (a file system without locks, no permission): a server that cannot
/// make sure it is alone on its data must not start (two would deliver the same mail twice).
fn lock(data: &Path) -> Result<std::fs::File, ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ServerError::Lock {
            reason: format!("cannot open {}: {e}", path.display()),
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ServerError::Running {
            data: data.to_path_buf(),
        }),
        Err(e) => Err(ServerError::Lock {
            reason: format!("cannot lock {}: {e}", path.display()),
        }),
    }
}

/// Runs the server until `shutdown` turns true. `text` is the configuration file that
/// `config` was loaded from: it is recorded in the config store as the version in effect.
pub async fn run(
    data: &Path,
    config: Config,
    text: String,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    for (key, advice) in config.legacy_settings() {
        tracing::warn!(key, "legacy setting: {advice}");
    }
    // One server per data directory: an exclusive lock held while it runs (released by the
    // kernel when it exits, however it exits).
    let _lock = lock(data)?;
    // The control socket: a second server on this data directory finds the first.
    let control = match crate::control::bind(data) {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            return Err(ServerError::Running {
                data: data.to_path_buf(),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: status and reload will not reach this server");
            None
        }
    };
    crate::directory::password::set_concurrency(config.server.max_password_checks);
    crate::directory::scram::load_decoy_key(data);
    let sqlite = open_store(data)?;
    // The data directory is open to local users' `sendmail` (the maildrop), and to nothing
    // else: the store's files are the server's alone.
    for name in [
        sqlite::FILE_NAME.to_string(),
        format!("{}-wal", sqlite::FILE_NAME),
        format!("{}-shm", sqlite::FILE_NAME),
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let f = data.join(name);
        if f.exists() {
            if let Err(e) = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(file = %f.display(), "cannot make it private (0600): {e}");
            }
        }
    }
    if let Err(e) = crate::receive::maildrop::prepare(data) {
        tracing::error!(
            "no maildrop in {}: {e}; local programs' sendmail cannot leave mail (`mailroom doctor` says more)",
            data.display()
        );
    }
    sqlite.set_expunge_history(config.imap.expunge_history);
    sqlite.set_keyword_limits(crate::store::sqlite::KeywordLimits {
        per_folder: config.imap.max_keywords_per_folder,
        per_message: config.imap.max_keywords_per_message,
    });
    let store: Arc<dyn Store> = sqlite.clone();
    let store_error = |source| ServerError::Store {
        path: data.join(sqlite::FILE_NAME),
        source,
    };
    // Texts of messages that were never acknowledged (a crash before their commit).
    match sqlite.sweep_spool().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed spool files of unacknowledged messages"),
        Err(e) => tracing::warn!(error = %e, "spool sweep failed"),
    }
    // No delivery is in progress when the server starts, whatever a crash left recorded.
    store.clear_active().await.map_err(store_error)?;
    let first = store
        .config_versions()
        .await
        .map_err(store_error)?
        .is_empty();
    let origin = if first { "init" } else { "file (at start)" };
    let (version, recorded) = store
        .config_record(text.clone(), origin.into(), config.config.history)
        .await
        .map_err(store_error)?;
    if recorded && !first {
        tracing::warn!(
            version = version.version,
            "the configuration file was changed outside mailroom while the server was stopped; \
             recorded as a new version (see `mailroom config history`)"
        );
    }
    let org = crate::org::view::OrgView::new(
        store
            .org()
            .await
            .map_err(store_error)?
            .map(|(membership, state)| crate::org::view::Snapshot { membership, state }),
    );
    let resolver = crate::route::dns::HickoryResolver::new(&config.dns.nameservers)
        .map_err(|reason| ServerError::Dns { reason })?;
    let config_arc = Arc::new(config.clone());
    let services = Arc::new(Services::new(&config));
    let (handle, rx) = QueueHandle::channel();
    let (live, live_rx) = watch::channel(config_arc.clone());
    let manager = Manager::new(
        store.clone(),
        crate::model::LiveConfig::new(live_rx),
        handle.clone(),
        Arc::new(crate::queue::clock::SystemClock),
        Arc::new(resolver),
        org.clone(),
        services.clone(),
    );
    let tls = crate::tls::Tls::new(data, &config.tls);
    if let Err(e) = tls.acceptor() {
        tracing::error!(
            "TLS unavailable: {e}; STARTTLS is not offered and the implicit-TLS listeners refuse \
             connections (`mailroom doctor` says more)"
        );
    }
    let m = &config.submission;
    let smtp_auth = Arc::new(crate::limits::AuthGuard::new(crate::limits::AuthLimits {
        max_per_ip: m.max_auth_failures_per_ip,
        max_per_account: m.max_auth_failures_per_account,
        lockout: m.auth_lockout,
        delay: m.auth_failure_delay,
        max_delay: m.max_auth_failure_delay,
    }));
    let parts = supervisor::Parts {
        data: data.to_path_buf(),
        store: store.clone(),
        org,
        handle,
        manager,
        queue_rx: rx,
        pop3: crate::pop3::Context::sharing(
            config_arc.clone(),
            store.clone(),
            Some(tls.clone()),
            &smtp_auth,
        ),
        imap: crate::imap::Context::sharing(
            config_arc.clone(),
            store.clone(),
            Some(tls.clone()),
            &smtp_auth,
        ),
        tls: Some(tls),
        smtp_auth,
        rates: Default::default(),
        services,
        live,
        shutdown: shutdown.clone(),
    };
    let metrics_sources = Arc::new(metrics::Sources {
        store: store.clone(),
        services: parts.services.clone(),
        org: parts.org.clone(),
        certificate: data.join(&config.tls.certificate),
        token: config.metrics.token.clone(),
    });
    let metrics_listen = config.metrics.listen.clone();
    let acme_config = Arc::new(config.clone());
    let mut sup = supervisor::Supervisor::new(parts, config, text, version.version);
    sup.reconcile().await;
    if acme_config.tls.acme.is_some() {
        tokio::spawn(crate::tls::acme::run(
            acme_config.clone(),
            data.to_path_buf(),
            shutdown.clone(),
        ));
    }
    for addr in metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "metrics listening (/metrics)");
                tokio::spawn(metrics::serve(l, metrics_sources.clone(), shutdown.clone()));
            }
            Err(e) => tracing::error!(%addr, "metrics: cannot listen: {e}"),
        }
    }
    let (calls_tx, mut calls) = mpsc::channel::<crate::control::Call>(16);
    let control_task = control.map(|l| tokio::spawn(crate::control::serve(l, calls_tx)));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tracing::info!(
        hostname = %sup.config.server.hostname,
        domains = ?sup.config.server.domains,
        config_version = version.version,
        "mailroom ready"
    );
    let systemd = notify::Notifier::from_env();
    systemd.send("READY=1\nSTATUS=mailroom ready");
    // (Said from this loop: a supervisor that hangs stops saying it, and systemd restarts it.)
    let mut watchdog = systemd.watchdog_every().map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });

    let mut sd = shutdown.clone();
    // Failed services are tried again on a steady beat, however many requests come meanwhile.
    let mut every = sup.config.supervisor.restart_interval;
    let mut retry = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*sd.borrow() {
        if sup.config.supervisor.restart_interval != every {
            every = sup.config.supervisor.restart_interval;
            retry = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        tokio::select! {
            r = sd.changed() => if r.is_err() { break },
            Some((req, reply)) = calls.recv() => {
                let answer = match req {
                    crate::control::Request::Status => crate::control::Reply::Status(Box::new(sup.status())),
                    crate::control::Request::Reload { origin } => {
                        crate::control::Reply::Reloaded(sup.reload(&origin).await)
                    }
                };
                let _ = reply.send(answer);
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                systemd.reloading();
                let r = sup.reload("SIGHUP").await;
                systemd.send(&match &r.error {
                    None => "READY=1\nSTATUS=mailroom ready".to_string(),
                    Some(e) => format!("READY=1\nSTATUS=reload refused: {}", e.replace('\n', " ")),
                });
            }
            _ = async { match watchdog.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                systemd.send("WATCHDOG=1");
            }
            _ = retry.tick() => sup.reconcile().await,
        }
    }
    systemd.send("STOPPING=1\nSTATUS=stopping");
    tracing::info!("shutting down: no new connections; waiting for sessions to finish");
    if let Some(t) = control_task {
        t.abort();
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, sup.stop_all())
        .await
        .is_err()
    {
        tracing::warn!(
            "sessions still open after {:?}; closing them",
            SHUTDOWN_GRACE
        );
    }
    sqlite.close();
    tracing::info!("stopped");
    Ok(())
}
