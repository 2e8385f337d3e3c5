//! The supervisor: starts, stops and restarts the services as their definitions say, records
//! each one's state ([`crate::services`]), and applies reloads of the configuration.
//!
//! It is one task that owns every running part, so a reload, a status request and a retry of a
//! failed service never race: each is handled whole, in turn.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::history::{self, Change};
use crate::config::{self, Config};
use crate::control::{Reloaded, Status};
use crate::ingest::{Ingest, QueueHandle};
use crate::org::view::OrgView;
use crate::queue::manager::Manager;
use crate::receive::extensions::Registry;
use crate::services::{check_definition, Services, State};
use crate::store::Store;

mod listeners;
use listeners::Listeners;

/// A task-backed service while it runs.
struct Task<T> {
    stop: watch::Sender<bool>,
    handle: JoinHandle<T>,
}

/// Everything the services are made of.
pub(super) struct Parts {
    pub data: PathBuf,
    pub store: Arc<dyn Store>,
    pub org: Arc<OrgView>,
    pub handle: QueueHandle,
    pub manager: Arc<Manager>,
    pub queue_rx: mpsc::UnboundedReceiver<i64>,
    pub pop3: Arc<crate::pop3::Context>,
    pub imap: Arc<crate::imap::Context>,
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Failed AUTH attempts on the submission service (kept across reloads).
    pub smtp_auth: Arc<crate::limits::AuthGuard>,
    /// Rates of outside clients (kept across reloads).
    pub rates: Arc<crate::receive::Rates>,
    pub services: Arc<Services>,
    /// Tells the queue manager and outbound delivery the configuration in effect.
    pub live: watch::Sender<Arc<Config>>,
    pub shutdown: watch::Receiver<bool>,
}

/// The supervisor's state.
pub(super) struct Supervisor {
    p: Parts,
    /// The configuration the long-running parts started with.
    boot: Arc<Config>,
    /// The configuration in effect: `boot` with the live sections of the last reload.
    pub config: Arc<Config>,
    /// The file text of the version in effect.
    text: String,
    /// The boot text (what the restart-needing keys are compared with).
    boot_text: String,
    /// The config store version in effect.
    version: i64,
    started: chrono::DateTime<chrono::Utc>,
    smtp_ctx: watch::Sender<Arc<crate::receive::Context>>,
    smtp: Option<Listeners>,
    submission: Option<Listeners>,
    pop3: Option<Listeners>,
    imap: Option<Listeners>,
    queue_rx: Option<mpsc::UnboundedReceiver<i64>>,
    queue: Option<Task<mpsc::UnboundedReceiver<i64>>>,
    /// The maildrop's pickup, which runs with the queue manager and stops with it.
    pickup: Option<JoinHandle<()>>,
    /// Why the queue manager cannot run again (it panicked and took its receiver).
    queue_broken: Option<String>,
    link: Option<Task<()>>,
    /// The accept loops (each waits for its sessions when stopped).
    tasks: JoinSet<()>,
}

/// The SMTP sessions' context for a configuration.
fn smtp_context(p: &Parts, config: &Arc<Config>) -> Arc<crate::receive::Context> {
    let ingest = Ingest::new(p.store.clone(), config.clone(), p.handle.clone())
        .with_org(p.org.clone())
        .with_services(p.services.clone());
    Arc::new(crate::receive::Context {
        config: config.clone(),
        registry: Arc::new(Registry::configured(config)),
        ingest: Arc::new(ingest),
        store: p.store.clone(),
        org: p.org.clone(),
        tls: p.tls.clone(),
        auth: p.smtp_auth.clone(),
        verifier: config
            .sender_auth
            .verify
            .then(|| match crate::sender_auth::Verifier::new(config) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::error!("{e}; mail from outside is not checked");
                    None
                }
            })
            .flatten(),
        data: p.data.clone(),
        rates: p.rates.clone(),
    })
}

/// `boot` with the sections a running server applies at a reload taken from `new` (see
/// [`history::needs_restart`]).
fn live(boot: &Config, new: &Config) -> Config {
    let mut c = boot.clone();
    c.smtp = new.smtp.clone();
    c.pop3.listen = new.pop3.listen.clone();
    c.pop3.tls_listen = new.pop3.tls_listen.clone();
    c.imap.listen = new.imap.listen.clone();
    c.imap.tls_listen = new.imap.tls_listen.clone();
    let (m, n) = (&mut c.submission, &new.submission);
    m.listen = n.listen.clone();
    m.tls_listen = n.tls_listen.clone();
    m.max_connections = n.max_connections;
    m.max_connections_per_ip = n.max_connections_per_ip;
    m.max_connections_per_network = n.max_connections_per_network;
    m.check_sender = n.check_sender;
    c.sender_auth = new.sender_auth.clone();
    c.dkim = new.dkim.clone();
    c.outbound = new.outbound.clone();
    c.services = new.services.clone();
    c.supervisor = new.supervisor.clone();
    c.config = new.config.clone();
    c
}

