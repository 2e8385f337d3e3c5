//! The server's services and their states: what `mailroom status` shows and `doctor` reads.
//!
//! Each part of the server is a named service ([`crate::config::SERVICES`]) defined in the
//! config store (`[services.NAME]`: enabled, and the component that runs it). The supervisor
//! ([`crate::server`]) starts the enabled ones in order and records each one's [`State`];
//! a service that cannot start says exactly why.
//!
//! **Failure policy** (tested in `tests/blackbox/test_services.py`):
//! - the server does not start at all when the store cannot be opened or the configuration
//!   does not load: no service can work without them;
//! - any one service that fails (its port taken, its definition broken or missing) is marked
//!   failed with the reason and the others keep running, so that mail is still accepted and
//!   kept, and users can still read theirs; the supervisor tries a failed service again every
//!   `supervisor.restart_interval`, and at once after a reload;
//! - while `queue-manager`, `routing-engine`, `local-delivery` or `smtp-send` is not running,
//!   the mail that needs it waits in its queue, untouched, and flows when it runs again.

pub mod port_owner;

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ServiceDef, SERVICES};

/// A service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being started.
    Starting,
    /// Doing its work.
    Running,
    /// Not running, as configured (disabled) or at shutdown.
    Stopped,
    /// Could not start, or stopped by an error: see the reason.
    Failed,
    /// Running, but not all of it: a listener service with an address it could not bind
    /// (the reason names it); the others serve.
    Degraded,
}

/// One service as the supervisor last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The service's name.
    pub name: String,
    /// Enabled in its definition (false when it has none).
    pub enabled: bool,
    /// The component its definition names.
    pub runs: Option<String>,
    /// Its state.
    pub state: State,
    /// Why it is stopped or failed.
    pub reason: Option<String>,
    /// Since when it is in this state.
    pub since: DateTime<Utc>,
    /// The addresses it listens on, for a listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
}

/// True for the services without which mail does not flow; `pop3` and `imap` only serve
/// readers.
pub fn required(name: &str) -> bool {
    name != "pop3" && name != "imap"
}

/// Whether a definition lets its service run: `Ok(true)` run it, `Ok(false)` disabled, `Err`
/// the definition is missing or names a component that does not implement the service.
pub fn check_definition(name: &str, def: Option<&ServiceDef>) -> Result<bool, String> {
    let Some(def) = def else {
        return Err(format!(
            "it has no definition in the config store ([services.{name}]); `mailroom repair` \
             puts it back"
        ));
    };
    if def.runs != name {
        let what = if SERVICES.contains(&def.runs.as_str()) {
            format!("{:?}, which does not implement {name}", def.runs)
        } else {
            format!("{:?}, which is not a mailroom component", def.runs)
        };
        return Err(format!(
            "its definition says it runs in {what} (services.{name}.runs; Exchange reported \
             this as error 1083)"
        ));
    }
    Ok(def.enabled)
}

/// The states of every service, shared by the supervisor, the queue manager and the control
/// socket.
#[derive(Debug)]
pub struct Services {
    map: Mutex<BTreeMap<String, Status>>,
    /// When not supervised (unit tests), every service counts as running.
    supervised: bool,
}

impl Services {
    /// States for a supervisor to fill: every standard service, starting.
    pub fn new(config: &Config) -> Services {
        let defs = config.service_defs();
        let now = Utc::now();
        let map = SERVICES
            .iter()
            .map(|n| {
                let def = defs.get(*n);
                (
                    n.to_string(),
                    Status {
                        name: n.to_string(),
                        enabled: def.is_some_and(|d| d.enabled),
                        runs: def.map(|d| d.runs.clone()),
                        state: State::Starting,
                        reason: None,
                        since: now,
                        listen: Vec::new(),
                    },
                )
            })
            .collect();
        Services {
            map: Mutex::new(map),
            supervised: true,
        }
    }

    /// Every service running, for parts used without a supervisor (unit tests).
    pub fn unsupervised() -> Services {
        Services {
            map: Mutex::new(BTreeMap::new()),
            supervised: false,
        }
    }

    /// Records a service's state (its `since` changes only with its state or reason).
    pub fn set(&self, name: &str, state: State, reason: Option<String>) {
        let Ok(mut m) = self.map.lock() else { return };
        let s = m.entry(name.to_string()).or_insert_with(|| Status {
            name: name.to_string(),
            enabled: false,
            runs: None,
            state,
            reason: None,
            since: Utc::now(),
            listen: Vec::new(),
        });
        if s.state != state || s.reason != reason {
            s.since = Utc::now();
        }
        s.state = state;
        s.reason = reason;
    }

    /// Records what a service's definition says.
    pub fn define(&self, name: &str, def: Option<&ServiceDef>) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(s) = m.get_mut(name) {
                s.enabled = def.is_some_and(|d| d.enabled);
                s.runs = def.map(|d| d.runs.clone());
            }
        }
    }

    /// Records a listener's addresses.
    pub fn set_listen(&self, name: &str, listen: Vec<String>) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(s) = m.get_mut(name) {
                s.listen = listen;
            }
        }
    }

    /// True when the service is running (always, unsupervised).
    pub fn running(&self, name: &str) -> bool {
        if !self.supervised {
            return true;
        }
        self.map
            .lock()
            .map(|m| {
                m.get(name)
                    .is_some_and(|s| matches!(s.state, State::Running | State::Degraded))
            })
            .unwrap_or(false)
    }

    /// The state of one service.
    pub fn get(&self, name: &str) -> Option<Status> {
        self.map.lock().ok()?.get(name).cloned()
    }

    /// Every service, in start order.
    pub fn snapshot(&self) -> Vec<Status> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        SERVICES.iter().filter_map(|n| m.get(*n).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_that_cannot_run_say_why() {
        let def = |runs: &str, enabled| ServiceDef {
            enabled,
            runs: runs.into(),
        };
        assert_eq!(check_definition("pop3", Some(&def("pop3", true))), Ok(true));
        assert_eq!(
            check_definition("pop3", Some(&def("pop3", false))),
            Ok(false)
        );
        let cases: &[(Option<ServiceDef>, &str)] = &[
            (
                None,
                "no definition in the config store ([services.routing-engine])",
            ),
            (
                Some(def("smtp-receive", true)),
                "runs in \"smtp-receive\", which does not implement routing-engine",
            ),
            (
                Some(def("exchange-resvc", true)),
                "runs in \"exchange-resvc\", which is not a mailroom component",
            ),
        ];
        for (d, want) in cases {
            let err = check_definition("routing-engine", d.as_ref()).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn states_are_recorded_with_their_reason() {
        let s = Services::new(&Config::new("example.com", "mx.example.com"));
        assert!(!s.running("smtp-send"), "starting is not running");
        s.set("smtp-send", State::Running, None);
        assert!(s.running("smtp-send"));
        s.set("pop3", State::Failed, Some("port taken".into()));
        let p = s.get("pop3").unwrap();
        assert_eq!(
            (p.state, p.reason.as_deref()),
            (State::Failed, Some("port taken"))
        );
        assert_eq!(s.snapshot().len(), SERVICES.len());
        assert!(Services::unsupervised().running("anything"));
    }
}
