//! Limits on what unauthenticated peers may take: connections (in total and per client address,
//! shared by every listener of a service) and failed logins per client address and per account.
//!
//! A client is counted under its IPv4 address, or under the /64 prefix of its IPv6 address: one
//! host on IPv6 usually has a whole /64 to itself, and counting each address apart would let it
//! open any number of connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Locks a limiter's table for a check. A panic while it was held (a bug) poisons it: the
/// check that finds it so fails closed (`None`: the caller refuses) with an error in the log,
/// and the table is taken back as it is for the next check, its counts kept (each change to
/// it is one insert or one integer write, never half made), so that limiting goes on.
fn lock_for_check<'a, T>(m: &'a Mutex<T>, what: &str) -> Option<MutexGuard<'a, T>> {
    match m.lock() {
        Ok(g) => Some(g),
        Err(_) => {
            tracing::error!(
                limiter = what,
                "a limiter's table was left locked by a failed task: this check is refused"
            );
            m.clear_poison();
            None
        }
    }
}

/// Locks a limiter's table to give something back (a slot, a failure): a poisoned table is
/// taken as it is, since giving back never lets more through.
fn lock_to_give_back<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

impl ClientKey {
    /// The network a client is counted under once too many addresses are counted apart:
    /// IPv4 by its /24, IPv6 by its /48 (what one site usually holds).
    pub fn network(ip: IpAddr) -> ClientKey {
        match ClientKey::of(ip).0 {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                ClientKey(IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0)))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                ClientKey(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], 0, 0, 0, 0, 0,
                )))
            }
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
    /// Its network (a /24, an IPv6 /48) has as many as it may.
    PerNetwork,
}

impl Refusal {
    /// What the client is told.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "Too many connections, try again later",
            Refusal::PerClient => "Too many connections from your address, try again later",
            Refusal::PerNetwork => "Too many connections from your network, try again later",
        }
    }
}

/// How many connections a service takes: in total, from one client address, and from one
/// network together (so that a holder of many addresses, idle on every one, cannot take every
/// slot: issue 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// In total.
    pub total: usize,
    /// From one client address (IPv6: its /64).
    pub per_client: usize,
    /// From one network ([`ClientKey::network`]: a /24, an IPv6 /48).
    pub per_network: usize,
}

/// The connection limits of one service, shared by all of its listeners.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    capacity: Capacity,
    counts: Mutex<Open>,
}

/// Connections open, by client and by network.
#[derive(Debug, Default)]
struct Open {
    clients: HashMap<ClientKey, usize>,
    networks: HashMap<ClientKey, usize>,
}

/// A connection's place within the limits, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    limits: Arc<ConnectionLimits>,
    key: ClientKey,
    network: ClientKey,
}