impl Supervisor {
    pub(super) fn new(mut p: Parts, boot: Config, text: String, version: i64) -> Supervisor {
        let boot = Arc::new(boot);
        let (smtp_ctx, _) = watch::channel(smtp_context(&p, &boot));
        let queue_rx = Some(std::mem::replace(
            &mut p.queue_rx,
            mpsc::unbounded_channel().1,
        ));
        Supervisor {
            p,
            config: boot.clone(),
            boot,
            boot_text: text.clone(),
            text,
            version,
            started: chrono::Utc::now(),
            smtp_ctx,
            smtp: None,
            submission: None,
            pop3: None,
            imap: None,
            queue_rx,
            queue: None,
            pickup: None,
            queue_broken: None,
            link: None,
            tasks: JoinSet::new(),
        }
    }

    /// Brings every service to what its definition says: starts what should run and does not
    /// (a failed one is tried again), stops what should not run.
    pub(super) async fn reconcile(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        let defs = self.config.service_defs();
        for &name in config::SERVICES {
            let def = defs.get(name);
            self.p.services.define(name, def);
            let want = check_definition(name, def);
            let run = matches!(want, Ok(true));
            let broken = match name {
                "smtp-receive" | "submission" | "pop3" | "imap" => {
                    self.listener(name, run).await;
                    None
                }
                "queue-manager" => self.queue_manager(run).await,
                "link-state" => self.link_state(run).await,
                _ => None,
            };
            match want {
                // A listener's state is its binding's, set above.
                Ok(true) if matches!(name, "smtp-receive" | "submission" | "pop3" | "imap") => {}
                Ok(true) => match broken {
                    None => self.p.services.set(name, State::Running, None),
                    Some(why) => self.p.services.set(name, State::Failed, Some(why)),
                },
                Ok(false) => self.p.services.set(
                    name,
                    State::Stopped,
                    Some(format!(
                        "disabled in the config store (services.{name}.enabled = false)"
                    )),
                ),
                Err(why) => {
                    if self.p.services.get(name).and_then(|s| s.reason) != Some(why.clone()) {
                        tracing::error!(service = name, "cannot start: {why}");
                    }
                    self.p.services.set(name, State::Failed, Some(why));
                }
            }
        }
    }

