//! Password hashing: Argon2id (RFC 9106) in PHC string format, with a random salt per user.
//!
//! The stored credential is the Argon2id hash, then a space and the user's SCRAM-SHA-256
//! secret ([`super::scram::Secret`]), both made from the password when it is set: one value, so
//! that setting a password replaces both at once and an old secret can never outlive it. A
//! credential stored before SCRAM was known is the hash alone ([`with_scram`] completes it).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// Checks a password against a stored hash. A malformed stored hash never matches. (The
/// memory comes from the allocator each time: for the command line. The server checks on
/// its verifier threads, [`verify_bounded`].)
pub fn verify(stored: &str, password: &str) -> bool {
    verify_with(&mut Vec::new(), stored, password)
}

/// The most Argon2 memory a stored hash may ask for (256 MiB): a hash that asks for more is
/// taken for damaged and matches nothing, rather than letting one row take the memory.
const MAX_BLOCKS: u32 = 256 * 1024;

/// [`verify`] in `blocks`, Argon2's working memory, which it grows to what the hash needs and
/// leaves allocated for the next check.
fn verify_with(blocks: &mut Vec<Block>, stored: &str, password: &str) -> bool {
    VERIFIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(h) = PasswordHash::new(phc(stored)) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h))
    else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let need = params.block_count();
    if need > MAX_BLOCKS as usize {
        return false;
    }
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..need])
        .is_err()
    {
        return false;
    }
    // (Output's comparison takes the same time wherever the first difference is.)
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// The verifier threads: each check takes tens of milliseconds of one core and 19 MiB of
/// memory (Argon2id's parameters). They run on `n` threads of their own (one per core unless
/// `server.max_password_checks` says), each with its Argon2 memory allocated once and reused,
/// so that a flood of logins queues for them and costs bounded memory at any concurrency.
/// (Issue 21: on tokio's blocking pool each check's 19 MiB stayed behind in a new thread's
/// allocator arena; wrong logins from many addresses took the server to 4.7 GB.)
struct Verifiers {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    /// A check holds one while it waits or runs: at most `n` at once are handed over.
    slots: tokio::sync::Semaphore,
}

type Job = (String, String, tokio::sync::oneshot::Sender<bool>);

fn verifiers() -> &'static Verifiers {
    VERIFIERS.get_or_init(|| Verifiers::start(cores()))
}

static VERIFIERS: std::sync::OnceLock<Verifiers> = std::sync::OnceLock::new();

impl Verifiers {
    fn start(n: usize) -> Verifiers {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    let mut blocks = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((stored, password, reply)) = job else {
                            return;
                        };
                        let _ = reply.send(verify_with(&mut blocks, &stored, &password));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password verifier thread");
            }
        }
        Verifiers {
            jobs: std::sync::Mutex::new(tx),
            slots: tokio::sync::Semaphore::new(n),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets how many verifications may run at once (`server.max_password_checks`; 0: one per
/// core). Takes effect if no verification has run yet in this process (the server sets it as
/// it starts).
pub fn set_concurrency(n: usize) {
    let n = if n == 0 { cores() } else { n };
    let _ = VERIFIERS.set(Verifiers::start(n));
}

static IN_PROGRESS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Verifications running now (at most one per verifier thread).
pub fn in_progress() -> usize {
    IN_PROGRESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`verify`] on a verifier thread, waiting for a free one first (see [`Verifiers`]). A check
/// that cannot be run (no verifier thread) fails closed: the password does not match.
pub async fn verify_bounded(stored: String, password: String) -> bool {
    let v = verifiers();
    let Ok(_slot) = v.slots.acquire().await else {
        return false;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = v
        .jobs
        .lock()
        .map(|j| j.send((stored, password, tx)).is_ok())
        .unwrap_or(false);
    if !sent {
        return false;
    }
    IN_PROGRESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ok = rx.await.unwrap_or(false);
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

    /// The hash checked for a name that is no user must cost a whole check (no hint in the
    /// timing): it parses, and its salt and parameters are usable, so Argon2 runs on it.
    #[test]
    fn the_dummy_costs_a_whole_check() {
        let h = PasswordHash::new(dummy()).unwrap();
        let params = Params::try_from(&h).unwrap();
        assert_eq!(params.block_count(), 19456);
        let mut salt = [0u8; 64];
        assert!(h.salt.unwrap().decode_b64(&mut salt).is_ok());
        assert!(h.hash.is_some());
        let mut blocks = Vec::new();
        assert!(!verify_with(&mut blocks, dummy(), "x"));
        assert_eq!(
            blocks.len(),
            19456,
            "the memory was filled: the hash was computed"
        );
        // The same memory serves the next check.
        let real = hash("pw").unwrap();
        let before = blocks.as_ptr();
        assert!(verify_with(&mut blocks, &real, "pw"));
        assert_eq!(blocks.as_ptr(), before, "no new allocation");
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
