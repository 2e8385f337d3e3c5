//! Limits on what unauthenticated peers may take: connections (in total and per client address,
//! shared by every listener of a service) and failed logins per client address and per account.
//!
//! A client is counted under its IPv4 address, or under the /64 prefix of its IPv6 address: one
//! host on IPv6 usually has a whole /64 to itself, and counting each address apart would let it
//! open any number of connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The address a client is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client address: IPv4 as is (an IPv4-mapped IPv6 address as its IPv4), IPv6
    /// by its /64.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(_) => ClientKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    ClientKey(IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The service has as many connections as it takes.
    Total,
    /// This client address has as many as it may.
    PerClient,
}

/// The connection limits of one service, shared by all of its listeners.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_client: usize,
    counts: Mutex<HashMap<ClientKey, usize>>,
}

/// A connection's place within the limits, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    limits: Arc<ConnectionLimits>,
    key: ClientKey,
}

impl ConnectionLimits {
    /// Limits of `total` connections, at most `per_client` from one client address.
    pub fn new(total: usize, per_client: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `ip`, unless a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let key = ClientKey::of(ip);
        let mut counts = self.counts.lock().map_err(|_| Refusal::Total)?;
        let n = counts.entry(key).or_insert(0);
        if *n >= self.per_client {
            return Err(Refusal::PerClient);
        }
        *n += 1;
        Ok(Admission {
            _permit: permit,
            limits: self.clone(),
            key,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limits.counts.lock() {
            if let Some(n) = c.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&self.key);
                }
            }
        }
    }
}

/// How failed logins are limited (the `[pop3]` and `[submission]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failures from one client address before it is locked out.
    pub max_per_ip: u32,
    /// Failures for one account, from anywhere, before it is locked out.
    pub max_per_account: u32,
    /// How long a lockout lasts after the last failure.
    pub lockout: Duration,
    /// The pause after a first failure; it doubles with each further one.
    pub delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

/// What is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// The client address (or its IPv6 /64).
    Address,
    /// The account, whoever tries it: guessing from many addresses is stopped too.
    Account,
}

/// Failures counted under one kind of key, each forgotten `lockout` after its last.
#[derive(Debug)]
struct Failures<K> {
    counts: Mutex<HashMap<K, (u32, Instant)>>,
}

/// Most keys remembered of each kind; past it, those whose failures are oldest are forgotten
/// first, so a flood from many addresses (or for many names) costs bounded memory.
const MAX_TRACKED: usize = 65_536;

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    fn new() -> Self {
        Failures {
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The failures counted for `key` (0 once its lockout has passed).
    fn count(&self, key: &K, lockout: Duration) -> u32 {
        let Ok(mut f) = self.counts.lock() else {
            return 0;
        };
        match f.get(key) {
            Some((_, last)) if last.elapsed() >= lockout => {
                f.remove(key);
                0
            }
            Some((n, _)) => *n,
            None => 0,
        }
    }

    /// Counts one more failure; the new count.
    fn fail(&self, key: K, lockout: Duration) -> u32 {
        let Ok(mut f) = self.counts.lock() else {
            return 0;
        };
        if f.len() >= MAX_TRACKED && !f.contains_key(&key) {
            f.retain(|_, (_, last)| last.elapsed() < lockout);
            if f.len() >= MAX_TRACKED {
                if let Some(oldest) = f
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
                {
                    f.remove(&oldest);
                }
            }
        }
        let e = f.entry(key).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
        e.0
    }

    fn clear(&self, key: &K) {
        if let Ok(mut f) = self.counts.lock() {
            f.remove(key);
        }
    }
}

/// Failed logins across sessions, by client address and by account: each failure is answered
/// after a pause that doubles with the failures already counted (so guessing slows down at
/// once), and past a limit the address or the account may not try again until `lockout` has
/// passed since its last failure. A locked-out attempt costs no password check at all.
///
/// The account limit stops guessing spread over many addresses; its price is that a guesser
/// can keep an account's owner out for `lockout`, which is why it is temporary and higher than
/// the per-address one.
#[derive(Debug)]
pub struct AuthGuard {
    limits: AuthLimits,
    ips: Failures<ClientKey>,
    accounts: Failures<String>,
}

impl AuthGuard {
    /// A guard with these limits.
    pub fn new(limits: AuthLimits) -> AuthGuard {
        AuthGuard {
            limits,
            ips: Failures::new(),
            accounts: Failures::new(),
        }
    }

    /// What is locked out for a login from `ip` to `account` (lower case), if anything.
    pub fn locked_out(&self, ip: IpAddr, account: &str) -> Option<Lockout> {
        let l = &self.limits;
        if self.ips.count(&ClientKey::of(ip), l.lockout) >= l.max_per_ip {
            return Some(Lockout::Address);
        }
        if self.accounts.count(&account.to_string(), l.lockout) >= l.max_per_account {
            return Some(Lockout::Account);
        }
        None
    }

    /// Counts a failed login; the pause before answering it.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        let l = &self.limits;
        let a = self.ips.fail(ClientKey::of(ip), l.lockout);
        let b = self.accounts.fail(account.to_string(), l.lockout);
        let n = a.max(b).clamp(1, 32);
        l.delay
            .saturating_mul(1 << (n - 1).min(20))
            .min(l.max_delay)
    }

    /// A successful login clears the account's count. Not the address's: a guesser with an
    /// account of its own could otherwise log in between guesses and never be locked out.
    pub fn succeeded(&self, _ip: IpAddr, account: &str) {
        self.accounts.clear(&account.to_string());
    }
}

