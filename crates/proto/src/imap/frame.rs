//! Cutting the client's octets into whole commands (RFC 9051 §2.2.1, §4.3; RFC 7888).
//!
//! A command is one line, unless it carries literals: `{n}` at the end of a line announces `n`
//! octets that follow the line's CRLF, after which the command goes on with another line. A
//! synchronizing literal (`{n}`) waits for the server's continuation request (`+`) before the
//! client sends it; a non-synchronizing one (`{n+}`, LITERAL+/LITERAL-) comes at once. The
//! [`Framer`] finds where a command ends, tells the session when to send a continuation, and
//! enforces the limits before anything is buffered past them: a line too long, a literal too
//! large, a command too large.

/// Framing limits (every one configurable from `[imap]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, CRLF excluded (RFC 7162 §4 asks servers to take at least 8192 octets).
    pub max_line: usize,
    /// Largest literal.
    pub max_literal: u64,
    /// Largest command, literals kept in it included.
    pub max_command: u64,
    /// APPEND's message literals (RFC 9051 §6.3.12, RFC 3502) are offered to the session
    /// ([`Scan::Literal`]) instead of being kept in the command, once one is larger than this or
    /// would take the literals kept over it: the session streams them elsewhere, so that a
    /// command costs bounded memory and each message of a MULTIAPPEND is limited on its own.
    /// `None`: none is offered (before login).
    pub offer_over: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 65_536,
            max_literal: 25 * 1024 * 1024,
            max_command: 26 * 1024 * 1024,
            offer_over: None,
        }
    }
}

/// What [`Framer::scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// The command is not whole yet: read more.
    Incomplete,
    /// A synchronizing literal of `len` octets was announced and is acceptable: send a
    /// continuation request, then read more. Reported once per literal.
    Continue {
        /// The literal's length.
        len: u64,
    },
    /// A whole command: the first `len` octets of the buffer (its last CRLF included).
    Complete {
        /// Octets that make up the command.
        len: usize,
    },
    /// APPEND's message literal, offered to the session (see [`Limits::offer_over`]): its
    /// announcement starts at `open` (the `{`) and ends at `start` (after the line's LF); its
    /// `len` octets follow from `start` on. The session takes them out of the buffer, puts `{0}`
    /// and a CRLF at `open` in place of the announcement, sends the continuation itself for a
    /// synchronizing one, and calls [`Framer::taken`] with where the command goes on.
    Literal {
        /// Its length.
        len: u64,
        /// A synchronizing literal: the client waits for a continuation request.
        sync: bool,
        /// Where its announcement (`{`) is.
        open: usize,
        /// Where its octets begin.
        start: usize,
    },
    /// The input breaks a limit; see [`FrameError::recoverable`] for what the session may do.
    Error(FrameError),
}

/// A framing limit broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A line longer than [`Limits::max_line`].
    LineTooLong,
    /// A literal larger than [`Limits::max_literal`] (or the command as a whole over
    /// [`Limits::max_command`]); `sync` tells whether the client waits for a continuation (and
    /// so has not sent it).
    LiteralTooLarge {
        /// The announced length.
        len: u64,
        /// A synchronizing literal: the client has not sent its octets.
        sync: bool,
        /// The octets of the command up to and including the line with the literal's
        /// announcement (so that the session can find the tag and drop them).
        consumed: usize,
    },
}

impl FrameError {
    /// Whether the session can go on: a refused synchronizing literal was never sent, so the
    /// client is waiting for the tagged reply; anything else leaves the stream out of step.
    pub fn recoverable(&self) -> bool {
        matches!(self, FrameError::LiteralTooLarge { sync: true, .. })
    }
}

/// Finds the ends of commands in a growing buffer. After a [`Scan::Complete`] the session
/// removes the command's octets from its buffer and calls [`Framer::reset`].
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    /// Where the current line starts.
    line_start: usize,
    /// Where scanning for the end of the current line resumes.
    pos: usize,
    /// The end of a literal being read.
    literal_end: Option<usize>,
    /// Octets in the command's literals so far (those kept in it).
    literal_total: u64,
}

