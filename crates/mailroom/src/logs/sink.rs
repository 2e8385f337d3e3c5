//! The journal and syslog as log targets (`log.target`): each line is sent as one datagram to
//! the local socket, as the text line of `docs/logging.md` (so that what reads messages, such
//! as fail2ban's systemd backend, sees the fields), and for the journal also with each field
//! as a journal field of its own (`QUEUE_ID=…`, `CLIENT_ADDR=…`), which `journalctl QUEUE_ID=…`
//! selects on.
//!
//! The journal's native protocol (systemd's `sd_journal_send`, "Native Journal Protocol"):
//! `NAME=value\n` per field, or for a value with a line feed `NAME\n`, its length as 64-bit
//! little-endian, the value and `\n`. Syslog: RFC 3164 as the local socket takes it,
//! `<PRI>mailroom[PID]: line`, with facility mail (2).
//!
//! Written here rather than with tracing-journald because that crate puts only the message
//! in `MESSAGE`, and the contract is the whole line; syslog has no tracing layer of note.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The journal's native protocol.
    Journald,
    /// RFC 3164 on the local socket.
    Syslog,
}

/// A layer that sends every event to a local datagram socket.
#[derive(Debug)]
pub struct SocketLayer {
    kind: Kind,
    socket: UnixDatagram,
    path: PathBuf,
    pid: u32,
}

impl SocketLayer {
    /// A layer sending to `path`; fails when no socket can be made (the path is only tried
    /// at the first line).
    pub fn new(kind: Kind, path: PathBuf) -> std::io::Result<SocketLayer> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(&path)?;
        Ok(SocketLayer {
            kind,
            socket,
            path,
            pid: std::process::id(),
        })
    }
}

/// The fields of one event, each value as the text line writes it.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = super::escape(&format!("{value:?}")).into_owned();
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.push((field.name(), text));
        }
    }
}

/// The syslog severity of a level (RFC 5424 §6.2.1).
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The text line: `LEVEL target: message key=value …`, as the stderr line without its time.
fn line(level: &Level, target: &str, f: &Fields) -> String {
    let mut out = format!("{level:>5} {target}: {}", f.message);
    for (k, v) in &f.others {
        out.push_str(&format!(" {k}={v}"));
    }
    out
}

/// A journal field name for a tracing field: upper case, `[A-Z0-9_]`, not starting with `_`
/// or a digit (those are the journal's own).
fn journal_name(name: &str) -> String {
    let mut n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    while n.starts_with('_') || n.starts_with(|c: char| c.is_ascii_digit()) {
        n.remove(0);
    }
    n
}

/// Field names with a meaning to the journal (systemd.journal-fields(7)).
const RESERVED: &[&str] = &[
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_FUNC",
    "ERRNO",
    "INVOCATION_ID",
    "USER_INVOCATION_ID",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_RAW",
    "DOCUMENTATION",
    "TID",
    "UNIT",
    "USER_UNIT",
    "TARGET",
];

/// Appends one field in the journal's native protocol.
fn journal_field(out: &mut Vec<u8>, name: &str, value: &str) {
    if value.contains('\n') {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    } else {
        out.extend_from_slice(format!("{name}={value}\n").as_bytes());
    }
}

/// The datagram of one event.
fn datagram(kind: Kind, pid: u32, level: &Level, target: &str, f: &Fields) -> Vec<u8> {
    let text = line(level, target, f);
    match kind {
        Kind::Syslog => {
            // Facility mail (2): PRI = 2 × 8 + severity.
            format!("<{}>mailroom[{pid}]: {text}", 16 + severity(level)).into_bytes()
        }
        Kind::Journald => {
            let mut out = Vec::with_capacity(text.len() + 256);
            journal_field(&mut out, "MESSAGE", &text);
            journal_field(&mut out, "PRIORITY", &severity(level).to_string());
            journal_field(&mut out, "SYSLOG_FACILITY", "2");
            journal_field(&mut out, "SYSLOG_IDENTIFIER", "mailroom");
            journal_field(&mut out, "SYSLOG_PID", &pid.to_string());
            journal_field(&mut out, "TARGET", target);
            for (k, v) in &f.others {
                let mut name = journal_name(k);
                if name.is_empty() {
                    continue;
                }
                // (The journal's own fields keep their meaning: `message_id` is not
                // MESSAGE_ID, the journal's catalog ID.)
                if RESERVED.contains(&name.as_str()) {
                    name = format!("MAILROOM_{name}");
                }
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                journal_field(&mut out, &name, v);
            }
            out
        }
    }
}

impl<S: Subscriber> Layer<S> for SocketLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let bytes = datagram(self.kind, self.pid, meta.level(), meta.target(), &f);
        // (A socket made again by its daemon is a new one: connect once more before giving up.)
        let sent = self.socket.send(&bytes).or_else(|_| {
            self.socket
                .connect(&self.path)
                .and_then(|()| self.socket.send(&bytes))
        });
        if let Err(e) = sent {
            // Nowhere else to say it: standard error, once per failure.
            eprintln!(
                "mailroom: cannot log to {} ({e}): {}",
                self.path.display(),
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            message: "received".into(),
            others: vec![
                ("queue_id", "06H562FV2MPPYHA0".into()),
                ("reply", "\"250 ok\"".into()),
                ("_hidden", "x".into()),
            ],
        }
    }

    #[test]
    fn syslog_lines_have_facility_mail_and_the_text_line() {
        let d = datagram(Kind::Syslog, 42, &Level::WARN, "mailroom::auth", &fields());
        assert_eq!(
            String::from_utf8(d).unwrap(),
            "<20>mailroom[42]:  WARN mailroom::auth: received queue_id=06H562FV2MPPYHA0 reply=\"250 ok\" _hidden=x"
        );
    }

    #[test]
    fn journal_entries_carry_the_line_and_each_field() {
        let d = datagram(
            Kind::Journald,
            42,
            &Level::INFO,
            "mailroom::message",
            &fields(),
        );
        let text = String::from_utf8(d).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "MESSAGE= INFO mailroom::message: received queue_id=06H562FV2MPPYHA0 reply=\"250 ok\" _hidden=x",
                "PRIORITY=6",
                "SYSLOG_FACILITY=2",
                "SYSLOG_IDENTIFIER=mailroom",
                "SYSLOG_PID=42",
                "TARGET=mailroom::message",
                "QUEUE_ID=06H562FV2MPPYHA0",
                "REPLY=250 ok",
                "HIDDEN=x",
            ]
        );
        let mut out = Vec::new();
        journal_field(&mut out, "MESSAGE", "a\nb");
        assert_eq!(out, b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }
}
