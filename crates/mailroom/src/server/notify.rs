//! systemd's service notifications (`sd_notify`, `Type=notify`): `READY=1` once every service
//! listens, `RELOADING=1` … `READY=1` around a reload (SIGHUP, `ExecReload`), `STOPPING=1` at
//! shutdown, and `WATCHDOG=1` from the supervisor's own loop every half `WATCHDOG_USEC`, so a
//! supervisor that hangs is restarted by systemd.
//!
//! The protocol is one datagram of `KEY=value` lines to the socket in `$NOTIFY_SOCKET` (a path,
//! or an abstract name written with a leading `@`). Written here in a few lines rather than with
//! a crate: it needs no more. Without `$NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The notification socket systemd gave, if any.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt as _;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            let s = UnixDatagram::unbound().ok()?;
            Some((s, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to say `WATCHDOG=1` (half the interval systemd asked for), if it asked.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state` (`READY=1`, …); a failure is logged, never fatal.
    pub fn send(&self, state: &str) {
        let Some((s, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = s.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!("cannot notify systemd ({state}): {e}");
        }
    }

    /// `RELOADING=1` with the monotonic time systemd wants with it (systemd ≥ 253 checks it).
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }
}