/// Whether a command's first line is an APPEND (`tag SP APPEND SP …`, RFC 9051 §6.3.12).
fn is_append(first: &[u8]) -> bool {
    let mut words = first.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
        && words.next().is_some()
}

impl Framer {
    /// A framer enforcing `limits`.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            line_start: 0,
            pos: 0,
            literal_end: None,
            literal_total: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a literal is being read (the session then reads in large pieces).
    pub fn in_literal(&self) -> bool {
        self.literal_end.is_some()
    }

    /// Starts on a new command at the buffer's start.
    pub fn reset(&mut self) {
        *self = Framer::new(self.limits);
    }

    /// The session took the literal offered by [`Scan::Literal`] out of the buffer; the
    /// command goes on at `resume` (just after the `{0}` and CRLF it put in its place).
    pub fn taken(&mut self, resume: usize) {
        self.literal_end = None;
        self.line_start = resume;
        self.pos = resume;
    }

    /// Scans `buf` (everything received since the command began) for the command's end.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        loop {
            if let Some(end) = self.literal_end {
                if buf.len() < end {
                    return Scan::Incomplete;
                }
                self.literal_end = None;
                self.line_start = end;
                self.pos = end;
            }
            let Some(nl) = buf[self.pos..].iter().position(|&b| b == b'\n') else {
                self.pos = buf.len();
                // (One more octet may be the CR of a line of exactly max_line: the same answer
                // whether or not its LF has come yet.)
                if buf.len() - self.line_start > self.limits.max_line + 1 {
                    return Scan::Error(FrameError::LineTooLong);
                }
                return Scan::Incomplete;
            };
            let end = self.pos + nl;
            let mut line = &buf[self.line_start..end];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.len() > self.limits.max_line {
                return Scan::Error(FrameError::LineTooLong);
            }
            let Some((len, sync)) = literal_announcement(line) else {
                return Scan::Complete { len: end + 1 };
            };
            if let Some(over) = self.limits.offer_over {
                let first = buf.split(|&b| b == b'\n').next().unwrap_or_default();
                let large = len > over || self.literal_total.saturating_add(len) > over;
                if large && len <= self.limits.max_literal && is_append(first) {
                    let open = self.line_start + line.iter().rposition(|&b| b == b'{').unwrap_or(0);
                    return Scan::Literal {
                        len,
                        sync,
                        open,
                        start: end + 1,
                    };
                }
            }
            self.literal_total = self.literal_total.saturating_add(len);
            if len > self.limits.max_literal
                || self.literal_total.saturating_add(end as u64) > self.limits.max_command
            {
                return Scan::Error(FrameError::LiteralTooLarge {
                    len,
                    sync,
                    consumed: end + 1,
                });
            }
            // `len` fits in memory: it is within max_literal.
            let literal_end = end + 1 + len as usize;
            self.literal_end = Some(literal_end);
            self.pos = literal_end;
            if sync {
                return Scan::Continue { len };
            }
        }
    }
}

