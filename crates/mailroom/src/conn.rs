//! Connections, shared by the SMTP, POP3 and IMAP servers: the accept loop of a listener
//! ([`ListenerControl::accept`]), and the buffered I/O of one connection: read more bytes with
//! a deadline, frame command lines, queue replies and flush them.
//!
//! Replies are queued, not written at once, and flushed only when the server is about to wait for
//! input: that is what RFC 2920 (PIPELINING) asks, and it turns a pipelined MAIL/RCPT/…/DATA
//! group into one write.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mailroom_proto::line::{Frame, LineFramer};
use mailroom_proto::smtp::Reply;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::tls::{Stream, TlsInfo};

/// Room read into while waiting for a command line.
pub const COMMAND_READ: usize = 1024;
/// Room read into while receiving message text.
pub const TEXT_READ: usize = 64 * 1024;

/// Why no more input came.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The deadline passed.
    #[error("timeout")]
    Timeout,
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// The server is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A framed line or the news that one was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without CRLF.
    Complete(Vec<u8>),
    /// An over-long line was discarded.
    TooLong,
}

/// One connection's buffers.
pub struct Conn<S> {
    stream: Stream<S>,
    /// Bytes read and not yet consumed.
    pub rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    framer: LineFramer,
    enhanced: bool,
    write_timeout: Duration,
    /// Compression, once the peer turned it on (IMAP COMPRESS=DEFLATE).
    deflate: Option<Box<Deflate>>,
}

