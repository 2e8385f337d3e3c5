//! Command-line framing shared by SMTP and POP3, with a hard length limit.
//!
//! A line ends at LF; a CR before it is removed. (Command lines tolerate a bare LF as many servers
//! do; message text does not, see [`crate::smtp::data`].) A line longer than the limit is discarded
//! as it streams in, so a peer cannot make the server buffer without bound, and is reported once its
//! end arrives so that the reply stays in step with the peer's commands.

/// One framed line, or the news that an over-long one was discarded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its CRLF.
    Line(&'a [u8]),
    /// A line longer than the limit ended; its content was dropped.
    TooLong,
}

/// Splits a byte stream into lines of at most `max` octets including CRLF.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max: usize,
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` octets (including CRLF).
    pub fn new(max: usize) -> LineFramer {
        LineFramer {
            max: max.max(3),
            discarding: false,
        }
    }

    /// The limit, in octets including CRLF.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Looks for the next line in `buf`. Returns the frame (if a line ended) and how many bytes of
    /// `buf` were consumed; consumed bytes must be dropped by the caller before the next call.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> (Option<Frame<'a>>, usize) {
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                if self.discarding {
                    self.discarding = false;
                    return (Some(Frame::TooLong), lf + 1);
                }
                if lf + 1 > self.max {
                    return (Some(Frame::TooLong), lf + 1);
                }
                let line = buf[..lf].strip_suffix(b"\r").unwrap_or(&buf[..lf]);
                (Some(Frame::Line(line)), lf + 1)
            }
            None if self.discarding || buf.len() >= self.max => {
                self.discarding = true;
                (None, buf.len())
            }
            None => (None, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_table() {
        let mut f = LineFramer::new(10);
        assert_eq!(f.next(b"NOOP\r\nQUIT"), (Some(Frame::Line(b"NOOP")), 6));
        assert_eq!(f.next(b"QUIT"), (None, 0));
        assert_eq!(f.next(b"QUIT\n"), (Some(Frame::Line(b"QUIT")), 5));
        assert_eq!(
            f.next(b"12345678\r\n"),
            (Some(Frame::Line(b"12345678")), 10)
        );
        assert_eq!(f.next(b"123456789\r\n"), (Some(Frame::TooLong), 11));
        // An over-long line arriving in pieces is discarded as it comes.
        assert_eq!(f.next(b"0123456789ab"), (None, 12));
        assert_eq!(f.next(b"cdef"), (None, 4));
        assert_eq!(f.next(b"gh\r\nNOOP\r\n"), (Some(Frame::TooLong), 4));
        assert_eq!(f.next(b"NOOP\r\n"), (Some(Frame::Line(b"NOOP")), 6));
    }
}