/// The literal announced at the end of a line: `{n}`, `{n+}` (RFC 7888), or `~{n}` (literal8 of
/// RFC 3516, which has the same ending). Returns its length and whether it synchronizes.
pub fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let mut digits = &body[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_line: 40,
            max_literal: 100,
            max_command: 150,
            offer_over: None,
        }
    }

    /// APPEND's large literals are offered to the session, each within max_literal, and a
    /// MULTIAPPEND of messages that together pass max_command goes on (issue 21).
    #[test]
    fn append_literals_are_offered_once_large() {
        let mut f = Framer::new(Limits {
            offer_over: Some(10),
            ..limits()
        });
        let mut buf = b"a APPEND x {5+}\r\nhello (\\Seen) {90}\r\n".to_vec();
        let Scan::Literal {
            len,
            sync,
            open,
            start,
        } = f.scan(&buf)
        else {
            panic!("{:?}", f.scan(&buf));
        };
        assert_eq!((len, sync, start), (90, true, buf.len()));
        assert_eq!(&buf[open..], b"{90}\r\n");
        // The session streams the octets away and leaves `{0}` in their place.
        buf.truncate(open);
        buf.extend_from_slice(b"{0}\r\n");
        f.taken(buf.len());
        buf.extend_from_slice(b" {90+}\r\n");
        let Scan::Literal { sync: false, .. } = f.scan(&buf) else {
            panic!("the second message is offered too, past max_command together");
        };
        let mut f = Framer::new(Limits {
            offer_over: Some(10),
            ..limits()
        });
        assert_eq!(
            f.scan(b"a LOGIN {50+}\r\n"),
            Scan::Incomplete,
            "only APPEND's"
        );
        let mut f = Framer::new(Limits {
            offer_over: Some(10),
            ..limits()
        });
        assert!(matches!(
            f.scan(b"a APPEND x {101}\r\n"),
            Scan::Error(FrameError::LiteralTooLarge { .. })
        ));
    }

    #[test]
    fn announcements() {
        type Case<'a> = (&'a [u8], Option<(u64, bool)>);
        let cases: &[Case] = &[
            (b"a APPEND x {5}", Some((5, true))),
            (b"a APPEND x {5+}", Some((5, false))),
            (b"a APPEND x ~{12}", Some((12, true))),
            (b"a LOGIN {}", None),
            (b"a LOGIN {x}", None),
            (b"a NOOP", None),
            (b"a X {99999999999999999999}", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                literal_announcement(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn commands_with_literals() {
        let mut f = Framer::new(limits());
        let cmd = b"a LOGIN {3}\r\nbob {4+}\r\npass\r\nb NOOP\r\n";
        assert_eq!(f.scan(&cmd[..5]), Scan::Incomplete);
        assert_eq!(f.scan(&cmd[..13]), Scan::Continue { len: 3 });
        assert_eq!(f.scan(&cmd[..15]), Scan::Incomplete);
        assert_eq!(f.scan(&cmd[..]), Scan::Complete { len: 29 });
        f.reset();
        assert_eq!(f.scan(&cmd[29..]), Scan::Complete { len: 8 });
    }

    #[test]
    fn a_literal_may_hold_line_ends() {
        let mut f = Framer::new(limits());
        let cmd = b"a APPEND x {6+}\r\n\r\n\r\n{3}\r\n";
        assert_eq!(f.scan(cmd), Scan::Complete { len: cmd.len() });
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_taken_however_it_arrives() {
        let mut line = vec![b'a'; 40];
        line.extend_from_slice(b"\r\n");
        let mut f = Framer::new(limits());
        assert_eq!(f.scan(&line[..41]), Scan::Incomplete);
        assert_eq!(f.scan(&line), Scan::Complete { len: 42 });
        let mut f = Framer::new(limits());
        assert_eq!(f.scan(&line), Scan::Complete { len: 42 });
    }

    #[test]
    fn limits_are_enforced() {
        let mut f = Framer::new(limits());
        let long = [b'a'; 42];
        assert_eq!(f.scan(&long), Scan::Error(FrameError::LineTooLong));
        f.reset();
        let cmd = b"a APPEND x {101}\r\n";
        let e = f.scan(cmd);
        assert_eq!(
            e,
            Scan::Error(FrameError::LiteralTooLarge {
                len: 101,
                sync: true,
                consumed: cmd.len()
            })
        );
        f.reset();
        // Two literals within max_literal each, over max_command together.
        let cmd = b"a APPEND x {90+}\r\n";
        let mut buf = cmd.to_vec();
        buf.extend_from_slice(&[b'x'; 90]);
        buf.extend_from_slice(b" {90+}\r\n");
        assert!(matches!(
            f.scan(&buf),
            Scan::Error(FrameError::LiteralTooLarge { sync: false, .. })
        ));
    }
}