/// RFC 4978 compression: raw deflate (RFC 1951) each way, every write ended with a sync flush
/// so the peer can read it at once. Input is inflated only as far as the session asks
/// (`want` octets a read), so that a small compressed input cannot make a huge buffer.
struct Deflate {
    out: flate2::Compress,
    input: flate2::Decompress,
    /// Compressed octets read and not inflated yet.
    raw: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a stream; command lines longer than `max_line` octets are refused, and a peer that
    /// does not take what is written to it within `write_timeout` is given up.
    pub fn new(stream: Stream<S>, max_line: usize, write_timeout: Duration) -> Conn<S> {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            framer: LineFramer::new(max_line),
            enhanced: false,
            write_timeout,
            deflate: None,
        }
    }

    /// Turns compression on (RFC 4978), after the reply that says so has been flushed: what
    /// is read and written from now on is deflated. Octets already read are compressed ones.
    pub fn start_deflate(&mut self) {
        let raw = std::mem::take(&mut self.rbuf);
        self.deflate = Some(Box::new(Deflate {
            // zlib's level 1: mail text still shrinks several times, for a fraction of the
            // CPU of the default level, which a sync of thousands of messages would feel.
            out: flate2::Compress::new(flate2::Compression::fast(), false),
            input: flate2::Decompress::new(false),
            raw,
        }));
    }

    /// Whether compression is on.
    pub fn deflating(&self) -> bool {
        self.deflate.is_some()
    }

    /// Inflates what was read into `rbuf`, at most `want` octets; how many came.
    fn inflate(&mut self, want: usize) -> Result<usize, ReadError> {
        let Some(d) = self.deflate.as_mut() else {
            return Ok(0);
        };
        let before = d.input.total_in();
        // (decompress_vec fills the spare capacity only: `want` octets at most.)
        let mut chunk = Vec::with_capacity(want);
        let r = d
            .input
            .decompress_vec(&d.raw, &mut chunk, flate2::FlushDecompress::None);
        let used = (d.input.total_in() - before) as usize;
        d.raw.drain(..used);
        r.map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        self.rbuf.extend_from_slice(&chunk);
        Ok(chunk.len())
    }

    /// The TLS of the connection, if it is under TLS.
    pub fn tls(&self) -> Option<TlsInfo> {
        self.stream.tls()
    }

    /// True when the client sent more than has been read as commands: after STARTTLS or STLS,
    /// that is an attempt to inject commands into the TLS session (CVE-2011-0411).
    pub fn has_pending_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Sends what is queued (the reply that says "go ahead"), then starts TLS. Nothing read
    /// before the handshake survives it: the caller has refused the command if there was any.
    pub async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<TlsInfo> {
        self.flush().await?;
        self.rbuf.clear();
        self.framer = LineFramer::new(self.framer.max());
        self.stream.start_tls(acceptor, timeout).await
    }

    /// Whether replies carry enhanced status codes from now on.
    pub fn set_enhanced(&mut self, on: bool) {
        self.enhanced = on;
    }

    /// Takes the next complete line from the buffer, if there is one.
    pub fn next_line(&mut self) -> Option<Line> {
        let (frame, consumed) = self.framer.next(&self.rbuf);
        let line = frame.map(|f| match f {
            Frame::Line(l) => Line::Complete(l.to_vec()),
            Frame::TooLong => Line::TooLong,
        });
        self.rbuf.drain(..consumed);
        line
    }

    /// Reads at least one more byte into the buffer, waiting at most `timeout`; if `shutdown` is
    /// given, a shutdown signal ends the wait too. `want` is how much room to read into: small
    /// while waiting for commands, so that an idle connection costs little memory
    /// ([`COMMAND_READ`]), large for message text ([`TEXT_READ`]).
    pub async fn fill(
        &mut self,
        timeout: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
        want: usize,
    ) -> Result<(), ReadError> {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * want {
            // Give a large buffer back while the connection waits.
            self.rbuf = Vec::new();
        }
        if self.deflate.is_some() {
            return self.fill_deflated(timeout, shutdown, want).await;
        }
        self.rbuf.reserve(want);
        read_some(&mut self.stream, &mut self.rbuf, timeout, shutdown)
            .await
            .map(|_| ())
    }

    /// The next line, which must come whole by `deadline` however it is split (a byte a
    /// second does not keep a slot); what is queued is flushed while it waits. What the line
    /// protocols (SMTP, POP3) read commands with.
    pub async fn line_by(
        &mut self,
        deadline: tokio::time::Instant,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Line, ReadError> {
        loop {
            if let Some(l) = self.next_line() {
                return Ok(l);
            }
            self.flush().await.map_err(ReadError::Io)?;
            let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.fill(timeout, shutdown.as_deref_mut(), COMMAND_READ)
                .await?;
        }
    }

    /// [`Conn::fill`] under compression: inflates what is already read, and reads more
    /// compressed octets until at least one plain octet comes.
    async fn fill_deflated(
        &mut self,
        timeout: Duration,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
        want: usize,
    ) -> Result<(), ReadError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inflate(want)? > 0 {
                return Ok(());
            }
            let Some(d) = self.deflate.as_mut() else {
                return Err(ReadError::Eof);
            };
            d.raw.reserve(want);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            read_some(&mut self.stream, &mut d.raw, left, shutdown.as_deref_mut()).await?;
        }
    }

    /// Deflates what is queued, ending with a sync flush (RFC 4978 §4).
    fn deflate_output(&mut self) -> io::Result<()> {
        let Some(d) = self.deflate.as_mut() else {
            return Ok(());
        };
        let input = std::mem::take(&mut self.wbuf);
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = d.out.total_in();
            d.out
                .compress_vec(&input[pos..], &mut out, flate2::FlushCompress::Sync)
                .map_err(io::Error::other)?;
            pos += (d.out.total_in() - before) as usize;
            // Done once all is in and the flush fitted (room was left over).
            if pos == input.len() && out.capacity() - out.len() >= 64 {
                break;
            }
        }
        self.wbuf = out;
        Ok(())
    }

    /// Queues a reply.
    pub fn send(&mut self, reply: &Reply) {
        reply.write_with(&mut self.wbuf, self.enhanced);
    }

    /// Queues raw bytes (POP3 responses).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Mutable access to the output buffer, for writers that build a response in place.
    pub fn wbuf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Writes queued replies, within the write deadline: a client that pipelines commands and
    /// never reads the replies stops being served when it passes (`TimedOut`).
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.deflate.is_some() && !self.wbuf.is_empty() {
            self.deflate_output()?;
        }
        let write = async {
            if !self.wbuf.is_empty() {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                if self.wbuf.capacity() > 16 * 1024 {
                    self.wbuf = Vec::new();
                }
            }
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not read what was written to it",
            )),
        }
    }

    /// Flushes and shuts the write side down, each within the write deadline.
    pub async fn close(&mut self) {
        if self.flush().await.is_ok() {
            let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
        }
    }
}

/// How the supervisor steers one listener's accept loop.
#[derive(Debug)]
pub struct ListenerControl {
    /// Turns true (or is dropped) when the service stops: no more connections are accepted.
    pub stop: watch::Receiver<bool>,
    /// The server's shutdown, given to each session.
    pub shutdown: watch::Receiver<bool>,
    /// Told once the listening socket is closed (so that the address may be bound again).
    pub closed: tokio::sync::oneshot::Sender<()>,
}

