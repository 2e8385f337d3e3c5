//! The control socket: how `mailroom status`, `config reload` and `doctor` reach the running
//! server of a data directory.
//!
//! It is a Unix socket in Linux's abstract namespace, named after the data directory, so that
//! it needs no file (none is left behind by a crash, no path length limit applies) and a
//! second server started on the same data directory finds the first and refuses to start.
//! Abstract sockets have no file permissions, so the server checks each client's credentials
//! (`SO_PEERCRED`): only the server's own user and root are answered. One request per
//! connection, one JSON line each way, at most [`MAX_REQUEST`] octets.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The longest request line accepted.
pub const MAX_REQUEST: u64 = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// The services' states and the configuration in effect.
    Status,
    /// Read the configuration file again and apply it.
    Reload {
        /// What asked (`config reload`, `config set smtp.max_recipients`, `repair`).
        origin: String,
    },
}

/// The running server's answer to [`Request::Status`]: what `mailroom status --json` prints
/// (a contract scripts read; fields are only ever added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The server's host name.
    pub server: String,
    /// Its process id.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// The config store version in effect.
    pub config_version: i64,
    /// The file against the version in effect: `applied`, `changed (not reloaded)`,
    /// `invalid: …` or `unreadable: …`.
    pub config_file: String,
    /// Keys changed in the file that wait for a restart.
    pub restart_needed: Vec<String>,
    /// Every service, with its state.
    pub services: Vec<crate::services::Status>,
}

/// The running server's answer to [`Request::Reload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// Whether the file was applied (when not, `error` says why and the version in effect is
    /// unchanged).
    pub ok: bool,
    /// The config store version in effect after it.
    pub version: i64,
    /// Whether the file was recorded as a new version (false when it was the same text).
    #[serde(default)]
    pub recorded: bool,
    /// The keys it changed.
    #[serde(default)]
    pub changes: Vec<crate::config::history::Change>,
    /// The keys that wait for a restart.
    #[serde(default)]
    pub restart_needed: Vec<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the server answers, one per [`Request`]; `Error` when it could not (a bad request, a
/// shutdown). On the wire each is the JSON object of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// To [`Request::Status`].
    Status(Box<Status>),
    /// To [`Request::Reload`].
    Reloaded(Reloaded),
    /// The request could not be answered.
    Error {
        /// Why.
        error: String,
    },
}

/// A request with the way back to its client.
pub type Call = (Request, oneshot::Sender<Reply>);

/// Why the running server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No server runs on this data directory.
    #[error("mailroom is not running on {0} (nothing answers on its control socket)")]
    NotRunning(String),
    /// It answered badly or not in time.
    #[error("the running server did not answer properly: {0}")]
    Broken(String),
}

/// The socket's abstract name: the canonical data directory's, hashed.
fn name(data: &Path) -> Vec<u8> {
    let canonical = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let h = crate::config::history::sha256(canonical.as_os_str().as_encoded_bytes());
    format!("mailroom-control-{}", h.get(..32).unwrap_or(&h)).into_bytes()
}

fn addr(data: &Path) -> std::io::Result<UnixAddr> {
    UnixAddr::from_abstract_name(name(data))
}

/// Binds the control socket of `data`; `Ok(None)` when another server already holds it.
pub fn bind(data: &Path) -> std::io::Result<Option<UnixListener>> {
    let a = addr(data)?;
    match std::os::unix::net::UnixListener::bind_addr(&a) {
        Ok(l) => {
            l.set_nonblocking(true)?;
            Ok(Some(UnixListener::from_std(l)?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Answers requests until the supervisor goes away, handing each to it.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    let uid = own_uid();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let allowed = stream
            .peer_cred()
            .map(|c| c.uid() == 0 || Some(c.uid()) == uid)
            .unwrap_or(false);
        if !allowed {
            continue;
        }
        let calls = calls.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(120), answer(stream, calls)).await;
        });
    }
}

/// This process's user id, from the owner of `/proc/self` (no `unsafe` needed).
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r.take(MAX_REQUEST));
    if r.read_line(&mut line).await.is_err() {
        return;
    }
    let shutting_down = || Reply::Error {
        error: "the server is shutting down".into(),
    };
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            if calls.send((req, tx)).await.is_err() {
                shutting_down()
            } else {
                rx.await.unwrap_or_else(|_| shutting_down())
            }
        }
        Err(e) => Reply::Error {
            error: format!("bad request: {e}"),
        },
    };
    let Ok(mut out) = serde_json::to_vec(&reply) else {
        return;
    };
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

/// The services' states of the server running on `data`.
pub async fn status(data: &Path) -> Result<Status, ControlError> {
    match request(data, &Request::Status).await? {
        Reply::Status(s) => Ok(*s),
        other => Err(unexpected(other)),
    }
}

/// Asks the server running on `data` to read its configuration file again.
pub async fn reload(data: &Path, origin: String) -> Result<Reloaded, ControlError> {
    match request(data, &Request::Reload { origin }).await? {
        Reply::Reloaded(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Reply) -> ControlError {
    match r {
        Reply::Error { error } => ControlError::Broken(error),
        other => ControlError::Broken(format!("an answer to another request: {other:?}")),
    }
}

/// Asks the server running on `data`.
pub async fn request(data: &Path, req: &Request) -> Result<Reply, ControlError> {
    let shown = data.display().to_string();
    let a = addr(data).map_err(|e| ControlError::Broken(e.to_string()))?;
    let std = std::os::unix::net::UnixStream::connect_addr(&a)
        .map_err(|_| ControlError::NotRunning(shown.clone()))?;
    std.set_nonblocking(true)
        .map_err(|e| ControlError::Broken(e.to_string()))?;
    let mut s = UnixStream::from_std(std).map_err(|e| ControlError::Broken(e.to_string()))?;
    // Anyone could bind an abstract name first: only a server of this user (or root) is
    // believed.
    let holder = s
        .peer_cred()
        .map_err(|e| ControlError::Broken(e.to_string()))?
        .uid();
    if holder != 0 && Some(holder) != own_uid() {
        return Err(ControlError::Broken(format!(
            "the control socket of {shown} is held by another user (uid {holder}), not by \
             this data directory's server"
        )));
    }
    let work = async {
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        s.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(&mut s)
            .take(16 * 1024 * 1024)
            .read_line(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_str::<Reply>(&reply).map_err(|e| format!("{e}: {reply:?}"))
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .map_err(|_| ControlError::Broken("no answer within 60 s".into()))?
        .map_err(ControlError::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reply reads back as what it was (the client tells them apart by their fields), and
    /// `status`'s keys are those `mailroom status --json` has always printed.
    #[test]
    fn replies_read_back_as_what_they_were() {
        let status = Reply::Status(Box::new(Status {
            server: "mx.example.test".into(),
            pid: 7,
            started: "2026-12-07T20:00:00Z".into(),
            config_version: 3,
            config_file: "applied".into(),
            restart_needed: vec!["server.hostname".into()],
            services: Vec::new(),
        }));
        let refused = Reply::Reloaded(Reloaded {
            ok: false,
            version: 3,
            recorded: false,
            changes: Vec::new(),
            restart_needed: Vec::new(),
            error: Some("does not load".into()),
        });
        let error = Reply::Error {
            error: "bad request".into(),
        };
        for r in [status.clone(), refused, error] {
            let wire = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&wire).unwrap(), r, "{wire}");
        }
        let v = serde_json::to_value(&status).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "config_file",
                "config_version",
                "pid",
                "restart_needed",
                "server",
                "services",
                "started"
            ]
        );
    }
}
