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
        let mut counts = lock_for_check(&self.counts, "connections").ok_or(Refusal::Total)?;
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
        let mut c = lock_to_give_back(&self.limits.counts);
        if let Some(n) = c.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.key);
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

    /// Counts one more failure for `key`, unless it already has `max`: then `None`, and nothing
    /// is counted. The check and the count are one step, so sessions in parallel cannot each
    /// see room for one more guess.
    fn try_fail(&self, key: &K, max: u32, lockout: Duration) -> Option<Reserved> {
        let mut f = lock_for_check(&self.counts, "failed logins")?;
        if let Some((_, last)) = f.get(key) {
            if last.elapsed() >= lockout {
                f.remove(key);
            }
        }
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
        let now = Instant::now();
        let (n, last) = f.get(key).copied().unwrap_or((0, now));
        if n >= max {
            return None;
        }
        f.insert(key.clone(), (n + 1, now));
        Some(Reserved {
            count: n + 1,
            before: last,
            at: now,
        })
    }

    /// Takes back one failure counted by [`Failures::try_fail`], and the time of the last
    /// failure with it (unless another has been counted since): a login that did not fail must
    /// not keep older failures from expiring.
    fn undo(&self, key: &K, r: Reserved) {
        let mut f = lock_to_give_back(&self.counts);
        if let Some(e) = f.get_mut(key) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                f.remove(key);
            } else if e.1 == r.at {
                e.1 = r.before;
            }
        }
    }

    fn clear(&self, key: &K) {
        lock_to_give_back(&self.counts).remove(key);
    }
}

/// A failure counted in advance ([`Failures::try_fail`]).
#[derive(Debug, Clone, Copy)]
struct Reserved {
    count: u32,
    /// The time of the last failure before it.
    before: Instant,
    at: Instant,
}

/// Failed logins across sessions, by client address and by account: each failure is answered
/// after a pause that doubles with the failures already counted (so guessing slows down at
/// once), and past a limit the address or the account may not try again until `lockout` has
/// passed since its last failure. A locked-out attempt costs no password check at all.
///
/// The account limit stops guessing spread over many addresses; its price is that a guesser
/// can keep an account's owner out for `lockout`, which is why it is temporary and higher than
/// the per-address one.
///
/// Guards made with [`AuthGuard::sharing`] count into the same tables under their own limits:
/// the server's protocols share one count, so a guesser gains nothing by trying each in turn.
#[derive(Debug)]
pub struct AuthGuard {
    limits: AuthLimits,
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    ips: Failures<ClientKey>,
    accounts: Failures<String>,
}

