//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030): receiving the message text, then ingest.
//!
//! The text is streamed, never held whole: each read is decoded ([`DataDecoder`]) and handed
//! to the transaction's [`SpoolWriter`], which keeps it in memory up to `smtp.spool_threshold`
//! and writes the rest to a spool file as it arrives. A session therefore holds at most its read
//! buffer, one read's decoded text and the threshold, whatever the size of the message.

use std::io;
use std::time::Duration;

use mailroom_proto::results::ResultsFilter;
use mailroom_proto::smtp::{DataDecoder, DataOutcome, LineFlaws, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{Flow, Mode, Session, State, Transaction};
use crate::conn::ReadError;
use crate::ingest::{Envelope, IngestError};
use crate::model::EnvelopeParams;
use crate::store::spool::{Received, SpoolWriter};
use crate::store::StoreError;

/// A message text being received: the decoder and where its output goes.
pub struct Text {
    dec: DataDecoder,
    out: SpoolWriter,
    /// The first failure to store the text (a full disk, say): the rest is still read, so the
    /// session stays in step, and the message is refused at its end.
    failed: Option<io::Error>,
    /// Removes the `Authentication-Results` fields that claim the name of this server or of
    /// another server of its organization (RFC 8601 §5), in mail from anyone but those servers.
    strip: Option<ResultsFilter>,
    kept: Vec<u8>,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("size", &self.out.size())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Text {
    /// Stores what the decoder has produced so far.
    async fn store(&mut self) {
        let out = self.dec.output();
        if self.failed.is_none() && !out.is_empty() {
            let written = match &mut self.strip {
                Some(f) if !f.in_body() => {
                    self.kept.clear();
                    f.push(out, &mut self.kept);
                    self.out.write(&self.kept).await
                }
                _ => self.out.write(out).await,
            };
            if let Err(e) = written {
                self.failed = Some(e);
            }
        }
        self.dec.clear_output();
    }

    /// Ends the text: the end of a header field the filter still holds is stored.
    async fn end(&mut self) {
        if let Some(f) = &mut self.strip {
            self.kept.clear();
            f.finish(&mut self.kept);
            if self.failed.is_none() && !self.kept.is_empty() {
                if let Err(e) = self.out.write(&self.kept).await {
                    self.failed = Some(e);
                }
            }
            if f.removed() > 0 {
                tracing::info!(
                    fields = f.removed(),
                    "removed Authentication-Results fields that claimed this server's name"
                );
            }
        }
    }
}

/// The reply when the text could not be stored: `452 4.3.1` when the disk is full (RFC 3463:
/// mail system full), `451 4.3.0` otherwise; the client tries again later either way.
/// How long message text (a DATA, or one BDAT chunk) may take: `smtp.data_timeout` of
/// silence at most, and as a whole `data_timeout` plus a second per `smtp.min_data_rate`
/// octets received (Postfix's `smtpd_min_data_rate`). A client that trickles a byte a second is
/// cut off after about `data_timeout` (issue 21: the timeout began again at every byte).
struct TextClock {
    start: tokio::time::Instant,
    received: u64,
}

impl TextClock {
    fn start(received: usize) -> TextClock {
        TextClock {
            start: tokio::time::Instant::now(),
            received: received as u64,
        }
    }

    /// What is left for the next read (zero: the text took too long).
    fn left(&self, data_timeout: Duration, min_rate: u64) -> Duration {
        let earned = Duration::from_secs(self.received / min_rate.max(1));
        let deadline = self.start + data_timeout.saturating_add(earned);
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(data_timeout)
    }
}

/// The reply to a message whose From: names no mailbox (an empty group, an encoded word, a
/// bare name): RFC 5322 §3.6.2 requires one, and without one no check can tell who wrote it
/// (issue 21: such a From: passed the sender rules and DMARC).
pub(super) fn no_author() -> Reply {
    Reply::code(
        550,
        "5.7.1",
        "The From: field names no mailbox (RFC 5322 §3.6.2 requires one): the author cannot be \
         checked",
    )
}

fn storage_reply(e: &io::Error) -> Reply {
    if e.kind() == io::ErrorKind::StorageFull {
        Reply::code(452, "4.3.1", "Insufficient system storage, try again later")
    } else {
        tracing::error!(error = %e, "message text could not be stored");
        Reply::code(451, "4.3.0", "Temporary storage failure, try again later")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The reply when a transaction is not ready for message text, if it is not.
    fn data_refusal(&self, verb: &str) -> Option<Reply> {
        match &self.state {
            State::Connected => Some(Reply::code(503, "5.5.1", "Send EHLO or HELO first")),
            State::Ready(_) => Some(Reply::code(503, "5.5.1", "Need MAIL command")),
            State::Mail(_, tx) if tx.rcpts.is_empty() => {
                Some(Reply::code(554, "5.5.1", "No valid recipients"))
            }
            State::Mail(_, tx) if verb == "DATA" && tx.bdat.is_some() => {
                Some(Reply::code(503, "5.5.1", "DATA is not allowed after BDAT"))
            }
            State::Mail(..) => None,
        }
    }

    /// Ends the transaction, returning it (the session stays greeted).
    fn take_transaction(&mut self) -> Option<Box<Transaction>> {
        match std::mem::replace(&mut self.state, State::Connected) {
            State::Mail(h, tx) => {
                self.state = State::Ready(h);
                Some(tx)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    fn new_text(&self, dec: DataDecoder) -> Option<Text> {
        let State::Mail(_, tx) = &self.state else {
            return None;
        };
        let strip = self.org.peer().is_none().then(|| {
            // Every server of the organization: a user's client trusts their home server's
            // results, and mail for them may enter at another server.
            let snap = self.ctx.org.get();
            let members = snap.iter().flat_map(|s| s.state.dir.servers.keys());
            let host = std::iter::once(&self.ctx.config.server.hostname);
            ResultsFilter::any_of(host.chain(members).map(String::as_str))
        });
        Some(Text {
            dec,
            out: self.ctx.ingest.text_writer(tx.queue_id),
            failed: None,
            strip,
            kept: Vec::new(),
        })
    }

    /// DATA.
    pub(super) async fn data(&mut self) -> Flow {
        if let Some(r) = self.data_refusal("DATA") {
            self.reply(r);
            return Flow::Continue;
        }
        let smtp = &self.ctx.config.smtp;
        let dec = DataDecoder::data(smtp.max_message_size, smtp.max_text_line);
        let Some(mut text) = self.new_text(dec) else {
            return Flow::Continue;
        };
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        let mut clock = TextClock::start(self.conn.rbuf.len());
        loop {
            if let DataOutcome::Done { consumed } = text.dec.feed(&self.conn.rbuf) {
                self.conn.rbuf.drain(..consumed);
                break;
            }
            self.conn.rbuf.clear();
            text.store().await;
            if let Some(flow) = self.more_text(&mut clock).await {
                // The partial text (and its spool file) goes with `text`.
                return flow;
            }
        }
        text.store().await;
        let Some(tx) = self.take_transaction() else {
            return Flow::Continue;
        };
        self.finish_message(tx, text).await;
        Flow::Continue
    }

    /// BDAT size [LAST].
    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Flow {
        // The chunk's octets follow whatever we answer, so they are always consumed.
        let refusal = if !self.ctx.registry.verb("BDAT") {
            Some(Reply::code(502, "5.5.1", "Command not implemented"))
        } else {
            self.data_refusal("BDAT")
        };
        let smtp = &self.ctx.config.smtp;
        let (max_size, max_line) = (smtp.max_message_size, smtp.max_text_line);
        let mut text = match (&refusal, &mut self.state) {
            (None, State::Mail(_, tx)) => match tx.bdat.take() {
                Some(t) => Some(*t),
                None => self.new_text(DataDecoder::bdat(max_size, max_line)),
            },
            _ => None,
        };
        let mut remaining = size;
        let mut clock = TextClock::start(self.conn.rbuf.len());
        loop {
            let take = remaining.min(self.conn.rbuf.len() as u64) as usize;
            if let Some(t) = text.as_mut() {
                // Once over the limit the decoder only counts, so the chunk costs no memory.
                t.dec.feed(&self.conn.rbuf[..take]);
                t.store().await;
            }
            self.conn.rbuf.drain(..take);
            remaining -= take as u64;
            if remaining == 0 {
                break;
            }
            if let Some(flow) = self.more_text(&mut clock).await {
                return flow;
            }
        }
        if let Some(r) = refusal {
            self.reply(r);
            return Flow::Continue;
        }
        let Some(text) = text else {
            return Flow::Continue;
        };
        if text.dec.oversize() {
            self.take_transaction();
            self.reply(size_reply(max_size));
            return Flow::Continue;
        }
        if !last {
            if let State::Mail(_, tx) = &mut self.state {
                tx.bdat = Some(Box::new(text));
            }
            self.reply(Reply::code(250, "2.0.0", format!("{size} octets received")));
            return Flow::Continue;
        }
        let Some(tx) = self.take_transaction() else {
            return Flow::Continue;
        };
        self.finish_message(tx, text).await;
        Flow::Continue
    }

    /// Waits for more message text, within what is left of the text's time ([`TextClock`]).
    /// `Some` ends the session (timeout or disconnect).
    async fn more_text(&mut self, clock: &mut TextClock) -> Option<Flow> {
        if self.conn.flush().await.is_err() {
            return Some(Flow::Close);
        }
        let smtp = &self.ctx.config.smtp;
        let timeout = clock.left(smtp.data_timeout, smtp.min_data_rate);
        let before = self.conn.rbuf.len();
        match self.conn.fill(timeout, None, crate::conn::TEXT_READ).await {
            Ok(()) => {
                clock.received += self.conn.rbuf.len().saturating_sub(before) as u64;
                None
            }
            Err(ReadError::Timeout) => {
                let host = self.ctx.config.server.hostname.clone();
                self.reply(Reply::code(
                    421,
                    "4.4.2",
                    format!("{host} Error: timeout exceeded"),
                ));
                Some(Flow::Close)
            }
            Err(_) => Some(Flow::Close),
        }
    }

    /// Checks the received text and hands the message to ingest; replies.
    async fn finish_message(&mut self, tx: Box<Transaction>, mut text: Text) {
        let max = self.ctx.config.smtp.max_message_size;
        text.end().await;
        let Text {
            dec, out, failed, ..
        } = text;
        if dec.oversize() {
            self.reply(size_reply(max));
            return;
        }
        let (_, flaws) = dec.finish();
        if let Some(r) = flaw_reply(flaws, self.ctx.config.smtp.max_text_line) {
            self.reply(r);
            return;
        }
        if let Some(e) = failed {
            self.reply(storage_reply(&e));
            return;
        }
        let received = match out.finish().await {
            Ok(r) => r,
            Err(e) => {
                self.reply(storage_reply(&e));
                return;
            }
        };
        let head = match &received {
            Received::Memory(t) => t.as_slice(),
            Received::File { head, .. } => head.as_slice(),
        };
        // In memory, the text is whole (a message of header fields only has no empty line).
        let whole_header = matches!(received, Received::Memory(_))
            || crate::ingest::headers::has_whole_header(head);
        if let Some(user) = &self.user {
            let authors = crate::ingest::headers::authors(head);
            let fields = authors.from_fields;
            if self.ctx.config.submission.check_sender && (fields != 1 || !whole_header) {
                self.reply(Reply::code(
                    553,
                    "5.7.1",
                    format!(
                        "The message must have exactly one From: field, in a header section of \
                         at most {} octets (it has {fields})",
                        self.ctx.config.smtp.spool_threshold
                    ),
                ));
                return;
            }
            if let Some(r) = self.authors_theirs(user, &authors).await {
                self.reply(r);
                return;
            }
        } else if self.anonymous_outside() {
            // The checks below read the header section: one too long to read whole could hide
            // its From: field from them.
            if !whole_header {
                self.reply(Reply::code(
                    552,
                    "5.3.4",
                    format!(
                        "The header section is longer than {} octets",
                        self.ctx.config.smtp.spool_threshold
                    ),
                ));
                return;
            }
            // As for MAIL FROM: the author a reader sees may not be of this organization either;
            // and a From: there must name one to judge (DMARC reads it). (A message without a
            // From: field at all shows no author to impersonate.)
            let authors = crate::ingest::headers::authors(head);
            if authors.from_fields > 0 && authors.from.is_empty() {
                self.reply(no_author());
                return;
            }
            for from in authors.from {
                let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                if let Some(r) = self.local_sender_refusal("From: address", &from, domain) {
                    self.reply(r);
                    return;
                }
            }
        }
        let (headers, checks) = match self.sender_checks(&tx, &received).await {
            Ok(x) => x,
            Err(r) => {
                crate::metrics::received(self.listener_name(), r.code_num());
                self.reply(r);
                return;
            }
        };
        let State::Ready(helo) = &self.state else {
            return;
        };
        let tls = self.conn.tls();
        let protocol = protocol(
            helo.esmtp,
            tx.params.smtputf8,
            tls.is_some(),
            self.user.is_some(),
        );
        let env = Envelope {
            queue_id: tx.queue_id,
            sender: tx.from.mailbox().map(|m| m.to_string()).unwrap_or_default(),
            params: EnvelopeParams {
                envid: tx.params.envid,
                ret: tx.params.ret,
                body: tx.params.body,
                smtputf8: tx.params.smtputf8,
            },
            rcpts: tx.rcpts,
            client_ip: self.peer.ip(),
            helo: helo.name.clone(),
            protocol,
            tls,
            user: self.user.as_ref().map(|u| u.address.clone()),
            headers,
            checks,
            org_meta: tx.org_meta,
        };
        let started = std::time::Instant::now();
        let r = match self.ctx.ingest.accept(env, received).await {
            Ok(id) => Reply::code(250, "2.0.0", format!("OK: queued as {id}")),
            Err(IngestError::Refused(r)) => r,
            Err(IngestError::Store(StoreError::Full(e))) => {
                tracing::error!(error = %e, "message not stored: the disk is full");
                Reply::code(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Err(IngestError::Store(e)) => {
                tracing::error!(error = %e, "message could not be stored");
                Reply::code(451, "4.3.0", "Temporary storage failure, try again later")
            }
        };
        let m = crate::metrics::get();
        m.data_to_reply.observe(started.elapsed().as_secs_f64());
        crate::metrics::received(self.listener_name(), r.code_num());
        self.reply(r);
    }

    /// The listener's name in the metrics: `smtp` or `submission`.
    fn listener_name(&self) -> &'static str {
        match self.mode {
            Mode::Mx => "smtp",
            _ => "submission",
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The whole text, if it is at most `limit` octets (a spooled one is read back).
    async fn whole_text<'a>(
        &self,
        received: &'a Received,
        limit: u64,
    ) -> Option<std::borrow::Cow<'a, [u8]>> {
        match received {
            Received::Memory(t) => {
                (t.len() as u64 <= limit).then_some(std::borrow::Cow::Borrowed(t.as_slice()))
            }
            Received::File { file, .. } if file.size <= limit => {
                let path = self
                    .ctx
                    .data
                    .join(crate::store::spool::DIR_NAME)
                    .join(&file.name);
                tokio::fs::read(&path)
                    .await
                    .ok()
                    .map(std::borrow::Cow::Owned)
            }
            Received::File { .. } => None,
        }
    }

    /// Sender authentication of mail from outside (crate::sender_auth), and DKIM signing of
    /// mail from users and from inside: the fields to put above the message, a summary for
    /// tracking, or the refusal.
    async fn sender_checks(
        &self,
        tx: &Transaction,
        received: &Received,
    ) -> Result<(Vec<u8>, Option<String>), Reply> {
        let cfg = &self.ctx.config;
        let ip = self.peer.ip();
        let org = self.org.peer().is_some();
        let inside = cfg.is_inside(ip);
        let mut headers = Vec::new();
        let mut checks = None;
        let helo = match &self.state {
            State::Ready(h) => h.name.clone(),
            _ => String::new(),
        };
        let sender = tx.from.mailbox().map(|m| m.to_string()).unwrap_or_default();
        if let Some(v) = &self.ctx.verifier {
            if self.mode == Mode::Mx && !org && !inside && self.user.is_none() {
                let limit = cfg.sender_auth.max_verify_size;
                let text = self.whole_text(received, limit).await;
                let head = match received {
                    Received::Memory(t) => t.as_slice(),
                    Received::File { head, .. } => head.as_slice(),
                };
                let too_large = text.is_none();
                let raw = text
                    .map(|t| t.into_owned())
                    .unwrap_or_else(|| head.to_vec());
                let verdict = v
                    .clone()
                    .check_owned(raw, too_large, ip, helo.clone(), sender.clone())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "sender authentication failed");
                        Reply::code(
                            451,
                            "4.3.0",
                            "Temporary failure checking the sender, try again later",
                        )
                    })?;
                tracing::info!(peer = %self.peer, checks = %verdict.summary, "sender authentication");
                if let Some(r) = verdict.refusal {
                    return Err(r);
                }
                let mut summary = verdict.summary;
                if verdict.quarantine {
                    summary.push_str("; quarantined by the sender domain's DMARC policy");
                }
                headers.extend_from_slice(&verdict.header);
                checks = Some(summary);
            }
        }
        if cfg.dkim.sign && !org && (self.user.is_some() || inside) {
            let head = match received {
                Received::Memory(t) => t.as_slice(),
                Received::File { head, .. } => head.as_slice(),
            };
            let domain = crate::ingest::headers::from_addresses(head)
                .first()
                .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()));
            let keyed = |d: &String| {
                cfg.is_local_domain(d)
                    && crate::dkim::key_path(&self.ctx.data, d, &cfg.dkim.selector).exists()
            };
            // Only a domain with a key costs the text read back and a signature.
            if let Some(domain) = domain.filter(keyed) {
                let text = self.whole_text(received, cfg.smtp.max_message_size).await;
                if let Some(text) = text.map(|t| t.into_owned()) {
                    let (data, selector) = (self.ctx.data.clone(), cfg.dkim.selector.clone());
                    let signed = tokio::task::spawn_blocking(move || {
                        crate::dkim::sign(&data, &domain, &selector, &text)
                    })
                    .await;
                    match signed {
                        Ok(Ok(Some(sig))) => {
                            headers.splice(0..0, sig);
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "DKIM signing failed; sent unsigned")
                        }
                        Err(e) => tracing::error!(error = %e, "DKIM signing failed; sent unsigned"),
                    }
                }
            }
        }
        Ok((headers, checks))
    }
}

/// The `with` protocol of the `Received` header: RFC 3848 (`S` under TLS, `A` after AUTH) and
/// RFC 6531 §4.3 (`UTF8SMTP…`).
pub fn protocol(esmtp: bool, utf8: bool, tls: bool, auth: bool) -> &'static str {
    match (esmtp || utf8, utf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
    }
}

fn size_reply(max: u64) -> Reply {
    Reply::code(
        552,
        "5.3.4",
        format!("Message size exceeds fixed maximum message size ({max} octets)"),
    )
}

/// The refusal for defective message text, if any (RFC 5321 §2.3.8: lines end in CRLF only;
/// §4.5.3.1.6: text lines are at most 1000 octets).
fn flaw_reply(flaws: LineFlaws, max_line: usize) -> Option<Reply> {
    if flaws.bare_lf || flaws.bare_cr {
        let what = match (flaws.bare_lf, flaws.bare_cr) {
            (true, true) => "bare LF and bare CR",
            (true, false) => "a bare LF",
            _ => "a bare CR",
        };
        return Some(Reply::code(
            554,
            "5.6.0",
            format!("Message refused: it contains {what}; every line must end with CRLF (RFC 5321 2.3.8)"),
        ));
    }
    if flaws.long_line {
        return Some(Reply::code(
            554,
            "5.6.0",
            format!(
                "Message refused: a line is longer than {max_line} octets (RFC 5321 4.5.3.1.6)"
            ),
        ));
    }
    None
}