    /// Starts or stops the queue manager; the reason when it cannot run.
    async fn queue_manager(&mut self, run: bool) -> Option<String> {
        // A task that ended by itself: it hands its receiver back and starts again, unless it
        // panicked, which loses the receiver (the server must restart).
        if self.queue.as_ref().is_some_and(|t| t.handle.is_finished()) {
            if let Some(t) = self.queue.take() {
                match t.handle.await {
                    Ok(rx) => self.queue_rx = Some(rx),
                    Err(e) => {
                        let why = format!("it stopped by a panic ({e}); restart the server");
                        tracing::error!(service = "queue-manager", "{why}");
                        self.queue_broken = Some(why);
                    }
                }
            }
        }
        if let Some(why) = &self.queue_broken {
            return Some(why.clone());
        }
        match (run, self.queue.is_some()) {
            (true, false) => {
                // (No receiver: nothing to start, and nothing broken either.)
                let rx = self.queue_rx.take()?;
                let (stop, stop_rx) = watch::channel(false);
                self.pickup = Some(tokio::spawn(crate::receive::pickup::run(
                    self.smtp_ctx.subscribe(),
                    self.p.data.clone(),
                    stop_rx.clone(),
                )));
                let handle = tokio::spawn(self.p.manager.clone().run(rx, stop_rx));
                self.queue = Some(Task { stop, handle });
            }
            (false, true) => {
                if let Some(t) = self.queue.take() {
                    let _ = t.stop.send(true);
                    if let Some(p) = self.pickup.take() {
                        let _ = p.await;
                    }
                    if let Ok(rx) = t.handle.await {
                        self.queue_rx = Some(rx);
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// Starts or stops the link-state service; the reason when it cannot run.
    async fn link_state(&mut self, run: bool) -> Option<String> {
        // Ended by itself (a panic): started again, and said so meanwhile.
        let mut ended = None;
        if self.link.as_ref().is_some_and(|t| t.handle.is_finished()) {
            if let Some(t) = self.link.take() {
                if let Err(e) = t.handle.await {
                    let why = format!("it stopped by a panic ({e}); started again");
                    tracing::error!(service = "link-state", "{why}");
                    ended = Some(why);
                }
            }
        }
        match (run, self.link.is_some()) {
            (true, false) => {
                let (stop, stop_rx) = watch::channel(false);
                let svc = crate::org_service::OrgService::new(
                    self.p.store.clone(),
                    self.boot.clone(),
                    self.p.org.clone(),
                );
                let handle = tokio::spawn(svc.run(stop_rx));
                self.link = Some(Task { stop, handle });
            }
            (false, true) => {
                if let Some(t) = self.link.take() {
                    let _ = t.stop.send(true);
                    let _ = t.handle.await;
                }
            }
            _ => {}
        }
        ended
    }

    /// Reads the configuration file again and applies what can be applied while running.
    pub(super) async fn reload(&mut self, origin: &str) -> Reloaded {
        let refused = |error: String, version: i64| Reloaded {
            ok: false,
            version,
            recorded: false,
            changes: Vec::new(),
            restart_needed: Vec::new(),
            error: Some(error),
        };
        let file = self.p.data.join(config::FILE_NAME);
        let loaded = std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|text| {
                Config::parse(&text, &file)
                    .map(|c| (c, text))
                    .map_err(|e| e.to_string())
            });
        let (new, text) = match loaded {
            Ok(x) => x,
            Err(error) => {
                tracing::error!(%error, "reload refused; the configuration in effect is unchanged");
                return refused(error, self.version);
            }
        };
        let keep = new.config.history;
        // Everything the new configuration needs is built before it is recorded, so that once the
        // history shows a version, the next session already runs under it.
        let config = Arc::new(live(&self.boot, &new));
        let ctx = smtp_context(&self.p, &config);
        let (v, recorded) = match self
            .p
            .store
            .config_record(text.clone(), format!("file ({origin})"), keep)
            .await
        {
            Ok(x) => x,
            Err(e) => return refused(e.to_string(), self.version),
        };
        let changes: Vec<Change> = history::diff(&self.text, &text);
        let restart = history::needs_restart(&history::diff(&self.boot_text, &text));
        self.text = text;
        self.version = v.version;
        self.p.live.send_replace(config.clone());
        self.config = config;
        self.smtp_ctx.send_replace(ctx);
        self.reconcile().await;
        tracing::info!(
            version = v.version,
            changes = changes.len(),
            restart_needed = ?restart,
            "configuration reloaded"
        );
        Reloaded {
            ok: true,
            version: v.version,
            recorded,
            changes,
            restart_needed: restart,
            error: None,
        }
    }

    /// What `mailroom status` prints.
    pub(super) fn status(&self) -> Status {
        let file = self.p.data.join(config::FILE_NAME);
        let file_state = match std::fs::read_to_string(&file) {
            Ok(t) if t == self.text => "applied".to_string(),
            Ok(t) => match Config::parse(&t, &file) {
                Ok(_) => "changed (not reloaded)".to_string(),
                Err(e) => format!("invalid: {e}"),
            },
            Err(e) => format!("unreadable: {e}"),
        };
        Status {
            server: self.boot.server.hostname.clone(),
            pid: std::process::id(),
            started: self
                .started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            config_version: self.version,
            config_file: file_state,
            restart_needed: history::needs_restart(&history::diff(&self.boot_text, &self.text)),
            services: self.p.services.snapshot(),
        }
    }

    /// Stops everything: listeners first (no new sessions), then the queue and the link state;
    /// then waits for the sessions.
    pub(super) async fn stop_all(mut self) {
        let all = [
            self.smtp.take(),
            self.submission.take(),
            self.pop3.take(),
            self.imap.take(),
        ];
        for l in all.into_iter().flatten() {
            l.stop().await;
        }
        for name in config::SERVICES {
            self.p
                .services
                .set(name, State::Stopped, Some("the server is stopping".into()));
        }
        if let Some(t) = self.queue.take() {
            let _ = t.stop.send(true);
            let _ = t.handle.await;
        }
        if let Some(t) = self.link.take() {
            let _ = t.stop.send(true);
            let _ = t.handle.await;
        }
        while self.tasks.join_next().await.is_some() {}
    }
}
