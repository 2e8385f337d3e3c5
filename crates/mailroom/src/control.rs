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

/// A request with the way back to its client.
pub type Call = (Request, oneshot::Sender<serde_json::Value>);

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
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            if calls.send((req, tx)).await.is_err() {
                serde_json::json!({"error": "the server is shutting down"})
            } else {
                rx.await
                    .unwrap_or_else(|_| serde_json::json!({"error": "the server is shutting down"}))
            }
        }
        Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
    };
    let mut out = reply.to_string().into_bytes();
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

/// Asks the server running on `data`.
pub async fn request(data: &Path, req: &Request) -> Result<serde_json::Value, ControlError> {
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
        serde_json::from_str::<serde_json::Value>(&reply).map_err(|e| format!("{e}: {reply:?}"))
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .map_err(|_| ControlError::Broken("no answer within 60 s".into()))?
        .map_err(ControlError::Broken)
}
