//! Certificates from an ACME CA (RFC 8555), with instant-acme: the account is made once and
//! kept (`DATA/acme/account.json`), an order for `tls.acme.names` is validated with `http-01`
//! (RFC 8555 §8.3; the answers are served on `tls.acme.http_listen`), and the chain and key are
//! written into `tls.certificate` and `tls.private_key`. Every TLS listener reads the pair
//! again when the files change ([`super::Tls`]), so a renewal needs no restart.
//!
//! The certificate is looked at every `check_interval`: one that was not issued by this ACME
//! account (the self-signed one of `init`) or that expires within `renew_before` is replaced.
//! The outcome of the last attempt is kept in `DATA/acme/status.json`, which `doctor` reads
//! (`acme-failed`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use crate::config::{AcmeConfig, Config};

/// The directory of the ACME state in the data directory.
pub const DIR: &str = "acme";

/// The outcome of the last attempt, for `doctor`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The error, or `None` when a certificate was issued (or none was due).
    pub error: Option<String>,
    /// The names the certificate in place was issued for by this CA, if it was.
    pub issued_for: Vec<String>,
    /// Its expiry (Unix seconds), if it was issued here.
    pub not_after: Option<i64>,
}

/// Reads the last status of a data directory.
pub fn status(data: &Path) -> Option<Status> {
    let text = std::fs::read(data.join(DIR).join("status.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The `http-01` answers being served: token → key authorization.
type Answers = Arc<Mutex<HashMap<String, String>>>;

/// Keeps the certificate issued and fresh until `shutdown`.
pub async fn run(config: Arc<Config>, data: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let Some(acme) = config.tls.acme.clone() else {
        return;
    };
    let answers: Answers = Arc::default();
    match tokio::net::TcpListener::bind(acme.http_listen).await {
        Ok(l) => {
            tokio::spawn(serve_http01(l, answers.clone(), shutdown.clone()));
        }
        Err(e) => tracing::error!(addr = %acme.http_listen, "acme: cannot listen for http-01: {e}"),
    }
    let names = if acme.names.is_empty() {
        vec![config.server.hostname.clone()]
    } else {
        acme.names.clone()
    };
    let cert = data.join(&config.tls.certificate);
    let key = data.join(&config.tls.private_key);
    loop {
        let previous = status(&data);
        let due = match &previous {
            Some(Status {
                issued_for,
                not_after: Some(t),
                ..
            }) if *issued_for == names && super::not_after(&cert) == Some(*t) => {
                let left = *t - chrono::Utc::now().timestamp();
                left < acme.renew_before.as_secs() as i64
            }
            _ => true,
        };
        if due {
            let outcome = obtain(&acme, &names, &answers, &data, &cert, &key).await;
            let st = match outcome {
                Ok(not_after) => {
                    tracing::info!(names = ?names, "acme: certificate issued; the listeners take it at their next session");
                    Status {
                        at: chrono::Utc::now(),
                        error: None,
                        issued_for: names.clone(),
                        not_after: Some(not_after),
                    }
                }
                Err(e) => {
                    tracing::error!(names = ?names, "acme: no certificate: {e}");
                    Status {
                        at: chrono::Utc::now(),
                        error: Some(e),
                        ..previous.unwrap_or(Status {
                            at: chrono::Utc::now(),
                            error: None,
                            issued_for: Vec::new(),
                            not_after: None,
                        })
                    }
                }
            };
            let dir = data.join(DIR);
            let written = std::fs::create_dir_all(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let json = serde_json::to_vec_pretty(&st).map_err(|e| e.to_string())?;
                    crate::fsutil::write_atomic(&dir.join("status.json"), &json, 0o600)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = written {
                tracing::error!("acme: cannot record the status: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(acme.check_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One order: account, authorizations by `http-01`, finalization, and the files written.
/// Returns the new certificate's expiry (Unix seconds).
async fn obtain(
    acme: &AcmeConfig,
    names: &[String],
    answers: &Answers,
    data: &Path,
    cert: &Path,
    key: &Path,
) -> Result<i64, String> {
    let account = account(acme, data).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut authorizations = order.authorizations();
    while let Some(a) = authorizations.next().await {
        let mut authz = a.map_err(|e| format!("authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            s => return Err(format!("an authorization is {s:?}")),
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or("the CA offers no http-01 challenge")?;
        let answer = challenge.key_authorization().as_str().to_string();
        if let Ok(mut a) = answers.lock() {
            a.insert(challenge.token.clone(), answer);
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {e}"))?;
    }
    let retry = RetryPolicy::default().timeout(Duration::from_secs(60));
    let st = order
        .poll_ready(&retry)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if st != OrderStatus::Ready {
        return Err(format!("the order is {st:?} after validation"));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    if let Ok(mut a) = answers.lock() {
        a.clear();
    }
    // Key first: a listener that reloads between the two writes sees an old pair that no
    // longer matches and keeps its previous configuration until the chain follows.
    crate::fsutil::write_atomic(key, key_pem.as_bytes(), 0o600)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    crate::fsutil::write_atomic(cert, chain_pem.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    super::not_after(cert).ok_or_else(|| "the issued certificate does not parse".to_string())
}

/// The account: restored from `DATA/acme/account.json`, or made and saved.
async fn account(acme: &AcmeConfig, data: &Path) -> Result<Account, String> {
    let builder = match &acme.ca_certificate {
        Some(root) => Account::builder_with_root(data.join(root)),
        None => Account::builder(),
    }
    .map_err(|e| format!("HTTPS client: {e}"))?;
    let file = data.join(DIR).join("account.json");
    if let Ok(text) = std::fs::read(&file) {
        if let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&text) {
            return builder
                .from_credentials(creds)
                .await
                .map_err(|e| format!("account: {e}"));
        }
    }
    let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {e}", acme.directory))?;
    let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(data.join(DIR))
        .and_then(|()| crate::fsutil::write_atomic(&file, &json, 0o600))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(account)
}

/// Answers `GET /.well-known/acme-challenge/TOKEN` (RFC 8555 §8.3) with the key
/// authorization, and 404 otherwise; one request per connection, bounded in size and time.
async fn serve_http01(
    listener: tokio::net::TcpListener,
    answers: Answers,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            a = listener.accept() => {
                let Ok((mut conn, _)) = a else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let answers = answers.clone();
                tokio::spawn(async move {
                    let work = async {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                            let n = conn.read(&mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            head.extend_from_slice(buf.get(..n).unwrap_or_default());
                        }
                        let text = String::from_utf8_lossy(&head);
                        let path = text.split(' ').nth(1).unwrap_or_default();
                        let answer = path
                            .strip_prefix("/.well-known/acme-challenge/")
                            .and_then(|t| answers.lock().ok()?.get(t).cloned());
                        let (status, body) = match answer {
                            Some(a) => ("200 OK", a),
                            None => ("404 Not Found", String::new()),
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        conn.write_all(reply.as_bytes()).await?;
                        conn.shutdown().await
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}