impl AuthGuard {
    /// A guard with these limits.
    pub fn new(limits: AuthLimits) -> AuthGuard {
        AuthGuard {
            limits,
            counts: Arc::new(Counts {
                ips: Failures::new(),
                accounts: Failures::new(),
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

    /// Starts a login from `ip` to `account` (lower case): it counts as a failure from now on
    /// (so a password check in progress uses up a try), unless the address or the account is
    /// locked out, which is the `Err`. The [`Attempt`] says how it ended; dropped without an
    /// answer (the directory could not be read), it is not counted.
    pub fn attempt(&self, ip: IpAddr, account: &str) -> Result<Attempt<'_>, Lockout> {
        let l = &self.limits;
        let key = ClientKey::of(ip);
        let account = account.to_string();
        let a = self
            .counts
            .ips
            .try_fail(&key, l.max_per_ip, l.lockout)
            .ok_or(Lockout::Address)?;
        let Some(b) = self
            .counts
            .accounts
            .try_fail(&account, l.max_per_account, l.lockout)
        else {
            self.counts.ips.undo(&key, a);
            return Err(Lockout::Account);
        };
        Ok(Attempt {
            guard: self,
            key,
            account,
            reserved: (a, b),
            open: true,
        })
    }
}

/// A login being checked (see [`AuthGuard::attempt`]).
#[derive(Debug)]
pub struct Attempt<'g> {
    guard: &'g AuthGuard,
    key: ClientKey,
    account: String,
    reserved: (Reserved, Reserved),
    open: bool,
}

impl Attempt<'_> {
    /// The password was wrong: the failure stays counted; the pause before answering, which
    /// doubles with each failure already counted.
    pub fn failed(mut self) -> Duration {
        self.open = false;
        let l = &self.guard.limits;
        let n = self
            .reserved
            .0
            .count
            .max(self.reserved.1.count)
            .clamp(1, 32);
        l.delay
            .saturating_mul(1 << (n - 1).min(20))
            .min(l.max_delay)
    }

    /// The login succeeded: it is not a failure, and the account's count is cleared. Not the
    /// address's: a guesser with an account of its own could otherwise log in between guesses
    /// and never be locked out.
    pub fn succeeded(mut self) {
        self.open = false;
        self.guard.counts.ips.undo(&self.key, self.reserved.0);
        self.guard.counts.accounts.clear(&self.account);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.open {
            self.guard.counts.ips.undo(&self.key, self.reserved.0);
            self.guard
                .counts
                .accounts
                .undo(&self.account, self.reserved.1);
        }
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

        let l = ConnectionLimits::new(10, 10);
        let kept = l.admit(a).unwrap();
        poison(&l.counts);
        assert_eq!(l.admit(a).err(), Some(Refusal::Total));
        drop(kept);
        assert!(l.admit(a).is_ok());

        let f = Failures::<IpAddr>::new();
        poison(&f.counts);
        assert!(f.try_fail(&a, 5, Duration::from_secs(60)).is_none());
        assert_eq!(
            f.try_fail(&a, 5, Duration::from_secs(60)).map(|r| r.count),
            Some(1)
        );
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
    async fn failed_logins_slow_down_then_lock_out_the_address_or_the_account() {
        let g = guard();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let fail = |ip: IpAddr, who: &str| g.attempt(ip, who).map(|a| a.failed().as_secs());
        let delays: Vec<_> = (0..3).map(|_| fail(ip, "alice@x.test")).collect();
        assert_eq!(delays, [Ok(1), Ok(2), Ok(3)], "doubling, up to the most");
        assert_eq!(fail(ip, "bob@x.test"), Err(Lockout::Address));
        assert!(g.attempt(other, "bob@x.test").is_ok());
        // The account, guessed from other addresses, locks out for everyone.
        assert!(fail(other, "alice@x.test").is_ok());
        assert!(fail("198.51.100.9".parse().unwrap(), "alice@x.test").is_ok());
        assert_eq!(fail(other, "alice@x.test"), Err(Lockout::Account));
        assert!(g.attempt(other, "carol@x.test").is_ok());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(fail(ip, "alice@x.test"), Ok(1), "the lockout passes");
        g.attempt(ip, "alice@x.test").unwrap().succeeded();
        assert_eq!(
            fail("198.51.100.20".parse().unwrap(), "alice@x.test"),
            Ok(1),
            "the account's count is cleared"
        );
        assert_eq!(
            fail(ip, "bob@x.test"),
            Ok(2),
            "the address's is not: logging in to an account of one's own does not reset guesses"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_login_does_not_keep_old_failures_alive() {
        let g = guard();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        g.attempt(ip, "a@x.test").unwrap().failed();
        g.attempt(ip, "a@x.test").unwrap().failed();
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(300)).await;
            g.attempt(ip, "b@x.test").unwrap().succeeded();
        }
        // 900 s after the failures (the lockout is 600 s): they are forgotten.
        assert_eq!(
            g.attempt(ip, "a@x.test").map(|a| a.failed().as_secs()),
            Ok(1)
        );
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

    #[test]
    fn a_login_in_progress_uses_up_a_try_and_an_unanswered_one_is_given_back() {
        let g = guard();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let pending: Vec<_> = (0..3).map(|_| g.attempt(ip, "a@x.test").unwrap()).collect();
        assert_eq!(
            g.attempt(ip, "a@x.test").err(),
            Some(Lockout::Address),
            "three checks in parallel take the three tries"
        );
        drop(pending);
        assert!(
            g.attempt(ip, "a@x.test").is_ok(),
            "not answered: not counted"
        );
    }
}
