//! Helpers shared by the crate's tests: a store in a temporary directory, a configuration, and an
//! SMTP/POP3 client speaking over in-memory I/O.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use crate::config::Config;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// A store in a fresh temporary directory (kept alive with the store).
pub struct TempStore {
    /// The store.
    pub store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl TempStore {
    /// A new empty store.
    pub fn new() -> TempStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open store");
        TempStore { store, _dir: dir }
    }

    /// The directory the store is in.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The store as a trait object.
    pub fn dyn_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// The configuration tests use: domain `example.com`, host `mx.example.com`.
pub fn config() -> Config {
    Config::new("example.com", "mx.example.com")
}

/// A client peer address.
pub fn peer() -> SocketAddr {
    "192.0.2.10:40000".parse().expect("addr")
}

/// What a test client talks over: an in-memory stream, in clear or under TLS.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// The client end of an in-memory connection, with a tiny reply language.
pub struct Client {
    io: Option<Box<dyn ClientIo>>,
    buf: Vec<u8>,
}

/// A server TLS set-up with a new self-signed certificate for `mx.example.com`, and a client
/// configuration that trusts it (the directory holds the files).
pub fn tls_pair() -> (
    Arc<crate::tls::Tls>,
    Arc<rustls::ClientConfig>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = crate::config::TlsConfig::default();
    let cert = dir.path().join(&cfg.certificate);
    crate::tls::self_signed("mx.example.com", &cert, &dir.path().join(&cfg.private_key))
        .expect("certificate");
    let pem = std::fs::read(&cert).expect("read certificate");
    let client = crate::tls::client_trusting(&pem).expect("client config");
    (
        crate::tls::Tls::new(dir.path(), &cfg),
        Arc::new(client),
        dir,
    )
}

impl Client {
    /// Wraps the client end.
    pub fn new(io: DuplexStream) -> Client {
        Client {
            io: Some(Box::new(io)),
            buf: Vec::new(),
        }
    }

    fn io(&mut self) -> &mut Box<dyn ClientIo> {
        self.io
            .as_mut()
            .expect("connection lost in a TLS handshake")
    }

    /// Starts TLS as the client, trusting `config`'s roots, for `mx.example.com`.
    pub async fn start_tls(&mut self, config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
        assert!(self.buf.is_empty(), "unread input before TLS");
        let io = self.io.take().expect("connection");
        let name = rustls::pki_types::ServerName::try_from("mx.example.com").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await?;
        self.io = Some(Box::new(tls));
        Ok(())
    }

    /// Turns on RFC 4978 compression (IMAP COMPRESS=DEFLATE) as the client: what is sent
    /// from now on is deflated, what comes is inflated.
    pub fn start_deflate(&mut self) {
        assert!(self.buf.is_empty(), "unread input before COMPRESS");
        let inner = self.io.take().expect("connection");
        self.io = Some(Box::new(Deflating {
            inner,
            out: flate2::Compress::new(flate2::Compression::fast(), false),
            input: flate2::Decompress::new(false),
            pending: Vec::new(),
            raw: Vec::new(),
        }));
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io().write_all(bytes).await.expect("write");
        self.io().flush().await.expect("flush");
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(String::from_utf8_lossy(&l).trim_end().to_string());
            }
            let mut chunk = [0u8; 4096];
            let n = self.io().read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one SMTP reply (all its lines), joined with `\n`. Empty at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(l) = self.line().await {
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            out.push(l);
            if last {
                break;
            }
        }
        out.join("\n")
    }

    /// Reads one POP3 status line.
    pub async fn status(&mut self) -> String {
        self.line().await.unwrap_or_default()
    }

    /// Reads a POP3 multi-line body up to the terminating `.`, un-stuffed, lines joined by CRLF.
    pub async fn multiline(&mut self) -> String {
        let mut out = String::new();
        while let Some(l) = self.line().await {
            if l == "." {
                break;
            }
            out.push_str(l.strip_prefix('.').unwrap_or(&l));
            out.push_str("\r\n");
        }
        out
    }

    /// Sends a command line and checks that the reply starts with `expect`.
    pub async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let r = self.reply().await;
        assert!(
            r.starts_with(expect),
            "{line:?}: expected {expect:?}, got {r:?}"
        );
        r
    }

    /// True when the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        self.line().await.is_none()
    }
}

/// The fields of an RFC 3464 report's `message/delivery-status` part, parsed: the
/// per-message block first, then one per recipient, each field by name (case kept) with its
/// value unfolded. Tests read fields from the block they mean instead of searching the whole
/// report (where a quoted original or another recipient's block could hold the same text).
pub fn dsn_blocks(report: &[u8]) -> Vec<Vec<(String, String)>> {
    use mail_parser::MimeHeaders;
    let msg = mail_parser::MessageParser::new()
        .parse(report)
        .expect("the report parses as a message");
    let part = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type().is_some_and(|c| {
                c.ctype().eq_ignore_ascii_case("message")
                    && c.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
            })
        })
        .expect("a message/delivery-status part");
    let body = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut fields: Vec<(String, String)> = Vec::new();
            for line in block.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(last) = fields.last_mut() {
                        last.1.push(' ');
                        last.1.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    fields.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            fields
        })
        .collect()
}

/// A field of the recipient block of `rcpt` (by its Final-Recipient) in a report.
pub fn dsn_field(report: &[u8], rcpt: &str, field: &str) -> Option<String> {
    let blocks = dsn_blocks(report);
    let block = blocks.iter().skip(1).find(|b| {
        b.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Final-Recipient")
                && v.rsplit(';')
                    .next()
                    .is_some_and(|a| a.trim().eq_ignore_ascii_case(rcpt))
        })
    })?;
    block
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(field))
        .map(|(_, v)| v.clone())
}

/// A field of a report's per-message block.
pub fn dsn_message_field(report: &[u8], field: &str) -> Option<String> {
    dsn_blocks(report)
        .first()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(field))
        .map(|(_, v)| v.clone())
}

/// A client stream under RFC 4978 compression: raw deflate each way, each write sync-flushed.
struct Deflating {
    inner: Box<dyn ClientIo>,
    out: flate2::Compress,
    input: flate2::Decompress,
    /// Compressed octets not written yet.
    pending: Vec<u8>,
    /// Compressed octets read and not inflated yet.
    raw: Vec<u8>,
}

impl Deflating {
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while !self.pending.is_empty() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Deflating {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        let mut done = 0;
        loop {
            this.pending.reserve(buf.len() + 1024);
            let before = this.out.total_in();
            this.out
                .compress_vec(&buf[done..], &mut this.pending, flate2::FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            done += (this.out.total_in() - before) as usize;
            if done == buf.len() && this.pending.capacity() - this.pending.len() >= 64 {
                break;
            }
        }
        let _ = this.drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for Deflating {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.raw.is_empty() {
                let mut plain = Vec::with_capacity(buf.remaining());
                let before = this.input.total_in();
                this.input
                    .decompress_vec(&this.raw, &mut plain, flate2::FlushDecompress::None)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let used = (this.input.total_in() - before) as usize;
                this.raw.drain(..used);
                if !plain.is_empty() {
                    buf.put_slice(&plain);
                    return Poll::Ready(Ok(()));
                }
            }
            let mut chunk = [0u8; 4096];
            let mut rb = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
