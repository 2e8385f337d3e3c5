//! One outbound SMTP connection (outbound delivery's, and the organization channel's): greeting, EHLO (with HELO fallback), commands and replies, each
//! with its RFC 5321 §4.5.3.2 timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailroom_proto::smtp::client::{parse_response, Capabilities, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::TlsInfo;

/// What a connection runs over: TCP, or TLS over TCP after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// A failure of the connection itself (not a reply): it could not be made, broke off, timed out,
/// or the peer said nonsense. Recipients not yet settled are retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnError(pub String);

/// A TCP connection within `timeout`.
async fn connect(host: &str, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            ConnError(format!(
                "no answer from {host} [{}] within {timeout:?}",
                addr.ip()
            ))
        })?
        .map_err(|e| ConnError(format!("cannot connect to {host} [{}]: {e}", addr.ip())))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An open connection to a server, after EHLO.
pub struct Conn {
    stream: Option<Box<dyn Io>>,
    /// The TLS of the connection, after STARTTLS.
    pub tls: Option<TlsInfo>,
    /// Why the connection is in clear, when it is and someone tried (tracking says it).
    pub clear_because: Option<String>,
    rbuf: Vec<u8>,
    /// The server's name (for Remote-MTA).
    pub host: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// What the server supports.
    pub caps: Capabilities,
    /// Messages sent on this connection.
    pub messages: u32,
    /// When it was last used.
    pub idle_since: Instant,
    /// The name this side gave in EHLO.
    helo: String,
    /// The command timeout it was opened with.
    command_timeout: Duration,
}

impl Conn {
    /// Connects and greets: waits for 220, says EHLO (HELO if EHLO is refused).
    pub async fn open(
        host: &str,
        addr: SocketAddr,
        helo: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let stream = connect(host, addr, connect_timeout).await?;
        Conn::greet(Box::new(stream), None, host, addr, helo, command_timeout).await
    }

    /// Connects to a listener of implicit TLS (RFC 8314 §3.3, submissions on 465), makes the
    /// handshake with `config`, then greets as [`Conn::open`] does.
    pub async fn open_implicit_tls(
        host: &str,
        addr: SocketAddr,
        helo: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Conn, ConnError> {
        let stream = connect(host, addr, connect_timeout).await?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::from(addr.ip()));
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
        let tls = tokio::time::timeout(command_timeout, handshake)
            .await
            .map_err(|_| ConnError(format!("the TLS handshake with {host} took too long")))?
            .map_err(|e| ConnError(format!("the TLS handshake with {host} failed: {e}")))?;
        let info = TlsInfo::of(&**tls.get_ref().1);
        Conn::greet(Box::new(tls), Some(info), host, addr, helo, command_timeout).await
    }

    /// Waits for the greeting on a connected stream, then EHLO (HELO if EHLO is refused).
    async fn greet(
        stream: Box<dyn Io>,
        tls: Option<TlsInfo>,
        host: &str,
        addr: SocketAddr,
        helo: &str,
        command_timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let mut c = Conn {
            stream: Some(stream),
            tls,
            clear_because: None,
            rbuf: Vec::with_capacity(4096),
            host: host.to_string(),
            addr,
            caps: Capabilities::default(),
            messages: 0,
            idle_since: Instant::now(),
            helo: helo.to_string(),
            command_timeout,
        };
        let greeting = c.read(command_timeout).await?;
        if greeting.code != 220 {
            return Err(ConnError(format!(
                "{host} [{}] greeted with {greeting}",
                addr.ip()
            )));
        }
        c.send(format!("EHLO {helo}\r\n").as_bytes(), command_timeout)
            .await?;
        let ehlo = c.read(command_timeout).await?;
        if ehlo.is_success() {
            c.caps = Capabilities::from_ehlo(&ehlo);
        } else {
            // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            c.send(format!("HELO {helo}\r\n").as_bytes(), command_timeout)
                .await?;
            let r = c.read(command_timeout).await?;
            if !r.is_success() {
                return Err(ConnError(format!("{host} refused EHLO and HELO: {r}")));
            }
        }
        Ok(c)
    }

    /// [`Conn::open`], then opportunistic STARTTLS (crate::tls::client) when `starttls` is on
    /// and the server offers it. A handshake that fails leaves the connection unusable, so the
    /// server is connected to again and the session goes on in clear, as Postfix's "may" level
    /// does; [`Conn::tls_detail`] says which.
    pub async fn open_opportunistic(
        host: &str,
        addr: SocketAddr,
        helo: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
        starttls: bool,
    ) -> Result<Conn, ConnError> {
        let mut conn = Conn::open(host, addr, helo, connect_timeout, command_timeout).await?;
        if !starttls {
            conn.clear_because = Some("STARTTLS is off here".into());
            return Ok(conn);
        }
        if !conn.offers_starttls() {
            conn.clear_because = Some("STARTTLS not offered".into());
            return Ok(conn);
        }
        match conn.starttls(crate::tls::client::opportunistic()).await {
            Ok(Ok(_)) => Ok(conn),
            Ok(Err(r)) => {
                conn.clear_because = Some(format!("STARTTLS refused: {r}"));
                Ok(conn)
            }
            Err(e) => {
                tracing::info!(%host, %addr, error = %e, "TLS failed; going on in clear");
                let mut c = Conn::open(host, addr, helo, connect_timeout, command_timeout).await?;
                c.clear_because = Some(e.0);
                Ok(c)
            }
        }
    }

