//! Password hashing: Argon2id (RFC 9106) in PHC string format, with a random salt per user.
//!
//! The stored credential is the Argon2id hash, then a space and the user's SCRAM-SHA-256
//! secret ([`super::scram::Secret`]), both made from the password when it is set: one value, so
//! that setting a password replaces both at once and an old secret can never outlive it. A
//! credential stored before SCRAM was known is the hash alone ([`with_scram`] completes it).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::scram::Secret;

/// The credential to store for a password: its hash and its SCRAM secret.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())?;
    Ok(format!("{phc} {}", Secret::new(password).encode()))
}

/// The hash part of a stored credential.
fn phc(stored: &str) -> &str {
    stored.split_once(' ').map_or(stored, |(h, _)| h)
}

/// The SCRAM-SHA-256 secret of a stored credential, if it has one.
pub fn scram_secret(stored: &str) -> Option<Secret> {
    stored.split_once(' ').and_then(|(_, s)| Secret::decode(s))
}

/// A credential stored without a SCRAM secret, completed from the `password` that was just
/// verified against it; `None` when it has one already.
pub fn with_scram(stored: &str, password: &str) -> Option<String> {
    if scram_secret(stored).is_some() {
        return None;
    }
    Some(format!(
        "{} {}",
        phc(stored),
        Secret::new(password).encode()
    ))
}

static VERIFIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Verifications made since the process started (each costs the same, whatever the outcome).
pub fn verifications() -> u64 {
    VERIFIED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Checks a password against a stored hash. A malformed stored hash never matches.
pub fn verify(stored: &str, password: &str) -> bool {
    VERIFIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match PasswordHash::new(phc(stored)) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Verifications run at once, at most: each takes tens of milliseconds of one core and 19 MiB
/// of memory (Argon2id's parameters), so a flood of logins must queue for them rather than
/// take every core and all memory. One per core unless `server.max_password_checks` says.
fn verifiers() -> &'static tokio::sync::Semaphore {
    VERIFIERS.get_or_init(|| tokio::sync::Semaphore::new(cores()))
}

static VERIFIERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets how many verifications may run at once (`server.max_password_checks`; 0: one per
/// core). Takes effect if no verification has run yet in this process (the server sets it as
/// it starts).
pub fn set_concurrency(n: usize) {
    let n = if n == 0 { cores() } else { n };
    let _ = VERIFIERS.set(tokio::sync::Semaphore::new(n));
}

static IN_PROGRESS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Verifications running now (at most one per core).
pub fn in_progress() -> usize {
    IN_PROGRESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`verify`] on a blocking thread, waiting for a free verifier first (see [`verifiers`]).
pub async fn verify_bounded(stored: String, password: String) -> bool {
    let Ok(_permit) = verifiers().acquire().await else {
        return false;
    };
    IN_PROGRESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ok = tokio::task::spawn_blocking(move || verify(&stored, &password))
        .await
        .unwrap_or(false);
    IN_PROGRESS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    ok
}

/// A hash that no password matches, verified against when the user does not exist so that a
/// wrong user name costs the same time as a wrong password (no hint whether the user exists).
pub fn dummy() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2gQh4eD8qF3o3E3tYx1lq2Oq8sZ1l2F8mQwWg8m5Zq0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn verifications_are_bounded_to_one_per_core() {
        let h = hash("pw").unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..(4 * cores + 4) {
            let h = h.clone();
            tasks.spawn(verify_bounded(h, "wrong".into()));
        }
        let mut most = 0;
        while !tasks.is_empty() {
            most = most.max(in_progress());
            while tasks.try_join_next().is_some() {}
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(most >= 1, "verifications were seen running");
        assert!(
            most <= cores,
            "{most} verifications ran at once on {cores} cores"
        );
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(scram_secret(&h).is_some() && with_scram(&h, "correct horse").is_none());
        assert!(verify(&h, "correct horse"));
        let old = phc(&h).to_string();
        assert!(
            verify(&old, "correct horse"),
            "a credential from before SCRAM"
        );
        let completed = with_scram(&old, "correct horse").unwrap();
        assert!(completed.starts_with(&old) && scram_secret(&completed).is_some());
        assert!(!verify(&h, "wrong"));
        assert!(!verify("not a hash", "x"));
        assert!(!verify(dummy(), "x"));
    }
}
