//! One outbound SMTP connection (outbound delivery's, and the organization channel's): greeting, EHLO (with HELO fallback), commands and replies, each
//! with its RFC 5321 §4.5.3.2 timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailroom_proto::smtp::client::{parse_response, Capabilities, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A failure of the connection itself (not a reply): it could not be made, broke off, timed out,
/// or the peer said nonsense. Recipients not yet settled are retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnError(pub String);

/// An open connection to a server, after EHLO.
pub struct Conn {
    stream: TcpStream,
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
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                ConnError(format!(
                    "no answer from {host} [{}] within {connect_timeout:?}",
                    addr.ip()
                ))
            })?
            .map_err(|e| ConnError(format!("cannot connect to {host} [{}]: {e}", addr.ip())))?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn {
            stream,
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

    /// Sends bytes within `timeout`.
    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ConnError> {
        tokio::time::timeout(timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| ConnError(format!("timeout sending to {}", self.host)))?
            .map_err(|e| ConnError(format!("connection to {} broke: {e}", self.host)))
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
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ConnError(format!("no reply from {} within {timeout:?}", self.host)))?
                .map_err(|e| ConnError(format!("connection to {} broke: {e}", self.host)))?;
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
        let _ = self.stream.shutdown().await;
    }
}
