//! One SMTP transaction on an open connection (RFC 5321 §3.3): MAIL, RCPT for each recipient,
//! DATA and the message text, and what each reply means for each recipient.
//!
//! **When outcomes stand.** Until the peer has answered the end of data, nothing was delivered:
//! a failure of the connection then is a [`TxError::NotSent`], and the recipients may be tried
//! again at once on another connection. Once the final `.` has gone out, a broken connection
//! leaves the outcome unknown ([`TxError::Unknown`]: the peer may have taken the message, RFC
//! 1047), and the recipients wait for a later attempt rather than being sent again now. Once the
//! peer has answered, the outcomes are final whatever happens to the connection afterwards: a
//! failed `RSET` only closes it. These three cases are types, so the caller cannot resend
//! what was delivered.
//!
//! **Excess recipients.** A peer that answers `452` to recipients beyond its limit (RFC 5321
//! §4.5.3.1.10) takes them in a further transaction; they are handed back as
//! [`Transaction::excess`] for the caller to send at once.
//!
//! **The text** is streamed in blocks of [`BLOCK`] octets, each written under
//! `outbound.block_timeout` (RFC 5321 §4.5.3.2.5 times each block, not the whole message), so a
//! large message reaches a slow peer and no stuffed copy of it is ever held.

use std::time::Duration;

use mailroom_proto::smtp::client::{mail_command, rcpt_command, DotStuffer, Response};
use mailroom_proto::smtp::{Body, Status};
use tokio::io::AsyncReadExt;

use super::pool::Held;
use super::{classify, MessageText};
use crate::client::ConnError;
use crate::config::OutboundConfig;
use crate::deliver::{Failure, Outcome};
use crate::model::{QueuedMessage, QueuedRecipient};

/// Octets of message text read and written at a time.
pub const BLOCK: usize = 64 * 1024;

/// What a completed transaction did.
pub(super) struct Transaction {
    /// Outcomes that stand, by recipient ID.
    pub outcomes: Vec<(i64, Outcome)>,
    /// Recipients the peer put off with `452` because of its recipient limit, with that reply.
    pub excess: Vec<(QueuedRecipient, Response)>,
    /// The connection, when it is in a known state for another transaction.
    pub conn: Option<Held>,
}

/// Why a transaction did not complete.
#[derive(Debug)]
pub(super) enum TxError {
    /// The connection failed before the end of the text was sent: nothing was delivered.
    NotSent(ConnError),
    /// The connection failed after the end of the text was sent and before the peer answered:
    /// the peer may have the message.
    Unknown(ConnError),
}

/// What a peer lacks that the message needs (RFC 1870 §6, RFC 6531 §3.2, RFC 6152 §3), if any.
fn refusal(msg: &QueuedMessage, text: &dyn MessageText, held: &Held) -> Option<Failure> {
    let (host, caps) = (&held.conn.host, &held.conn.caps);
    let size = text.size();
    let eight_bit = msg.params.body == Some(Body::EightBitMime) || text.eight_bit();
    let mut f = if caps.size_limit().is_some_and(|l| size > l) {
        Failure::new(
            Status::TOO_BIG_FOR_SYSTEM,
            format!(
                "the message ({size} octets) is larger than {host} accepts ({} octets)",
                caps.size_limit().unwrap_or(0)
            ),
        )
    } else if msg.params.smtputf8 && !caps.smtputf8 {
        Failure::new(Status::NON_ASCII_ADDRESS,
            format!(
                "the message needs SMTPUTF8 (international addresses), which {host} does not support"
            ),
        )
    } else if eight_bit && !caps.eight_bit_mime {
        Failure::new(
            Status::CONVERSION_NOT_SUPPORTED,
            format!("the message has 8-bit content and {host} does not support 8BITMIME"),
        )
    } else {
        return None;
    };
    f.remote_mta = Some(host.clone());
    Some(f)
}

/// True for the reply of a peer whose recipient limit was reached (RFC 5321 §4.5.3.1.10).
fn is_excess(r: &Response) -> bool {
    r.code == 452 && r.status.is_none_or(|s| s.subject == 5 && s.detail == 3)
}

/// The replies to the envelope, sorted: outcomes, accepted recipients and excess ones.
struct Envelope<'r> {
    outcomes: Vec<(i64, Outcome)>,
    accepted: Vec<&'r QueuedRecipient>,
    excess: Vec<(QueuedRecipient, Response)>,
}