/// Events per client address per minute (connections, messages), counted in fixed windows of
/// one minute: a client past the limit waits for the next window.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<ClientKey, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// A limiter with no history.
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Counts an event from `ip`; false when it is over `max` in this window (0: no limit).
    pub fn allow(&self, ip: IpAddr, max: u32) -> bool {
        if max == 0 {
            return true;
        }
        let Ok(mut w) = self.windows.lock() else {
            return true;
        };
        let now = Instant::now();
        if w.len() >= MAX_TRACKED {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if w.len() >= MAX_TRACKED {
                return true;
            }
        }
        let e = w.entry(ClientKey::of(ip)).or_insert((now, 0));
        if now.duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys() {
        let k = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(k("192.0.2.1"), k("192.0.2.1"));
        assert_ne!(k("192.0.2.1"), k("192.0.2.2"));
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"), "one /64");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
    }

    #[test]
    fn connection_limits_total_and_per_client() {
        let l = ConnectionLimits::new(3, 2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let c: IpAddr = "192.0.2.9".parse().unwrap();
        let first = l.admit(a).unwrap();
        let _second = l.admit(b).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::PerClient), "same /64");
        let _third = l.admit(c).unwrap();
        assert_eq!(l.admit(c).err(), Some(Refusal::Total));
        drop(first);
        assert!(l.admit(a).is_ok(), "a slot given back is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn rates_are_counted_per_client_per_minute() {
        let r = RateLimiter::new();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        assert!((0..3).all(|_| r.allow(a, 3)));
        assert!(!r.allow(a, 3), "the fourth in the minute");
        assert!(r.allow(b, 3), "another client has its own count");
        assert!((0..100).all(|_| r.allow(a, 0)), "0: no limit");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(r.allow(a, 3), "a new minute");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_slow_down_then_lock_out_the_address_or_the_account() {
        let g = AuthGuard::new(AuthLimits {
            max_per_ip: 3,
            max_per_account: 5,
            lockout: Duration::from_secs(600),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        });
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let mut delays = Vec::new();
        for _ in 0..3 {
            assert_eq!(g.locked_out(ip, "alice@x.test"), None);
            delays.push(g.failed(ip, "alice@x.test").as_secs());
        }
        assert_eq!(delays, [1, 2, 3], "doubling, up to the most");
        assert_eq!(g.locked_out(ip, "bob@x.test"), Some(Lockout::Address));
        assert_eq!(g.locked_out(other, "bob@x.test"), None);
        // The account, guessed from other addresses, locks out for everyone.
        g.failed(other, "alice@x.test");
        assert_eq!(g.locked_out(other, "alice@x.test"), None);
        g.failed("198.51.100.9".parse().unwrap(), "alice@x.test");
        assert_eq!(g.locked_out(other, "alice@x.test"), Some(Lockout::Account));
        assert_eq!(g.locked_out(other, "carol@x.test"), None);
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(g.locked_out(ip, "alice@x.test"), None, "the lockout passes");
        g.failed(ip, "alice@x.test");
        g.succeeded(ip, "alice@x.test");
        assert_eq!(
            g.failed("198.51.100.20".parse().unwrap(), "alice@x.test")
                .as_secs(),
            1,
            "the account's count is cleared"
        );
        assert_eq!(
            g.failed(ip, "bob@x.test").as_secs(),
            2,
            "the address's is not: logging in to an account of one's own does not reset guesses"
        );
    }
}