impl ConnectionLimits {
    /// Limits of this capacity.
    pub fn new(capacity: Capacity) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(capacity.total)),
            capacity,
            counts: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `ip`, unless a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let (key, network) = (ClientKey::of(ip), ClientKey::network(ip));
        let mut open = lock_for_check(&self.counts, "connections").ok_or(Refusal::Total)?;
        if open.clients.get(&key).copied().unwrap_or(0) >= self.capacity.per_client {
            return Err(Refusal::PerClient);
        }
        if open.networks.get(&network).copied().unwrap_or(0) >= self.capacity.per_network {
            return Err(Refusal::PerNetwork);
        }
        *open.clients.entry(key).or_insert(0) += 1;
        *open.networks.entry(network).or_insert(0) += 1;
        Ok(Admission {
            _permit: permit,
            limits: self.clone(),
            key,
            network,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = lock_to_give_back(&self.limits.counts);
        let give_back = |m: &mut HashMap<ClientKey, usize>, k: &ClientKey| {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        };
        give_back(&mut open.clients, &self.key);
        give_back(&mut open.networks, &self.network);
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

    /// The failures counted for `key` (those older than `lockout` forgotten). `None` when the
    /// table cannot be read (a poisoned lock): the caller refuses (fails closed).
    fn count(&self, key: &K, lockout: Duration) -> Option<u32> {
        let mut f = lock_for_check(&self.counts, "failed logins")?;
        if let Some((_, last)) = f.get(key) {
            if last.elapsed() >= lockout {
                f.remove(key);
            }
        }
        Some(f.get(key).map_or(0, |(n, _)| *n))
    }

    /// Counts one more failure for `key`; the count now. Past [`MAX_TRACKED`] keys, the one
    /// whose last failure is oldest is forgotten first, so a flood from many addresses (or for
    /// many names) costs bounded memory.
    fn fail(&self, key: &K, lockout: Duration) -> u32 {
        let mut f = lock_to_give_back(&self.counts);
        if f.len() >= MAX_TRACKED && !f.contains_key(key) {
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
        let e = f.entry(key.clone()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= lockout {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
        e.0
    }
}

/// Failed logins across sessions, by client address and by account (Dovecot's auth penalty,
/// and more): each failure is answered after a pause that doubles with the failures already
/// counted, so guessing slows down at once.
///
/// - **By address first**: past `max_per_ip` failures an address may not try again until
///   `lockout` has passed since its last failure, and an address has at most
///   [`CHECKS_PER_ADDRESS`] password checks in flight (the others wait their turn), so that
///   parallel guesses cannot outrun its count.
/// - **By account, for strangers only**: past `max_per_account` failures (guesses spread over
///   many addresses), an account is closed to the addresses that never logged in to it; the
///   addresses its owner logged in from (remembered [`KNOWN_FOR`]) keep working, and are
///   slowed down only by their own failures. A guesser can no longer lock the owner out.
/// - A successful login never counts as a failure. A locked-out attempt costs no password
///   check at all.
///
/// Guards made with [`AuthGuard::sharing`] count into the same tables under their own limits:
/// the server's protocols share one count, so a guesser gains nothing by trying each in turn.
#[derive(Debug)]
pub struct AuthGuard {
    limits: AuthLimits,
    counts: Arc<Counts>,
}

/// Password checks a client address may have in flight at once; more wait their turn.
pub const CHECKS_PER_ADDRESS: usize = 2;

/// How long an address that logged in to an account stays known to it (it keeps working
/// while the account is closed to strangers).
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug)]
struct Counts {
    ips: Failures<ClientKey>,
    accounts: Failures<String>,
    /// (account, address) pairs that logged in, with when they last did.
    known: Mutex<HashMap<(String, ClientKey), Instant>>,
    /// Each address's turns at a password check.
    turns: Mutex<HashMap<ClientKey, Arc<Semaphore>>>,
}

impl AuthGuard {
    /// A guard with these limits.
    pub fn new(limits: AuthLimits) -> AuthGuard {
        AuthGuard {
            limits,
            counts: Arc::new(Counts {
                ips: Failures::new(),
                accounts: Failures::new(),
                known: Mutex::new(HashMap::new()),
                turns: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A guard with other limits over the same counts as this one.
    pub fn sharing(&self, limits: AuthLimits) -> AuthGuard {
        AuthGuard {
            limits,
            counts: self.counts.clone(),
        }
    }

    /// Starts a login from `ip` to `account` (lower case), unless the address is locked out,
    /// or the account is closed to strangers and `ip` is one: that is the `Err`. The
    /// [`Attempt`] says how it ended; dropped without an answer (the directory could not be
    /// read), nothing is counted.
    pub fn attempt(&self, ip: IpAddr, account: &str) -> Result<Attempt<'_>, Lockout> {
        let l = &self.limits;
        let key = ClientKey::of(ip);
        let account = account.to_string();
        let ip_failures = self
            .counts
            .ips
            .count(&key, l.lockout)
            .ok_or(Lockout::Address)?;
        if ip_failures >= l.max_per_ip {
            return Err(Lockout::Address);
        }
        let known = self.is_known(&account, key);
        if !known {
            let account_failures = self
                .counts
                .accounts
                .count(&account, l.lockout)
                .ok_or(Lockout::Account)?;
            if account_failures >= l.max_per_account {
                return Err(Lockout::Account);
            }
        }
        Ok(Attempt {
            guard: self,
            key,
            account,
            known,
        })
    }

    /// Waits for the address's turn at a password check (see [`CHECKS_PER_ADDRESS`]); the
    /// turn ends when the permit is dropped.
    pub async fn turn(&self, ip: IpAddr) -> Option<Turn> {
        let key = ClientKey::of(ip);
        let sem = {
            let mut t = lock_for_check(&self.counts.turns, "password turns")?;
            if t.len() >= MAX_TRACKED {
                // Idle entries (no check in flight) go first.
                t.retain(|_, s| Arc::strong_count(s) > 1);
            }
            t.entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(CHECKS_PER_ADDRESS)))
                .clone()
        };
        let permit = sem.acquire_owned().await.ok()?;
        Some(Turn {
            _permit: permit,
            key,
            counts: self.counts.clone(),
        })
    }

    fn is_known(&self, account: &str, key: ClientKey) -> bool {
        let Some(k) = lock_for_check(&self.counts.known, "known addresses") else {
            return false;
        };
        k.get(&(account.to_string(), key))
            .is_some_and(|t| t.elapsed() < KNOWN_FOR)
    }
}

/// An address's turn at a password check ([`AuthGuard::turn`]).
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    key: ClientKey,
    counts: Arc<Counts>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // The address's semaphore goes once no check of it is in flight or waiting.
        let mut t = lock_to_give_back(&self.counts.turns);
        if t.get(&self.key).is_some_and(|s| Arc::strong_count(s) <= 2) {
            t.remove(&self.key);
        }
    }
}

/// A login being checked (see [`AuthGuard::attempt`]); dropped without an answer (the
/// directory could not be read), nothing is counted.
#[derive(Debug)]
pub struct Attempt<'g> {
    guard: &'g AuthGuard,
    key: ClientKey,
    account: String,
    /// The address logged in to the account before.
    known: bool,
}