impl<'r> Envelope<'r> {
    fn rcpt(&mut self, mail: &Response, reply: Response, r: &'r QueuedRecipient, host: &str) {
        if !mail.is_success() {
            self.outcomes.push((r.id, classify(mail, host, "sender")));
        } else if reply.is_success() {
            self.accepted.push(r);
        } else if is_excess(&reply) {
            self.excess.push((r.clone(), reply));
        } else {
            self.outcomes
                .push((r.id, classify(&reply, host, "recipient")));
        }
    }
}

/// Runs one transaction for `rcpts` on `held`.
pub(super) async fn run(
    mut held: Held,
    o: &OutboundConfig,
    msg: &QueuedMessage,
    text: &dyn MessageText,
    rcpts: &[QueuedRecipient],
    org_meta: Option<&str>,
) -> Result<Transaction, TxError> {
    if let Some(f) = refusal(msg, text, &held) {
        let outcomes = rcpts
            .iter()
            .map(|r| (r.id, Outcome::Failed(f.clone())))
            .collect();
        return Ok(Transaction {
            outcomes,
            excess: Vec::new(),
            conn: Some(held),
        });
    }
    if let Some(meta) = org_meta {
        // The organization's metadata for this transaction (see crate::org): before MAIL.
        let c = &mut held.conn;
        c.send(
            format!("X-ORG-META {meta}\r\n").as_bytes(),
            o.command_timeout,
        )
        .await
        .map_err(TxError::NotSent)?;
        let r = c.read(o.command_timeout).await.map_err(TxError::NotSent)?;
        if !r.is_success() {
            let host = c.host.clone();
            let f = Failure {
                status: mailroom_proto::smtp::Status::new(
                    mailroom_proto::smtp::Class::Transient,
                    7,
                    0,
                ),
                reason: format!("{host} refused the organization's metadata"),
                diagnostic: Some(r.to_string()),
                remote_mta: Some(host),
            };
            let outcomes = rcpts
                .iter()
                .map(|r| (r.id, Outcome::Deferred(f.clone())))
                .collect();
            return Ok(Transaction {
                outcomes,
                excess: Vec::new(),
                conn: None,
            });
        }
    }
    let (env, go) = send_envelope(&mut held.conn, o, msg, text, rcpts).await?;
    let c = &mut held.conn;
    let host = c.host.clone();
    let dsn = c.caps.dsn;
    let Envelope {
        mut outcomes,
        accepted,
        excess,
    } = env;
    let mut clean = outcomes.is_empty() && excess.is_empty();
    match go {
        Some(go) if go.code == 354 && !accepted.is_empty() => {
            send_text(c, text, o.block_timeout).await?;
            let end = c.read(o.data_end_timeout).await.map_err(TxError::Unknown)?;
            // From here on the outcomes stand.
            clean &= end.is_success();
            for r in &accepted {
                let tls = held.conn.tls_detail();
                outcomes.push((r.id, with_dsn(classify(&end, &host, "message"), dsn, tls)));
            }
        }
        Some(go) if go.code == 354 => {
            // Pipelined DATA went through although no recipient was accepted: end it empty.
            // Every recipient already has its outcome; if this fails, only the connection is lost.
            let ended = async {
                c.send(b".\r\n", o.block_timeout).await?;
                c.read(o.data_end_timeout).await
            };
            if ended.await.is_err() {
                return Ok(Transaction {
                    outcomes,
                    excess,
                    conn: None,
                });
            }
        }
        Some(go) => {
            clean = false;
            for r in &accepted {
                outcomes.push((r.id, classify(&go, &host, "message")));
            }
        }
        None => {}
    }
    held.conn.messages += 1;
    let conn = if clean {
        Some(held)
    } else {
        reset(held, o.command_timeout).await
    };
    Ok(Transaction {
        outcomes,
        excess,
        conn,
    })
}

