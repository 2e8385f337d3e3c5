//! Limits on what unauthenticated peers may take: connections (in total and per client address,
//! shared by every listener of a service) and failed logins per client address.
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

/// Failed logins per client address, across sessions: past `max` failures the address may not
/// try again until `lockout` has passed since its last failure. Without this, a client could
/// open session after session and guess passwords for ever; with it, a guess costs nothing once
/// the address is locked out (no password is even checked).
#[derive(Debug)]
pub struct AuthThrottle {
    max: u32,
    lockout: Duration,
    failures: Mutex<HashMap<ClientKey, (u32, Instant)>>,
}

/// Most addresses remembered; past it, those whose failures are oldest are forgotten first, so a
/// flood from many addresses costs bounded memory.
const MAX_TRACKED: usize = 65_536;

impl AuthThrottle {
    /// At most `max` failures from an address, then a lockout of `lockout`.
    pub fn new(max: u32, lockout: Duration) -> AuthThrottle {
        AuthThrottle {
            max,
            lockout,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// True when `ip` may not try to log in now.
    pub fn locked_out(&self, ip: IpAddr) -> bool {
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        let key = ClientKey::of(ip);
        match f.get(&key) {
            Some((_, last)) if last.elapsed() >= self.lockout => {
                f.remove(&key);
                false
            }
            Some((n, _)) => *n >= self.max,
            None => false,
        }
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        if f.len() >= MAX_TRACKED {
            let lockout = self.lockout;
            f.retain(|_, (_, last)| last.elapsed() < lockout);
            if f.len() >= MAX_TRACKED {
                if let Some(oldest) = f.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    f.remove(&oldest);
                }
            }
        }
        let e = f.entry(ClientKey::of(ip)).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
    }

    /// A successful login from `ip` clears its count.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&ClientKey::of(ip));
        }
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
    async fn failed_logins_lock_an_address_out_for_a_while() {
        let t = AuthThrottle::new(3, Duration::from_secs(600));
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        for _ in 0..3 {
            assert!(!t.locked_out(ip));
            t.failed(ip);
        }
        assert!(t.locked_out(ip));
        assert!(!t.locked_out(other));
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(!t.locked_out(ip), "the lockout passes");
        t.failed(ip);
        t.succeeded(ip);
        assert!(!t.locked_out(ip));
    }
}
