//! POP3 (RFC 1939) with CAPA (RFC 2449) and AUTH (RFC 5034): command parsing and response framing.
//!
//! Commands are case-insensitive keywords of 3–4 characters; arguments are separated by single
//! spaces. Message numbers are 1-based. Multi-line responses are dot-stuffed and end with `.CRLF`
//! (RFC 1939 §3).

use thiserror::Error;

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS string`: the rest of the line, spaces included (RFC 1939 §7).
    Pass(String),
    /// `AUTH mechanism [initial-response]` (RFC 5034 §4); `AUTH` alone lists mechanisms.
    Auth {
        /// The SASL mechanism, upper case; empty for the listing form.
        mechanism: String,
        /// The base64 initial response, if given (`=` means empty).
        initial: Option<String>,
    },
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
    /// `TOP msg n`.
    Top(u32, u32),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `STLS` (RFC 2595), recognised so that it can be refused clearly until TLS exists.
    Stls,
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Unknown keyword.
    #[error("unknown command")]
    Unknown,
    /// Known keyword, wrong arguments; the text is the expected syntax.
    #[error("syntax: {0}")]
    Syntax(&'static str),
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = String::from_utf8_lossy(line);
    let (kw, arg) = match line.split_once(' ') {
        Some((k, a)) => (k, Some(a)),
        None => (line.as_ref(), None),
    };
    let kw = kw.to_ascii_uppercase();
    let words: Vec<&str> = arg.map(|a| a.split(' ').collect()).unwrap_or_default();
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| *n > 0)
    };
    let none = |c: Command, syn: &'static str| {
        if arg.is_none() {
            Ok(c)
        } else {
            Err(CommandError::Syntax(syn))
        }
    };
    let one_num = |syn: &'static str| -> Result<u32, CommandError> {
        match words.as_slice() {
            [n] => num(n).ok_or(CommandError::Syntax(syn)),
            _ => Err(CommandError::Syntax(syn)),
        }
    };
    let opt_num = |syn: &'static str| -> Result<Option<u32>, CommandError> {
        match words.as_slice() {
            [] => Ok(None),
            [n] => num(n).map(Some).ok_or(CommandError::Syntax(syn)),
            _ => Err(CommandError::Syntax(syn)),
        }
    };
    match kw.as_str() {
        "USER" => match words.as_slice() {
            [name] if !name.is_empty() => Ok(Command::User(name.to_string())),
            _ => Err(CommandError::Syntax("USER name")),
        },
        "PASS" => match arg {
            Some(p) if !p.is_empty() => Ok(Command::Pass(p.to_string())),
            _ => Err(CommandError::Syntax("PASS password")),
        },
        "AUTH" => match words.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: String::new(),
                initial: None,
            }),
            [m] if !m.is_empty() => Ok(Command::Auth {
                mechanism: m.to_ascii_uppercase(),
                initial: None,
            }),
            [m, i] if !m.is_empty() && !i.is_empty() => Ok(Command::Auth {
                mechanism: m.to_ascii_uppercase(),
                initial: Some(i.to_string()),
            }),
            _ => Err(CommandError::Syntax("AUTH mechanism [initial-response]")),
        },
        "CAPA" => none(Command::Capa, "CAPA"),
        "STAT" => none(Command::Stat, "STAT"),
        "LIST" => Ok(Command::List(opt_num("LIST [msg]")?)),
        "RETR" => Ok(Command::Retr(one_num("RETR msg")?)),
        "DELE" => Ok(Command::Dele(one_num("DELE msg")?)),
        "NOOP" => none(Command::Noop, "NOOP"),
        "RSET" => none(Command::Rset, "RSET"),
        "QUIT" => none(Command::Quit, "QUIT"),
        "TOP" => match words.as_slice() {
            [m, n] => {
                let m = num(m).ok_or(CommandError::Syntax("TOP msg lines"))?;
                let n = if *n == "0" { Some(0) } else { num(n) };
                Ok(Command::Top(
                    m,
                    n.ok_or(CommandError::Syntax("TOP msg lines"))?,
                ))
            }
            _ => Err(CommandError::Syntax("TOP msg lines")),
        },
        "UIDL" => Ok(Command::Uidl(opt_num("UIDL [msg]")?)),
        "STLS" => none(Command::Stls, "STLS"),
        _ => Err(CommandError::Unknown),
    }
}

/// Appends `+OK text` or `-ERR text` with CRLF; CR/LF in text become spaces.
pub fn status_line(ok: bool, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(if ok { b"+OK" } else { b"-ERR" });
    if !text.is_empty() {
        out.push(b' ');
        out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a message as a multi-line response body, one piece at a time: every line starting
/// with `.` gets another `.`, a final CRLF is supplied if missing, and `.CRLF` terminates it
/// (RFC 1939 §3). With `body_lines = Some(n)`, only the header section, the blank line and `n`
/// body lines are sent (TOP, RFC 1939 §7).
///
/// A session streams a stored message through this in blocks, so that reading a large message
/// never holds it whole (nor a stuffed copy of it).
#[derive(Debug, Clone)]
pub struct MultilineWriter {
    body_lines: Option<u32>,
    at_line_start: bool,
    /// The current line so far: 0 nothing, 1 a lone CR (either may be the blank line), 2 more.
    blank: u8,
    in_body: bool,
    body_count: u32,
    /// TOP's limit is reached: the rest is not sent.
    stopped: bool,
}

impl MultilineWriter {
    /// A writer for a whole message (`None`) or for TOP with `n` body lines.
    pub fn new(body_lines: Option<u32>) -> MultilineWriter {
        MultilineWriter {
            body_lines,
            at_line_start: true,
            blank: 0,
            in_body: false,
            body_count: 0,
            stopped: false,
        }
    }

    /// Appends the response form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.stopped {
            if self.at_line_start {
                // A new line: in the body, it counts against TOP's limit.
                if self.in_body {
                    if let Some(limit) = self.body_lines {
                        if self.body_count >= limit {
                            self.stopped = true;
                            return;
                        }
                    }
                    self.body_count += 1;
                }
                if rest[0] == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
                self.blank = 0;
            }
            let (line, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(p) => (&rest[..=p], true),
                None => (rest, false),
            };
            out.extend_from_slice(line);
            let content = if ended { &line[..line.len() - 1] } else { line };
            self.blank = match (self.blank, content) {
                (b, []) => b,
                (0, b"\r") => 1,
                _ => 2,
            };
            if ended {
                if !self.in_body && self.blank < 2 {
                    self.in_body = true;
                }
                self.at_line_start = true;
            }
            rest = &rest[line.len()..];
        }
    }

    /// Appends the end: a CRLF if the last line had none, then `.CRLF`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start && !self.stopped {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Appends a whole message as a multi-line response body (see [`MultilineWriter`]).
pub fn write_multiline(msg: &[u8], body_lines: Option<u32>, out: &mut Vec<u8>) {
    let mut w = MultilineWriter::new(body_lines);
    w.push(msg, out);
    w.finish(out);
}

/// Decodes a SASL PLAIN message `authzid NUL authcid NUL passwd` (RFC 4616 §2).
/// Returns (authzid, authcid, password).
pub fn sasl_plain(decoded: &[u8]) -> Option<(String, String, String)> {
    crate::sasl::plain(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: Vec<(&str, Command)> = vec![
            (
                "USER alice@example.com",
                Command::User("alice@example.com".into()),
            ),
            (
                "pass secret with spaces",
                Command::Pass("secret with spaces".into()),
            ),
            ("STAT", Command::Stat),
            ("LIST", Command::List(None)),
            ("LIST 2", Command::List(Some(2))),
            ("RETR 1", Command::Retr(1)),
            ("DELE 3", Command::Dele(3)),
            ("TOP 1 0", Command::Top(1, 0)),
            ("TOP 1 10", Command::Top(1, 10)),
            ("UIDL", Command::Uidl(None)),
            ("uidl 4", Command::Uidl(Some(4))),
            ("CAPA", Command::Capa),
            (
                "AUTH",
                Command::Auth {
                    mechanism: "".into(),
                    initial: None,
                },
            ),
            (
                "AUTH plain",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: None,
                },
            ),
            (
                "AUTH PLAIN AGFAAGI=",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("AGFAAGI=".into()),
                },
            ),
            ("NOOP", Command::Noop),
            ("RSET", Command::Rset),
            ("QUIT", Command::Quit),
        ];
        for (line, want) in ok {
            assert_eq!(parse(line.as_bytes()), Ok(want), "{line}");
        }
        let bad: Vec<(&str, CommandError)> = vec![
            ("XYZZY", CommandError::Unknown),
            ("", CommandError::Unknown),
            ("USER", CommandError::Syntax("USER name")),
            ("PASS", CommandError::Syntax("PASS password")),
            ("RETR", CommandError::Syntax("RETR msg")),
            ("RETR 0", CommandError::Syntax("RETR msg")),
            ("RETR x", CommandError::Syntax("RETR msg")),
            ("RETR 1 2", CommandError::Syntax("RETR msg")),
            ("LIST -1", CommandError::Syntax("LIST [msg]")),
            ("TOP 1", CommandError::Syntax("TOP msg lines")),
            ("STAT now", CommandError::Syntax("STAT")),
            ("DELE 99999999999", CommandError::Syntax("DELE msg")),
        ];
        for (line, want) in bad {
            assert_eq!(parse(line.as_bytes()), Err(want), "{line}");
        }
    }

    #[test]
    fn multiline_stuffing_and_top() {
        let msg = b"Subject: x\r\n\r\n.line1\r\nline2\r\nline3";
        let mut out = Vec::new();
        write_multiline(msg, None, &mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n..line1\r\nline2\r\nline3\r\n.\r\n");
        let mut out = Vec::new();
        write_multiline(msg, Some(1), &mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n..line1\r\n.\r\n");
        let mut out = Vec::new();
        write_multiline(msg, Some(0), &mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n.\r\n");
    }

    #[test]
    fn sasl_plain_table() {
        assert_eq!(
            sasl_plain(b"\0alice\0pw"),
            Some(("".into(), "alice".into(), "pw".into()))
        );
        assert_eq!(sasl_plain(b"alice\0pw"), None);
        assert_eq!(sasl_plain(b"\0\0pw"), None);
        assert_eq!(sasl_plain(b"a\0b\0c\0d"), None);
    }

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        status_line(true, "2 320", &mut out);
        status_line(false, "bad\r\nINJECT", &mut out);
        assert_eq!(out, b"+OK 2 320\r\n-ERR bad  INJECT\r\n");
    }
}
