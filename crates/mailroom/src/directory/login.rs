//! Logging in, for every protocol that takes a password (SMTP AUTH, POP3, later IMAP), and
//! which addresses a logged-in user may send as.

use std::net::IpAddr;
use std::time::Duration;

use super::password;
use crate::config::Config;
use crate::limits::{AuthGuard, Lockout};
use crate::model::Resolution;
use crate::store::{Store, StoreError, User};

/// The outcome of a login.
#[derive(Debug)]
pub enum Login {
    /// The password is right.
    Accepted(User),
    /// Wrong name or password (the same answer for both); answer after `delay`.
    Refused {
        /// The pause before answering.
        delay: Duration,
    },
    /// The address or the account may not try now; no password was checked.
    LockedOut(Lockout),
    /// The directory could not be read.
    Unavailable(StoreError),
}

/// The account a login name means: an address, or a local part of the primary domain.
pub fn account(config: &Config, name: &str) -> String {
    let name = name.trim().to_lowercase();
    if name.contains('@') {
        name
    } else {
        format!("{name}@{}", config.primary_domain())
    }
}

/// Checks a name and password from `ip`, counting failures in `guard`. A name that is no user
/// costs the same password check as a wrong password, so the answer and its timing do not tell
/// which names exist.
pub async fn login(
    store: &dyn Store,
    config: &Config,
    guard: &AuthGuard,
    ip: IpAddr,
    name: &str,
    pass: &str,
) -> Login {
    let account = account(config, name);
    let attempt = match guard.attempt(ip, &account) {
        Ok(a) => a,
        Err(l) => return Login::LockedOut(l),
    };
    let found = match store.user_auth(&account).await {
        Ok(f) => f,
        Err(e) => return Login::Unavailable(e),
    };
    let (hash, user) = match found {
        Some((u, h)) => (h, Some(u)),
        None => (password::dummy().to_string(), None),
    };
    match (password::verify_bounded(hash, pass.to_string()).await, user) {
        (true, Some(u)) => {
            attempt.succeeded();
            Login::Accepted(u)
        }
        _ => {
            tracing::info!(%ip, user = %account, "login failed");
            Login::Refused {
                delay: attempt.failed(),
            }
        }
    }
}

/// Whether `user` may send as `address` (lower case): their own address, or an alias of a
/// local domain that leads to them alone.
pub async fn may_send_as(
    store: &dyn Store,
    config: &Config,
    user: &User,
    address: &str,
) -> Result<bool, StoreError> {
    let address = address.to_lowercase();
    if address == user.address {
        return Ok(true);
    }
    let local = address
        .rsplit_once('@')
        .is_some_and(|(_, d)| config.is_local_domain(d));
    if !local {
        return Ok(false);
    }
    Ok(match super::resolve(store, config, &address).await? {
        Resolution::Targets { targets, .. } => {
            targets.len() == 1 && targets[0].address == user.address
        }
        _ => false,
    })
}