impl Attempt<'_> {
    /// The password was wrong: the failure is counted for the address and the account; the
    /// pause before answering, which doubles with each failure already counted (for an
    /// address the account knows, its own only).
    pub fn failed(self) -> Duration {
        let l = &self.guard.limits;
        let ip_n = self.guard.counts.ips.fail(&self.key, l.lockout);
        let account_n = self.guard.counts.accounts.fail(&self.account, l.lockout);
        let n = if self.known {
            ip_n
        } else {
            ip_n.max(account_n)
        }
        .clamp(1, 32);
        l.delay
            .saturating_mul(1 << (n - 1).min(20))
            .min(l.max_delay)
    }

    /// The login succeeded: nothing is counted, and the address becomes known to the account.
    /// Neither count is cleared: a guesser with an account of its own could otherwise log in
    /// between guesses, and an owner's login would give strangers a fresh budget.
    pub fn succeeded(mut self) {
        let mut k = lock_to_give_back(&self.guard.counts.known);
        if k.len() >= MAX_TRACKED && !k.contains_key(&(self.account.clone(), self.key)) {
            k.retain(|_, t| t.elapsed() < KNOWN_FOR);
            if k.len() >= MAX_TRACKED {
                if let Some(oldest) = k.iter().min_by_key(|(_, t)| **t).map(|(x, _)| x.clone()) {
                    k.remove(&oldest);
                }
            }
        }
        k.insert(
            (std::mem::take(&mut self.account), self.key),
            Instant::now(),
        );
    }
}

/// Events per client address per minute (connections, messages), counted in fixed windows of
/// one minute: a client past the limit waits for the next window.
///
/// At most [`MAX_TRACKED`] addresses are counted apart in a window; once that many have come
/// within one minute (a flood from a botnet, or from one holder of a large IPv6 prefix), the
/// newcomers are counted by their network ([`ClientKey::network`]), and past as many networks
/// all together: a flood from more addresses than the table holds is limited rather than not
/// at all, and a newcomer shares its count only with its neighbours while that is possible.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    by_client: HashMap<ClientKey, Window>,
    by_network: HashMap<ClientKey, Window>,
    overflow: Window,
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    count: u32,
}

impl Window {
    fn count(&mut self, now: Instant, max: u32) -> bool {
        match self.start {
            Some(s) if now.duration_since(s) < WINDOW => {}
            _ => {
                *self = Window {
                    start: Some(now),
                    count: 0,
                }
            }
        }
        self.count = self.count.saturating_add(1);
        self.count <= max
    }

    fn current(&self, now: Instant) -> bool {
        self.start.is_some_and(|s| now.duration_since(s) < WINDOW)
    }
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// A limiter with no history.
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Counts an event from `ip`; false when it is over `max` in this window (0: no limit).
    pub fn allow(&self, ip: IpAddr, max: u32) -> bool {
        self.allow_within(ip, max, MAX_TRACKED)
    }

