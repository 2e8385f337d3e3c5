//! `/metrics` over HTTP on `metrics.listen`: one `GET`, optionally with `Authorization: Bearer
//! TOKEN` (`metrics.token`), answered with the exposition and the connection closed. A small
//! HTTP/1.1 responder of its own: it serves one path to one kind of client (Prometheus), with
//! a bounded request (8 KiB, 10 seconds); the HTTP API of the next issue brings a full server.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::org::view::OrgView;
use crate::services::Services;
use crate::store::QueueAdmin;

/// What a scrape reads the gauges from.
pub struct Sources {
    /// The queues.
    pub store: Arc<dyn QueueAdmin>,
    /// The services' states.
    pub services: Arc<Services>,
    /// The organization, for link states.
    pub org: Arc<OrgView>,
    /// The certificate of the TLS listeners.
    pub certificate: std::path::PathBuf,
    /// The bearer token a scrape must give, if any.
    pub token: Option<String>,
}

/// At most this many scrapes are answered at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, src: Arc<Sources>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::select! {
            a = listener.accept() => {
                let conn = match a {
                    Ok((conn, _)) => conn,
                    Err(e) => {
                        // (Out of descriptors, say: wait rather than spin.)
                        tracing::warn!("metrics: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let src = src.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(conn, &src)).await;
                    drop(slot);
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// One scrape at a time sets the gauges and reads them.
static SCRAPE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reads one request head and answers it.
async fn answer(mut conn: TcpStream, src: &Sources) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.len() > 8192 {
            return reply(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    if method != "GET" && method != "HEAD" {
        return reply(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    if path.split('?').next() != Some("/metrics") {
        return reply(&mut conn, "404 Not Found", "text/plain", "see /metrics\n").await;
    }
    if let Some(token) = &src.token {
        let given = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use subtle::ConstantTimeEq as _;
            bool::from(g.as_bytes().ct_eq(token.as_bytes()))
        });
        if !ok {
            return reply(
                &mut conn,
                "401 Unauthorized",
                "text/plain",
                "a bearer token is required\n",
            )
            .await;
        }
    }
    let body = {
        let _one = SCRAPE.lock().await;
        scrape(src).await;
        crate::metrics::get().encode()
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    reply(
        &mut conn,
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
        &body,
    )
    .await
}

async fn reply(conn: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

/// Sets the gauges from the server's state now.
async fn scrape(src: &Sources) {
    let m = crate::metrics::get();
    let now = chrono::Utc::now();
    match src.store.queues(now).await {
        Ok(queues) => {
            m.queue_recipients.reset();
            m.queue_oldest_age.reset();
            for q in queues {
                let key = q.kind.key();
                m.queue_recipients
                    .with_label_values(&[key.as_str()])
                    .set(i64::try_from(q.recipients).unwrap_or(i64::MAX));
                let age = q
                    .oldest
                    .map(|o| (now - o).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                m.queue_oldest_age
                    .with_label_values(&[key.as_str()])
                    .set(age);
            }
        }
        Err(e) => tracing::warn!("metrics: cannot read the queues: {e}"),
    }
    m.service_state.reset();
    for s in src.services.snapshot() {
        for state in ["starting", "running", "degraded", "stopped", "failed"] {
            let now_in = format!("{:?}", s.state).eq_ignore_ascii_case(state);
            m.service_state
                .with_label_values(&[s.name.as_str(), state])
                .set(i64::from(now_in));
        }
    }
    m.link_up.reset();
    if let Some(snap) = src.org.get() {
        for name in snap.state.dir.servers.keys() {
            let up = snap.state.links.is_up(name) || name == snap.me();
            m.link_up
                .with_label_values(&["server", name.as_str()])
                .set(i64::from(up));
        }
        for name in snap.state.dir.connectors.keys() {
            let up =
                crate::org::links::connector_state(&snap.state.dir, &snap.state.links, name).up;
            m.link_up
                .with_label_values(&["connector", name.as_str()])
                .set(i64::from(up));
        }
    }
    if let Some(t) = crate::tls::not_after(&src.certificate) {
        m.certificate_expiry.set(t as f64);
    }
}