    /// What tracking says of the connection's TLS.
    pub fn tls_detail(&self) -> String {
        match (&self.tls, &self.clear_because) {
            (Some(t), _) => format!("over {t}"),
            (None, Some(why)) => format!("without TLS ({why})"),
            (None, None) => "without TLS".into(),
        }
    }

    /// Whether the server offers STARTTLS.
    pub fn offers_starttls(&self) -> bool {
        self.caps
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case("STARTTLS"))
    }

    /// Says EHLO again and reads the capabilities anew (after organization authentication,
    /// which makes the server advertise the verbs that need it).
    pub async fn ehlo_again(&mut self) -> Result<(), ConnError> {
        let t = self.command_timeout;
        self.send(format!("EHLO {}\r\n", self.helo).as_bytes(), t)
            .await?;
        let r = self.read(t).await?;
        if !r.is_success() {
            return Err(ConnError(format!("{} refused EHLO: {r}", self.host)));
        }
        self.caps = Capabilities::from_ehlo(&r);
        Ok(())
    }

    fn io(&mut self) -> Result<&mut Box<dyn Io>, ConnError> {
        self.stream
            .as_mut()
            .ok_or_else(|| ConnError(format!("the TLS handshake with {} failed", self.host)))
    }

    /// STARTTLS (RFC 3207) with `config`, then EHLO again (§4.2: the server forgets what it
    /// knew). An `Err` means the connection is unusable (a failed handshake cannot go back to
    /// clear text); a `501`/`454` reply to STARTTLS leaves it in clear and usable.
    pub async fn starttls(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Result<TlsInfo, Response>, ConnError> {
        let t = self.command_timeout;
        self.send(b"STARTTLS\r\n", t).await?;
        let r = self.read(t).await?;
        if r.code != 220 {
            return Ok(Err(r));
        }
        if !self.rbuf.is_empty() {
            return Err(ConnError(format!(
                "{} sent more after its STARTTLS reply (a sign of tampering)",
                self.host
            )));
        }
        let Some(plain) = self.stream.take() else {
            return Err(ConnError("no connection".into()));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::from(self.addr.ip()));
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, plain);
        let tls = tokio::time::timeout(t, handshake)
            .await
            .map_err(|_| {
                ConnError(format!(
                    "the TLS handshake with {} took too long",
                    self.host
                ))
            })?
            .map_err(|e| ConnError(format!("the TLS handshake with {} failed: {e}", self.host)))?;
        let info = TlsInfo::of(&**tls.get_ref().1);
        self.stream = Some(Box::new(tls));
        self.tls = Some(info.clone());
        self.ehlo_again().await?;
        Ok(Ok(info))
    }

    /// Sends bytes within `timeout`.
    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ConnError> {
        let host = self.host.clone();
        let io = self.io()?;
        tokio::time::timeout(timeout, io.write_all(bytes))
            .await
            .map_err(|_| ConnError(format!("timeout sending to {host}")))?
            .map_err(|e| ConnError(format!("connection to {host} broke: {e}")))
    }

    /// Reads one reply within `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> Result<Response, ConnError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match parse_response(&self.rbuf) {
                Ok(Some((r, used))) => {
                    self.rbuf.drain(..used);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ConnError(format!(
                        "{} sent a malformed reply: {e}",
                        self.host
                    )))
                }
            }
            let mut chunk = [0u8; 4096];
            let host = self.host.clone();
            let io = self.io()?;
            let n = tokio::time::timeout_at(deadline, io.read(&mut chunk))
                .await
                .map_err(|_| ConnError(format!("no reply from {host} within {timeout:?}")))?
                .map_err(|e| ConnError(format!("connection to {host} broke: {e}")))?;
            if n == 0 {
                return Err(ConnError(format!("{} closed the connection", self.host)));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Says QUIT and closes, without waiting long.
    pub async fn quit(mut self) {
        if self.send(b"QUIT\r\n", Duration::from_secs(2)).await.is_ok() {
            let _ = self.read(Duration::from_secs(2)).await;
        }
        if let Some(s) = self.stream.as_mut() {
            let _ = s.shutdown().await;
        }
    }
}