impl ListenerControl {
    /// Accepts connections until the service is stopped or the server shuts down, then closes
    /// the listener, says so, and waits for the sessions to end. The loop of every TCP
    /// service: `admit` decides on each connection, before a byte is read, and gives either
    /// what the session needs (its admission among them, held until it ends) or the line
    /// that refuses it, written at once without waiting long for a client that does not
    /// read; `session` runs an admitted one, told of the shutdown.
    pub async fn accept<T, A, S, F>(self, listener: TcpListener, mut admit: A, session: S)
    where
        T: Send + 'static,
        A: FnMut(SocketAddr) -> Result<T, Vec<u8>>,
        S: Fn(TcpStream, SocketAddr, T, watch::Receiver<bool>) -> F,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let ListenerControl {
            mut stop,
            shutdown,
            closed,
        } = self;
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => break,
            };
            while sessions.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Replies go out as they are written: they are queued and flushed whole (see
            // `Conn`), and a continuation request must not wait for the next one.
            let _ = stream.set_nodelay(true);
            match admit(peer) {
                Ok(admitted) => {
                    sessions.spawn(session(stream, peer, admitted, shutdown.clone()));
                }
                Err(line) => {
                    sessions.spawn(async move {
                        let mut stream = stream;
                        let write = async {
                            stream.write_all(&line).await?;
                            stream.shutdown().await
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
                    });
                }
            }
        }
        drop(listener);
        let _ = closed.send(());
        while sessions.join_next().await.is_some() {}
    }
}

/// Serves a protocol whose sessions read a mailbox (IMAP, POP3) on `listener`: each connection
/// is admitted by `limits` (or sent `refusal(reason)` and closed), acknowledged at once
/// ([`QuickAck`]), put under TLS when the listener is implicit TLS, and handed to `session`;
/// its admission is held until the session ends.
pub async fn serve_sessions<F, Fut>(
    listener: TcpListener,
    implicit_tls: bool,
    tls: Option<std::sync::Arc<crate::tls::Tls>>,
    limits: std::sync::Arc<crate::limits::ConnectionLimits>,
    control: ListenerControl,
    refusal: fn(&str) -> String,
    session: F,
) where
    F: Fn(Stream<QuickAck>, SocketAddr, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let admit = |peer: SocketAddr| {
        limits
            .admit(peer.ip())
            .map_err(|why| refusal(why.reason()).into_bytes())
    };
    let run = |stream, peer, admission, shutdown| {
        let (tls, session) = (tls.clone(), session.clone());
        async move {
            let stream = QuickAck(stream);
            let Some(stream) = crate::tls::accept(tls.as_deref(), stream, implicit_tls, peer).await
            else {
                return;
            };
            session(stream, peer, shutdown).await;
            drop(admission);
        }
    };
    control.accept(listener, admit, run).await;
}

/// Reads what has come into `buf` (at least one octet), within `timeout`; a shutdown signal,
/// when one is given, ends the wait too. How many octets were read.
async fn read_some<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut Stream<S>,
    buf: &mut Vec<u8>,
    timeout: Duration,
    shutdown: Option<&mut watch::Receiver<bool>>,
) -> Result<usize, ReadError> {
    let read = tokio::time::timeout(timeout, stream.read_buf(buf));
    let n = match shutdown {
        Some(sd) => {
            if *sd.borrow() {
                return Err(ReadError::Shutdown);
            }
            tokio::select! {
                r = read => r,
                _ = sd.changed() => return Err(ReadError::Shutdown),
            }
        }
        None => read.await,
    };
    match n {
        Err(_) => Err(ReadError::Timeout),
        Ok(Err(e)) => Err(ReadError::Io(e)),
        Ok(Ok(0)) => Err(ReadError::Eof),
        Ok(Ok(n)) => Ok(n),
    }
}

/// A TCP stream that asks the kernel to acknowledge what it receives at once
/// (`TCP_QUICKACK`, re-armed after every read and write, as the kernel clears it).
///
/// Why: an IMAP client sends a literal, then the CRLF that ends the command, as two writes.
/// Its Nagle algorithm holds the CRLF until the literal is acknowledged, and the server has
/// nothing to send until the CRLF comes, so a delayed ACK (40 ms on Linux) stalls every APPEND.
/// Dovecot does the same (`o_stream` uncork). Measured with imaplib: 44 ms an APPEND without
/// it, about 1 ms with it.
pub struct QuickAck(pub tokio::net::TcpStream);

impl QuickAck {
    fn rearm(&self) {
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if r.is_ready() {
            self.rearm();
        }
        r
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.0).poll_write(cx, buf);
        if r.is_ready() {
            self.rearm();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
