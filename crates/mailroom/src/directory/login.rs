//! Logging in, for every protocol that takes a password (SMTP AUTH, POP3, later IMAP), by
//! password or by SCRAM-SHA-256, and
//! which addresses a logged-in user may send as.

use std::net::IpAddr;
use std::time::Duration;

use mailroom_proto::scram::{ClientFinal, ClientFirst};

use super::password;
use super::scram::{self, Exchange};
use crate::config::Config;
use crate::limits::{Attempt, AuthGuard, Lockout};
use crate::model::Resolution;
use crate::store::{Directory, StoreError, User};

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
    store: &dyn Directory,
    config: &Config,
    guard: &AuthGuard,
    ip: IpAddr,
    protocol: &'static str,
    name: &str,
    pass: &str,
) -> Login {
    let account = account(config, name);
    let attempt = match guard.attempt(ip, &account) {
        Ok(a) => a,
        Err(l) => {
            refused(protocol, ip, &account, &l);
            return Login::LockedOut(l);
        }
    };
    let found = match store.user_auth(&account).await {
        Ok(f) => f,
        Err(e) => return Login::Unavailable(e),
    };
    let (hash, user) = match found {
        Some((u, h)) => (h, Some(u)),
        None => (password::dummy().to_string(), None),
    };
    // The address's turn first (a few checks in flight per address), then a verifier's.
    let Some(turn) = guard.turn(ip).await else {
        refused(protocol, ip, &account, &Lockout::Address);
        return Login::LockedOut(Lockout::Address);
    };
    let verified = password::verify_bounded(hash.clone(), pass.to_string()).await;
    drop(turn);
    match (verified, user) {
        (true, Some(u)) => {
            attempt.succeeded();
            if let Some(new) = password::with_scram(&hash, pass) {
                // A credential from before SCRAM: completed now that the password is known.
                match store.user_password_upgrade(&account, hash, new).await {
                    Ok(true) => tracing::info!(user = %account, "SCRAM-SHA-256 secret made"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot store the SCRAM secret"),
                }
            }
            Login::Accepted(u)
        }
        _ => {
            failed(protocol, ip, &account, "PLAIN/LOGIN");
            Login::Refused {
                delay: attempt.failed(),
            }
        }
    }
}

/// The log line of a failed login, the same for every protocol (a documented contract that
/// fail2ban's filter reads, `docs/logging.md`): `authentication failed protocol=… client_addr=…
/// user=… mechanism=…`. Only wrong names and passwords write it, never a success.
fn failed(protocol: &'static str, ip: IpAddr, account: &str, mechanism: &'static str) {
    crate::metrics::get()
        .auth_failures
        .with_label_values(&[protocol])
        .inc();
    tracing::warn!(
        target: "mailroom::auth",
        protocol = %protocol,
        client_addr = %ip,
        user = %account,
        mechanism = %mechanism,
        "authentication failed"
    );
}

/// The log line of a login refused without a password check (the address or the account is
/// locked out after failures): `authentication refused protocol=… client_addr=… user=… why=…`.
fn refused(protocol: &'static str, ip: IpAddr, account: &str, why: &Lockout) {
    tracing::info!(
        target: "mailroom::auth",
        protocol = %protocol,
        client_addr = %ip,
        user = %account,
        why = ?why,
        "authentication refused"
    );
}

/// A SCRAM-SHA-256 login (RFC 7677) after the client's first message: it counts as a failure
/// from now on, as a password login does, until [`ScramLogin::finish`] says otherwise.
#[derive(Debug)]
pub struct ScramLogin<'g> {
    attempt: Attempt<'g>,
    /// The user exists but has no secret yet: the failure is not theirs to pay for.
    no_secret: bool,
    exchange: Exchange,
    user: Option<User>,
    account: String,
    ip: IpAddr,
    protocol: &'static str,
}

/// Starts a SCRAM-SHA-256 login from `ip` with the client's first message. The `Err` is the
/// login's end (locked out, or the directory unreadable). A name that is no user, or a user
/// without a SCRAM secret, gets an answer that looks the same and fails at the proof.
pub async fn scram_start<'g>(
    store: &dyn Directory,
    config: &Config,
    guard: &'g AuthGuard,
    ip: IpAddr,
    protocol: &'static str,
    first: ClientFirst,
) -> Result<ScramLogin<'g>, Login> {
    let account = account(config, &scram::prep(&first.username));
    let attempt = guard.attempt(ip, &account).map_err(|l| {
        refused(protocol, ip, &account, &l);
        Login::LockedOut(l)
    })?;
    let found = store
        .user_auth(&account)
        .await
        .map_err(Login::Unavailable)?;
    let (user, secret) = match found {
        Some((u, h)) => {
            let secret = password::scram_secret(&h);
            if secret.is_none() {
                tracing::info!(
                    user = %account,
                    "no SCRAM-SHA-256 secret for this user yet: it is made at their next PLAIN \
                     or LOGIN login, or when the password is set again"
                );
            }
            (Some(u), secret)
        }
        None => (None, None),
    };
    Ok(ScramLogin {
        attempt,
        no_secret: user.is_some() && secret.is_none(),
        exchange: Exchange::start(first, &account, secret),
        user,
        account,
        ip,
        protocol,
    })
}

impl ScramLogin<'_> {
    /// The server's first message, to send to the client.
    pub fn server_first(&self) -> &str {
        self.exchange.server_first()
    }

    /// Checks the client's final message: the outcome, and the server's final message (which
    /// proves this server to the client) when the login is accepted.
    pub fn finish(self, last: &[u8]) -> (Login, Option<String>) {
        let verified = ClientFinal::parse(last)
            .ok()
            .and_then(|f| self.exchange.finish(&f));
        match (verified, self.user) {
            (Some(v), Some(u)) => {
                self.attempt.succeeded();
                (Login::Accepted(u), Some(v))
            }
            _ if self.no_secret => {
                // Not counted: a client that always picks SCRAM must not lock its user out
                // before a PLAIN login (or a new password) makes the secret.
                drop(self.attempt);
                (
                    Login::Refused {
                        delay: Duration::ZERO,
                    },
                    None,
                )
            }
            _ => {
                failed(self.protocol, self.ip, &self.account, "SCRAM-SHA-256");
                let delay = self.attempt.failed();
                (Login::Refused { delay }, None)
            }
        }
    }
}

/// Whether `user` may send as `address` (lower case): their own address, or an alias of a
/// local domain that leads to them alone.
pub async fn may_send_as(
    store: &dyn Directory,
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
