//! A connection that is in clear or under TLS, and can change from the first to the second
//! in the middle of a session (STARTTLS, STLS).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::TlsInfo;

/// A server-side connection.
pub enum Stream<S> {
    /// In clear.
    Plain(S),
    /// Under TLS.
    Tls(Box<TlsStream<S>>),
    /// Between the two (during a handshake that failed): every operation fails.
    Gone,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream<S> {
    /// The TLS facts, if the connection is under TLS.
    pub fn tls(&self) -> Option<TlsInfo> {
        match self {
            Stream::Tls(t) => Some(TlsInfo::of(&**t.get_ref().1)),
            _ => None,
        }
    }

    /// Starts TLS as the server on a connection in clear, within `timeout`. On failure the
    /// connection is gone (a half-done handshake cannot go back to clear text).
    pub async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        timeout: std::time::Duration,
    ) -> io::Result<TlsInfo> {
        let Stream::Plain(s) = std::mem::replace(self, Stream::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let t = match tokio::time::timeout(timeout, acceptor.accept(s)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the TLS handshake took too long",
                ))
            }
        };
        let info = TlsInfo::of(&**t.get_ref().1);
        crate::metrics::get()
            .tls_handshakes
            .with_label_values(&[info.version.as_str()])
            .inc();
        if t.get_ref().1.server_name().is_none() {
            no_server_name();
        }
        *self = Stream::Tls(Box::new(t));
        Ok(info)
    }
}

/// Says once, at debug, that clients come without a server name: most that connect by IP
/// address send none or the address itself, which RFC 6066 §3 does not allow and rustls
/// ignores; either way the one certificate is used. (rustls's own warning for it, a line per
/// connection and a third of a busy log, is filtered out: see `main.rs`.)
fn no_server_name() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(
            "a TLS client sent no host name (SNI), or an IP address in its place: the server's \
             certificate is used (said once)"
        );
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}
