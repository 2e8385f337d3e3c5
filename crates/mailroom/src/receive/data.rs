//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030): receiving the message text, then ingest.

use mailroom_proto::smtp::{DataDecoder, DataOutcome, LineFlaws, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{Flow, Session, State, Transaction};
use crate::conn::ReadError;
use crate::ingest::{Envelope, IngestError};
use crate::queue::EnvelopeParams;

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

    /// DATA.
    pub(super) async fn data(&mut self) -> Flow {
        if let Some(r) = self.data_refusal("DATA") {
            self.reply(r);
            return Flow::Continue;
        }
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        let smtp = &self.ctx.config.smtp;
        let mut dec = DataDecoder::data(smtp.max_message_size, smtp.max_text_line);
        loop {
            if let DataOutcome::Done { consumed } = dec.feed(&self.conn.rbuf) {
                self.conn.rbuf.drain(..consumed);
                break;
            }
            self.conn.rbuf.clear();
            if let Some(flow) = self.more_text().await {
                return flow;
            }
        }
        let Some(tx) = self.take_transaction() else {
            return Flow::Continue;
        };
        self.finish_message(tx, dec).await;
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
        let mut dec = match (&refusal, &mut self.state) {
            (None, State::Mail(_, tx)) => Some(
                tx.bdat
                    .take()
                    .unwrap_or_else(|| DataDecoder::bdat(max_size, max_line)),
            ),
            _ => None,
        };
        let mut remaining = size;
        loop {
            let take = remaining.min(self.conn.rbuf.len() as u64) as usize;
            if let Some(d) = dec.as_mut() {
                // Once over the limit the decoder only counts, so the chunk costs no memory.
                d.feed(&self.conn.rbuf[..take]);
            }
            self.conn.rbuf.drain(..take);
            remaining -= take as u64;
            if remaining == 0 {
                break;
            }
            if let Some(flow) = self.more_text().await {
                return flow;
            }
        }
        if let Some(r) = refusal {
            self.reply(r);
            return Flow::Continue;
        }
        let Some(dec) = dec else {
            return Flow::Continue;
        };
        if dec.oversize() {
            self.take_transaction();
            self.reply(size_reply(max_size));
            return Flow::Continue;
        }
        if !last {
            if let State::Mail(_, tx) = &mut self.state {
                tx.bdat = Some(dec);
            }
            self.reply(Reply::code(250, "2.0.0", format!("{size} octets received")));
            return Flow::Continue;
        }
        let Some(tx) = self.take_transaction() else {
            return Flow::Continue;
        };
        self.finish_message(tx, dec).await;
        Flow::Continue
    }

    /// Waits for more message text. `Some` ends the session (timeout or disconnect).
    async fn more_text(&mut self) -> Option<Flow> {
        if self.conn.flush().await.is_err() {
            return Some(Flow::Close);
        }
        let timeout = self.ctx.config.smtp.data_timeout;
        match self.conn.fill(timeout, None, crate::conn::TEXT_READ).await {
            Ok(()) => None,
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
    async fn finish_message(&mut self, tx: Box<Transaction>, dec: DataDecoder) {
        let max = self.ctx.config.smtp.max_message_size;
        if dec.oversize() {
            self.reply(size_reply(max));
            return;
        }
        let (text, flaws) = dec.finish();
        if let Some(r) = flaw_reply(flaws, self.ctx.config.smtp.max_text_line) {
            self.reply(r);
            return;
        }
        let State::Ready(helo) = &self.state else {
            return;
        };
        let protocol = match (tx.params.smtputf8, helo.esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        };
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
        };
        let r = match self.ctx.ingest.accept(env, text).await {
            Ok(id) => Reply::code(250, "2.0.0", format!("OK: queued as {id}")),
            Err(IngestError::Refused(r)) => r,
            Err(IngestError::Store(e)) => {
                tracing::error!(error = %e, "message could not be stored");
                Reply::code(451, "4.3.0", "Temporary storage failure, try again later")
            }
        };
        self.reply(r);
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
