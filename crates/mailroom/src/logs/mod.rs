//! What the server writes to its log: every value a peer may have chosen (a user name from
//! LOGIN, an EHLO name, an address, a reply) is written with its control characters escaped, so
//! that no peer can forge a log line with CR/LF, nor reach an administrator's terminal with
//! escape sequences (issue 21: an IMAP LOGIN literal with CR/LF wrote a whole line of its own).
//! It is done once, in the field formatter every line goes through, rather than at each of the
//! log calls.

use std::fmt::Write as _;

mod sink;

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

/// Sets up the log as `log` says (`log.target`, `log.format`), filtered by `filter`. A journal
/// or syslog socket that cannot be reached leaves the log on standard error, and says so there.
pub fn install(log: &crate::config::LogConfig, filter: tracing_subscriber::EnvFilter) {
    use crate::config::{LogFormat, LogTarget};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let socket = match log.target {
        LogTarget::Stderr => None,
        LogTarget::Journald => Some((
            sink::Kind::Journald,
            log.socket
                .clone()
                .unwrap_or_else(|| "/run/systemd/journal/socket".into()),
        )),
        LogTarget::Syslog => Some((
            sink::Kind::Syslog,
            log.socket.clone().unwrap_or_else(|| "/dev/log".into()),
        )),
    };
    let mut why_not = None;
    if let Some((kind, path)) = socket {
        match sink::SocketLayer::new(kind, path.clone()) {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
                return;
            }
            Err(e) => why_not = Some(format!("{}: {e}", path.display())),
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match log.format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .fmt_fields(fields())
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .init(),
    }
    if let Some(why) = why_not {
        tracing::error!(
            "cannot log to {:?} ({why}): logging to standard error",
            log.target
        );
    }
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
    let m = crate::metrics::get();
    let class = d.dsn.get(..1).unwrap_or("0");
    m.recipients.with_label_values(&[d.status, class]).inc();
    if d.status == "sent" {
        m.receipt_to_delivery.observe(d.delay);
    }
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