/// MAIL, each RCPT and DATA, pipelined when the peer offers it (RFC 2920: one write, then the
/// replies in order); returns what the replies said and the reply to DATA, if it was sent.
async fn send_envelope<'r>(
    c: &mut crate::client::Conn,
    o: &OutboundConfig,
    msg: &QueuedMessage,
    text: &dyn MessageText,
    rcpts: &'r [QueuedRecipient],
) -> Result<(Envelope<'r>, Option<Response>), TxError> {
    let host = c.host.clone();
    let caps = c.caps.clone();
    let eight_bit = msg.params.body == Some(Body::EightBitMime) || text.eight_bit();
    let mail = mail_command(
        &msg.sender,
        &caps,
        text.size(),
        eight_bit,
        msg.params.smtputf8,
        msg.params.ret,
        msg.params.envid.as_deref(),
    );
    let rcpt_lines: Vec<String> = rcpts
        .iter()
        .map(|r| rcpt_command(&r.address, &caps, r.notify, r.orcpt.as_deref()))
        .collect();
    let mut env = Envelope {
        outcomes: Vec::new(),
        accepted: Vec::new(),
        excess: Vec::new(),
    };
    let not_sent = TxError::NotSent;
    let go = if caps.pipelining {
        // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order.
        let mut batch = mail.into_bytes();
        for l in &rcpt_lines {
            batch.extend_from_slice(l.as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
        c.send(&batch, o.command_timeout).await.map_err(not_sent)?;
        let mail_reply = c.read(o.command_timeout).await.map_err(not_sent)?;
        closing(&mail_reply, &host)?;
        for r in rcpts {
            let reply = c.read(o.command_timeout).await.map_err(not_sent)?;
            env.rcpt(&mail_reply, reply, r, &host);
        }
        Some(c.read(o.data_timeout).await.map_err(not_sent)?)
    } else {
        c.send(mail.as_bytes(), o.command_timeout)
            .await
            .map_err(not_sent)?;
        let mail_reply = c.read(o.command_timeout).await.map_err(not_sent)?;
        closing(&mail_reply, &host)?;
        if mail_reply.is_success() {
            for (r, line) in rcpts.iter().zip(&rcpt_lines) {
                c.send(line.as_bytes(), o.command_timeout)
                    .await
                    .map_err(not_sent)?;
                let reply = c.read(o.command_timeout).await.map_err(not_sent)?;
                env.rcpt(&mail_reply, reply, r, &host);
            }
        } else {
            for r in rcpts {
                env.rcpt(&mail_reply, mail_reply.clone(), r, &host);
            }
        }
        if env.accepted.is_empty() {
            None
        } else {
            c.send(b"DATA\r\n", o.command_timeout)
                .await
                .map_err(not_sent)?;
            Some(c.read(o.data_timeout).await.map_err(not_sent)?)
        }
    };
    Ok((env, go))
}

/// A `421` to MAIL: the peer is closing the connection (RFC 5321 §3.8), typically one it kept
/// idle too long. Nothing was delivered; the recipients may go at once on a fresh connection.
fn closing(mail: &Response, host: &str) -> Result<(), TxError> {
    if mail.code == 421 {
        return Err(TxError::NotSent(ConnError(format!(
            "{host} is closing the connection: {mail}"
        ))));
    }
    Ok(())
}

/// Streams the text, dot-stuffed, each block under its own deadline.
async fn send_text(
    c: &mut crate::client::Conn,
    text: &dyn MessageText,
    block_timeout: Duration,
) -> Result<(), TxError> {
    let local = |e: std::io::Error| {
        TxError::NotSent(ConnError(format!(
            "the message could not be read from the queue: {e}"
        )))
    };
    let mut reader = text.open().await.map_err(local)?;
    let mut stuffer = DotStuffer::default();
    let mut buf = vec![0u8; BLOCK];
    let mut out = Vec::with_capacity(BLOCK + BLOCK / 32);
    loop {
        let n = reader.read(&mut buf).await.map_err(local)?;
        if n == 0 {
            break;
        }
        out.clear();
        stuffer.push(&buf[..n], &mut out);
        c.send(&out, block_timeout)
            .await
            .map_err(TxError::NotSent)?;
    }
    out.clear();
    stuffer.finish(&mut out);
    // The last block carries the end of data: once it is out, the peer may have the message.
    c.send(&out, block_timeout).await.map_err(TxError::Unknown)
}

/// Leaves the connection in a known state after a transaction that did not go cleanly: `RSET`,
/// or closed if that fails. The transaction's outcomes are not affected either way.
async fn reset(mut held: Held, timeout: Duration) -> Option<Held> {
    let ok = async {
        held.conn.send(b"RSET\r\n", timeout).await?;
        held.conn.read(timeout).await
    };
    match ok.await {
        Ok(r) if r.is_success() => Some(held),
        _ => None,
    }
}

/// Marks a success with whether the peer took the DSN parameters along, and the TLS it went
/// over.
fn with_dsn(o: Outcome, dsn: bool, tls: String) -> Outcome {
    match o {
        Outcome::Relayed { remote_mta, .. } => Outcome::Relayed {
            remote_mta,
            dsn,
            tls: Some(tls),
        },
        other => other,
    }
}