    fn allow_within(&self, ip: IpAddr, max: u32, room: usize) -> bool {
        if max == 0 {
            return true;
        }
        let Some(mut w) = lock_for_check(&self.windows, "rates") else {
            return false;
        };
        let now = Instant::now();
        let key = ClientKey::of(ip);
        if w.by_client.len() >= room && !w.by_client.contains_key(&key) {
            w.by_client.retain(|_, win| win.current(now));
            w.by_network.retain(|_, win| win.current(now));
            if w.by_client.len() >= room {
                let net = ClientKey::network(ip);
                if w.by_network.len() >= room && !w.by_network.contains_key(&net) {
                    return w.overflow.count(now, max);
                }
                return w.by_network.entry(net).or_default().count(now, max);
            }
        }
        w.by_client.entry(key).or_default().count(now, max)
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

    /// Issue 21: a poisoned rate-limiter lock let everything through. Each limiter refuses the
    /// check that finds its table poisoned, and limits as before from the next one.
    #[test]
    fn a_poisoned_limiter_fails_closed() {
        fn poison<T: Send>(m: &Mutex<T>) {
            std::thread::scope(|s| {
                let _ = s
                    .spawn(|| {
                        let _g = m.lock().unwrap();
                        panic!("a bug while the table is held");
                    })
                    .join();
            });
            assert!(m.is_poisoned());
        }
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let r = RateLimiter::new();
        assert!(r.allow(a, 2));
        poison(&r.windows);
        assert!(
            !r.allow(a, 2),
            "the check that finds it poisoned is refused"
        );
        assert!(
            r.allow(a, 3) && r.allow(a, 3),
            "the second and third of three"
        );
        assert!(!r.allow(a, 3), "the count was kept, and limiting goes on");

        let l = ConnectionLimits::new(Capacity {
            total: 10,
            per_client: 10,
            per_network: 10,
        });
        let kept = l.admit(a).unwrap();
        poison(&l.counts);
        assert_eq!(l.admit(a).err(), Some(Refusal::Total));
        drop(kept);
        assert!(l.admit(a).is_ok());

        let f = Failures::<IpAddr>::new();
        f.fail(&a, Duration::from_secs(60));
        poison(&f.counts);
        assert!(
            f.count(&a, Duration::from_secs(60)).is_none(),
            "the caller refuses"
        );
        assert_eq!(
            f.count(&a, Duration::from_secs(60)),
            Some(1),
            "the count was kept"
        );
    }

    #[test]
    fn connection_limits_total_and_per_client() {
        let l = ConnectionLimits::new(Capacity {
            total: 3,
            per_client: 2,
            per_network: 3,
        });
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
        // Many addresses of one network count together.
        let l = ConnectionLimits::new(Capacity {
            total: 100,
            per_client: 50,
            per_network: 3,
        });
        let near = |i: u8| -> IpAddr { format!("203.0.113.{i}").parse().unwrap() };
        let held: Vec<_> = (1..=3).map(|i| l.admit(near(i)).unwrap()).collect();
        assert_eq!(l.admit(near(9)).err(), Some(Refusal::PerNetwork));
        assert!(
            l.admit("198.51.100.1".parse().unwrap()).is_ok(),
            "another network"
        );
        drop(held);
        assert!(l.admit(near(9)).is_ok());
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
    async fn past_the_table_newcomers_are_counted_by_network_then_together() {
        let r = RateLimiter::new();
        let ip = |i: u8| -> IpAddr { format!("203.0.113.{i}").parse().unwrap() };
        assert!((0..4).all(|i| r.allow_within(ip(i), 2, 4)));
        assert!(r.allow_within(ip(10), 2, 4) && r.allow_within(ip(11), 2, 4));
        assert!(
            !r.allow_within(ip(12), 2, 4),
            "the newcomers are counted by their /24"
        );
        assert!(
            r.allow_within(ip(0), 2, 4),
            "a client in the table keeps its own count"
        );
        let net = |i: u8| -> IpAddr { format!("192.0.{i}.1").parse().unwrap() };
        assert!(
            r.allow_within(net(1), 2, 4),
            "another network has its own count"
        );
        assert!((2..4).all(|i| r.allow_within(net(i), 2, 4)));
        assert!(r.allow_within(net(9), 2, 4) && r.allow_within(net(10), 2, 4));
        assert!(
            !r.allow_within(net(11), 2, 4),
            "past as many networks, all together"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(r.allow_within(ip(12), 2, 4), "old windows make room");
    }

    fn guard() -> AuthGuard {
        AuthGuard::new(AuthLimits {
            max_per_ip: 3,
            max_per_account: 5,
            lockout: Duration::from_secs(600),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_slow_down_then_lock_out_the_address_or_strangers_to_the_account() {
        let g = guard();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let fail = |ip: IpAddr, who: &str| g.attempt(ip, who).map(|a| a.failed().as_secs());
        let delays: Vec<_> = (0..3).map(|_| fail(ip, "alice@x.test")).collect();
        assert_eq!(delays, [Ok(1), Ok(2), Ok(3)], "doubling, up to the most");
        assert_eq!(fail(ip, "bob@x.test"), Err(Lockout::Address));
        assert!(g.attempt(other, "bob@x.test").is_ok());
        // The account, guessed from other addresses, is closed to addresses it does not know.
        assert!(fail(other, "alice@x.test").is_ok());
        assert!(fail("198.51.100.9".parse().unwrap(), "alice@x.test").is_ok());
        assert_eq!(fail(other, "alice@x.test"), Err(Lockout::Account));
        assert!(g.attempt(other, "carol@x.test").is_ok());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(fail(ip, "alice@x.test"), Ok(1), "the lockout passes");
        let _ = g.attempt(ip, "bob@x.test");
        assert_eq!(
            fail(ip, "bob@x.test"),
            Ok(2),
            "a login that was not answered counts nothing; a failure doubles the pause"
        );
    }

    /// Issue 21: 20 guesses from 20 addresses locked the owner out of every protocol for ten
    /// minutes. The account closes to strangers only: an address that logged in before keeps
    /// working, slowed by its own failures alone.
    #[tokio::test(start_paused = true)]
    async fn guessers_cannot_lock_the_owner_out() {
        let g = guard();
        let home: IpAddr = "192.0.2.10".parse().unwrap();
        g.attempt(home, "alice@x.test").unwrap().succeeded();
        for i in 0..20 {
            let guesser: IpAddr = format!("203.0.113.{i}").parse().unwrap();
            let _ = g.attempt(guesser, "alice@x.test").map(Attempt::failed);
        }
        let stranger: IpAddr = "203.0.113.200".parse().unwrap();
        assert_eq!(
            g.attempt(stranger, "alice@x.test").err(),
            Some(Lockout::Account)
        );
        let a = g
            .attempt(home, "alice@x.test")
            .expect("the owner's address still works");
        assert_eq!(
            a.failed(),
            Duration::from_secs(1),
            "slowed by its own failures only"
        );
        g.attempt(home, "alice@x.test").unwrap().succeeded();
        assert_eq!(
            g.attempt(stranger, "alice@x.test").err(),
            Some(Lockout::Account),
            "the owner's login does not reopen the account to strangers"
        );
    }

    /// Issue 21: 15 correct logins at once from one address got "too many failed logins":
    /// a login in progress counted as a failure. Successes never count; checks from one address
    /// take turns instead.
    #[tokio::test]
    async fn correct_logins_at_once_are_never_failures() {
        let g = std::sync::Arc::new(guard());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let attempts: Vec<_> = (0..15)
            .map(|_| g.attempt(ip, "a@x.test").unwrap())
            .collect();
        for a in attempts {
            a.succeeded();
        }
        assert!(g.attempt(ip, "a@x.test").is_ok());
        // Turns: at most CHECKS_PER_ADDRESS at once; the next waits until one ends.
        let t1 = g.turn(ip).await.unwrap();
        let _t2 = g.turn(ip).await.unwrap();
        let waiting = {
            let g = g.clone();
            tokio::spawn(async move { g.turn(ip).await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "a third check from the address waits"
        );
        drop(t1);
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn guards_sharing_counts_keep_their_own_limits() {
        let smtp = guard();
        let pop3 = smtp.sharing(AuthLimits {
            max_per_ip: 1,
            ..smtp.limits
        });
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        smtp.attempt(ip, "a@x.test").unwrap().failed();
        assert_eq!(
            pop3.attempt(ip, "b@x.test").err(),
            Some(Lockout::Address),
            "a failure on one protocol counts on the other"
        );
        assert!(smtp.attempt(ip, "b@x.test").is_ok(), "under its own limit");
    }
}
