//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the secret kept for each user, and the server's side of
//! an exchange. The client proves it knows the password without sending it, and the server
//! proves it holds the user's secret, so neither a passive listener nor a server that only
//! pretends to be this one learns anything it can log in with.
//!
//! The secret (the salt, the iteration count, StoredKey and ServerKey) is made from the
//! password when it is set (`mailroom user add`, `user passwd`) and stored next to its Argon2
//! hash ([`super::password`]). A user whose password was set before mailroom knew SCRAM has no
//! such secret until they next log in with PLAIN or LOGIN (the secret is made then) or the
//! password is set again; until then a SCRAM login fails like a wrong password.
//!
//! A name that is no user gets a salt that is the same at each try (an HMAC of the name under a
//! key made when the process starts), so the first server message does not tell which names
//! exist.

use base64::Engine;
use hmac::{Hmac, Mac};
use mailroom_proto::scram::{self, ClientFinal, ClientFirst};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The iteration count of new secrets: well above RFC 7677 §4's minimum of 4,096. A stolen
/// database can be guessed against at PBKDF2's speed rather than Argon2id's: the price of a
/// mechanism in which the password never crosses the wire.
pub const ITERATIONS: u32 = 10_000;

/// The stored form's prefix, as Dovecot writes it.
const PREFIX: &str = "{SCRAM-SHA-256}";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // An HMAC takes a key of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// SASLprep (RFC 4013) of a password or name, as RFC 5802 §2.2 asks; a string it refuses is
/// used as it is (it can then only match a client that did the same).
pub fn prep(s: &str) -> String {
    stringprep::saslprep(s)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| s.to_string())
}

/// One user's SCRAM-SHA-256 secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// A secret for `password`, with a new random salt.
    pub fn new(password: &str) -> Secret {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Secret::derive(password, salt, ITERATIONS)
    }

    /// RFC 5802 §3: SaltedPassword = Hi(password, salt, i); StoredKey = H(HMAC(SaltedPassword,
    /// "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key").
    fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Secret {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(prep(password).as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Secret {
            iterations,
            salt,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// The stored form: `{SCRAM-SHA-256}i,salt,StoredKey,ServerKey` (base64), as Dovecot's.
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{},{},{},{}",
            self.iterations,
            b64().encode(&self.salt),
            b64().encode(self.stored_key),
            b64().encode(self.server_key)
        )
    }

    /// Reads the stored form; `None` if it is not one.
    pub fn decode(s: &str) -> Option<Secret> {
        let mut parts = s.strip_prefix(PREFIX)?.split(',');
        let iterations = parts.next()?.parse().ok().filter(|&i| i > 0)?;
        let salt = b64().decode(parts.next()?).ok()?;
        let stored_key = b64().decode(parts.next()?).ok()?.try_into().ok()?;
        let server_key = b64().decode(parts.next()?).ok()?.try_into().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Secret {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

static DECOY_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// The file that keeps the key of made-up salts across restarts.
pub const DECOY_KEY_FILE: &str = "scram-decoy.key";

/// Loads the key of made-up salts from `DATA/scram-decoy.key`, making it the first time (mode
/// 0600), so that an unknown name's salt stays the same across restarts as a real one does.
/// Without it (an error is logged), the key is made anew in each process.
pub fn load_decoy_key(data: &std::path::Path) {
    let path = data.join(DECOY_KEY_FILE);
    let key = match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => k.try_into().ok(),
        _ => {
            let mut k = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut k);
            match crate::fsutil::write_atomic(&path, &k, 0o600) {
                Ok(()) => Some(k),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot keep the SCRAM decoy key");
                    None
                }
            }
        }
    };
    if let Some(k) = key {
        let _ = DECOY_KEY.set(k);
    }
}

/// The salt shown for an account that is no user (or has no secret): the same at each try.
fn decoy_salt(account: &str) -> Vec<u8> {
    let key = DECOY_KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        k
    });
    hmac(key, account.as_bytes())[..16].to_vec()
}

/// An exchange after the client's first message: what the server answered, and what it needs
/// to check the proof.
#[derive(Debug)]
pub struct Exchange {
    first: ClientFirst,
    server_first: String,
    nonce: String,
    secret: Option<Secret>,
}

