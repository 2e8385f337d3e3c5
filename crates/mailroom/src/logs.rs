//! What the server writes to its log: every value a peer may have chosen (a user name from
//! LOGIN, an EHLO name, an address, a reply) is written with its control characters escaped, so
//! that no peer can forge a log line with CR/LF, nor reach an administrator's terminal with
//! escape sequences (issue 21: an IMAP LOGIN literal with CR/LF wrote a whole line of its own).
//! It is done once, in the field formatter every line goes through, rather than at each of the
//! log calls.

use std::fmt::Write as _;

/// `text` with every control character (C0, DEL and C1: CR, LF, TAB, ESC…) written as a Rust
/// escape (`\r`, `\n`, `\t`, `\u{1b}`): printable, one line, and unambiguous.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The field formatter of the log: `name=value` pairs, the message first without a name, each
/// value escaped ([`escape`]).
pub fn fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", escape(&text))
        } else {
            write!(w, "{}={}", field.name(), escape(&text))
        }
    })
    .delimited(" ")
}

/// One recipient's outcome, as its log line says it (`docs/logging.md`).
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The message's queue ID.
    pub queue_id: &'a str,
    /// The final recipient.
    pub recipient: &'a str,
    /// `local`, the server that answered, or `none`.
    pub relay: &'a str,
    /// Seconds since the message arrived.
    pub delay: f64,
    /// The RFC 3463 status.
    pub dsn: &'a str,
    /// `sent`, `deferred`, `bounced` or `expired`.
    pub status: &'a str,
    /// The outcome in words.
    pub reply: &'a str,
}

/// Writes the `delivery` line of one recipient's outcome: `delivery queue_id=… recipient=<…>
/// relay=… delay=… dsn=… status=… reply="…"` (a contract: `docs/logging.md`). Written by the
/// queue for its attempts, and by ingest for the mailboxes it fills at once.
pub fn delivery(d: &Delivery<'_>) {
    tracing::info!(
        target: "mailroom::message",
        queue_id = %d.queue_id,
        recipient = %format_args!("<{}>", d.recipient),
        relay = %d.relay,
        delay = %format_args!("{:.1}", d.delay),
        dsn = %d.dsn,
        status = %d.status,
        reply = ?d.reply,
        "delivery"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("alice@example.test"), "alice@example.test");
        assert_eq!(
            escape("x\r\n2026-12-07T00:00:00Z  INFO forged"),
            "x\\r\\n2026-12-07T00:00:00Z  INFO forged"
        );
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("tab\there\u{7f}\u{85}"), "tab\\there\\u{7f}\\u{85}");
        assert_eq!(escape("Grüße"), "Grüße");
    }
}