impl Exchange {
    /// Answers `first` for `account` (the user the name means) with `secret` (`None`: no such
    /// user, or no secret; the answer looks the same and the proof will fail).
    pub fn start(first: ClientFirst, account: &str, secret: Option<Secret>) -> Exchange {
        let mut ours = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut ours);
        let nonce = format!("{}{}", first.nonce, b64().encode(ours));
        let (salt, iterations) = match &secret {
            Some(s) => (s.salt.clone(), s.iterations),
            None => (decoy_salt(account), ITERATIONS),
        };
        let server_first = scram::server_first(&nonce, &salt, iterations);
        Exchange {
            first,
            server_first,
            nonce,
            secret,
        }
    }

    /// The server's first message.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client's proof (RFC 5802 §3); the server's final message when it holds.
    pub fn finish(&self, last: &ClientFinal) -> Option<String> {
        let secret = self.secret.as_ref()?;
        if last.channel_binding != self.first.gs2_header.as_bytes()
            || last.nonce != self.nonce
            || last.proof.len() != 32
        {
            return None;
        }
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, last.without_proof
        );
        let signature = hmac(&secret.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        if !bool::from(stored.ct_eq(&secret.stored_key)) {
            return None;
        }
        Some(scram::server_final(&hmac(
            &secret.server_key,
            auth_message.as_bytes(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, written out from RFC 5802 §3, to drive the server.
    fn client_final(ex: &Exchange, password: &str, bare: &str) -> (String, [u8; 32]) {
        let fields: Vec<&str> = ex.server_first().split(',').collect();
        let nonce = fields[0].strip_prefix("r=").unwrap();
        let salt = b64().decode(fields[1].strip_prefix("s=").unwrap()).unwrap();
        let i: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, i, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let without = format!("c=biws,r={nonce}");
        let am = format!("{bare},{},{without}", ex.server_first());
        let sig = hmac(&stored, am.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hmac(&hmac(&salted, b"Server Key"), am.as_bytes());
        (format!("{without},p={}", b64().encode(proof)), server_sig)
    }

    fn exchange(secret: Option<Secret>) -> (Exchange, &'static str) {
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let first = ClientFirst::parse(format!("n,,{bare}").as_bytes()).unwrap();
        (Exchange::start(first, "user@x.test", secret), bare)
    }

    #[test]
    fn rfc_7677_vector() {
        // RFC 7677 §3: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
        let salt = b64().decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let secret = Secret::derive("pencil", salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let ex = Exchange {
            first,
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                           s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            secret: Some(secret),
        };
        let last = ClientFinal::parse(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(
            ex.finish(&last).as_deref(),
            Some("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
    }

    #[test]
    fn the_right_password_proves_itself_and_the_server_too() {
        let secret = Secret::new("correct horse");
        let back = Secret::decode(&secret.encode()).unwrap();
        assert_eq!(back, secret, "the stored form round-trips");
        let (ex, bare) = exchange(Some(secret));
        let (last, server_sig) = client_final(&ex, "correct horse", bare);
        let v = ex.finish(&ClientFinal::parse(last.as_bytes()).unwrap());
        assert_eq!(v, Some(scram::server_final(&server_sig)));
        let (wrong, _) = client_final(&ex, "battery staple", bare);
        assert_eq!(
            ex.finish(&ClientFinal::parse(wrong.as_bytes()).unwrap()),
            None
        );
        // Another nonce (a replay into another exchange) fails.
        let (ex2, _) = exchange(Some(Secret::new("correct horse")));
        assert_eq!(
            ex2.finish(&ClientFinal::parse(last.as_bytes()).unwrap()),
            None
        );
    }

    #[test]
    fn an_unknown_name_looks_like_a_user_and_never_passes() {
        let (a, bare) = exchange(None);
        let (b, _) = exchange(None);
        let salt = |e: &Exchange| e.server_first().split(',').nth(1).unwrap().to_string();
        assert_eq!(salt(&a), salt(&b), "the same salt at each try");
        assert!(a.server_first().ends_with(",i=10000"));
        let (last, _) = client_final(&a, "anything", bare);
        assert_eq!(
            a.finish(&ClientFinal::parse(last.as_bytes()).unwrap()),
            None
        );
        assert_eq!(Secret::decode("$argon2id$v=19$..."), None);
        assert_eq!(Secret::decode("{SCRAM-SHA-256}0,AA==,AA==,AA=="), None);
    }
}
