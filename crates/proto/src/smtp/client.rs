//! The client side of SMTP (RFC 5321 §4.2, §3.3): parsing a server's replies, reading its EHLO
//! capabilities, and writing the envelope commands and message text.
//!
//! A peer's reply is data, not ours to trust: [`Response`] keeps whatever the peer sent, and its
//! class comes from the basic code (RFC 3463 §2: when the enhanced code disagrees, the basic code
//! wins), so a `450 5.2.2` is treated as transient. Nothing here panics on peer input.

use std::fmt;

use thiserror::Error;

use super::params::xtext_encode;
use super::reply::{Class, Status};
use super::{DsnRet, Notify};

/// Longest reply line accepted from a peer (RFC 5321 §4.5.3.1.5 says 512; some send more).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 256;

/// A reply received from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The basic code.
    pub code: u16,
    /// The enhanced status code, when the first line starts with one.
    pub status: Option<Status>,
    /// The text of each line, without code and enhanced code.
    pub lines: Vec<String>,
}

impl Response {
    /// The class, from the basic code.
    pub fn class(&self) -> Class {
        Class::of_code(self.code)
    }

    /// The enhanced status to report: the peer's if its class agrees with the basic code,
    /// otherwise a generic one of the right class (X.0.0).
    pub fn effective_status(&self) -> Status {
        match self.status {
            Some(s) if s.class == self.class() => s,
            _ => Status::new(self.class(), 0, 0),
        }
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        self.code / 100 == 2
    }

    /// True for 3xx (354, 334).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }
}

impl fmt::Display for Response {
    /// The reply as one line, as an NDR quotes it: `550 5.1.1 No such user`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(s) = self.status {
            write!(f, " {s}")?;
        }
        let text = self.lines.join(" ");
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// A malformed reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// A line does not start with three digits and a space or hyphen.
    #[error("malformed reply line {0:?}")]
    Syntax(String),
    /// Lines of one reply carry different codes.
    #[error("reply lines disagree on the code")]
    MixedCodes,
    /// A line or the whole reply is too long.
    #[error("reply too long")]
    TooLong,
}

/// Parses one complete reply from the start of `buf`. Returns the reply and the bytes it used, or
/// `None` if more input is needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, ResponseError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    let mut status = None;
    loop {
        let Some(lf) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > MAX_REPLY_LINE {
                return Err(ResponseError::TooLong);
            }
            return Ok(None);
        };
        let raw = &buf[pos..pos + lf];
        pos += lf + 1;
        if raw.len() > MAX_REPLY_LINE {
            return Err(ResponseError::TooLong);
        }
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        let b = line.as_bytes();
        if b.len() < 3
            || !b[..3].iter().all(u8::is_ascii_digit)
            || (b.len() > 3 && b[3] != b' ' && b[3] != b'-')
        {
            return Err(ResponseError::Syntax(line));
        }
        let Some(c) = line.get(..3).and_then(|d| d.parse::<u16>().ok()) else {
            return Err(ResponseError::Syntax(line));
        };
        if !(200..600).contains(&c) {
            return Err(ResponseError::Syntax(line));
        }
        if *code.get_or_insert(c) != c {
            return Err(ResponseError::MixedCodes);
        }
        let last = b.len() == 3 || b[3] == b' ';
        let mut text = line.get(4..).unwrap_or("").to_string();
        // An enhanced status code leads each line when the server uses them (RFC 2034 §3).
        if let Some((first, rest)) = text.split_once(' ').or(Some((text.as_str(), ""))) {
            if let Some(s) = Status::parse(first) {
                if lines.is_empty() {
                    status = Some(s);
                }
                text = rest.to_string();
            }
        }
        lines.push(text);
        if lines.len() > MAX_REPLY_LINES {
            return Err(ResponseError::TooLong);
        }
        if last {
            let code = code.unwrap_or(0);
            return Ok(Some((
                Response {
                    code,
                    status,
                    lines,
                },
                pos,
            )));
        }
    }
}

/// What a server advertised in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// SIZE, with the limit if given (0 or absent: no fixed limit).
    pub size: Option<u64>,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// AUTH mechanisms (RFC 4954).
    pub auth: Vec<String>,
    /// Every keyword, upper case, in the order given.
    pub keywords: Vec<String>,
}

impl Capabilities {
    /// Reads the capabilities from an EHLO reply (the first line is the greeting).
    pub fn from_ehlo(r: &Response) -> Capabilities {
        let mut c = Capabilities::default();
        for line in r.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(kw) = words.next() else { continue };
            let kw = kw.to_ascii_uppercase();
            match kw.as_str() {
                "SIZE" => c.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                "PIPELINING" => c.pipelining = true,
                "8BITMIME" => c.eight_bit_mime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "CHUNKING" => c.chunking = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status_codes = true,
                "STARTTLS" => c.starttls = true,
                "AUTH" => c.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
            c.keywords.push(kw);
        }
        c
    }

    /// The size limit, if the server has a fixed one.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&s| s > 0)
    }
}

/// The MAIL command for a message (RFC 5321 §4.1.1.2), with the parameters the peer supports.
pub fn mail_command(
    from: &str,
    caps: &Capabilities,
    size: u64,
    eight_bit: bool,
    smtputf8: bool,
    ret: Option<DsnRet>,
    envid: Option<&str>,
) -> String {
    let mut s = format!("MAIL FROM:<{from}>");
    if caps.size.is_some() {
        s.push_str(&format!(" SIZE={size}"));
    }
    if eight_bit && caps.eight_bit_mime {
        s.push_str(" BODY=8BITMIME");
    }
    if smtputf8 && caps.smtputf8 {
        s.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(r) = ret {
            s.push_str(&format!(" RET={r}"));
        }
        if let Some(e) = envid {
            s.push_str(&format!(" ENVID={}", xtext_encode(e)));
        }
    }
    s.push_str("\r\n");
    s
}

/// The RCPT command for a recipient (RFC 5321 §4.1.1.3), with DSN parameters if the peer has DSN.
pub fn rcpt_command(
    to: &str,
    caps: &Capabilities,
    notify: Option<Notify>,
    orcpt: Option<&str>,
) -> String {
    let mut s = format!("RCPT TO:<{to}>");
    if caps.dsn {
        if let Some(n) = notify {
            s.push_str(&format!(" NOTIFY={n}"));
        }
        if let Some(o) = orcpt {
            // Stored in wire form already (`addr-type;xtext`).
            s.push_str(&format!(" ORCPT={o}"));
        }
    }
    s.push_str("\r\n");
    s
}

/// Message text for DATA (RFC 5321 §4.5.2), one piece at a time: lines starting with `.` get
/// another, the text ends with CRLF, and `.CRLF` ends it.
///
/// Outbound delivery streams a message through this in chunks, so that each chunk is written
/// under its own deadline (RFC 5321 §4.5.3.2.5 times each block, not the whole text) and no
/// stuffed copy of a large message is ever held.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    /// The last two octets written, to tell whether the text ended with CRLF.
    tail: [u8; 2],
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            tail: [0, 0],
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 1);
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.at_line_start && b == b'.' {
                out.extend_from_slice(&chunk[start..i]);
                out.push(b'.');
                start = i;
            }
            self.at_line_start = b == b'\n';
        }
        out.extend_from_slice(&chunk[start..]);
        match chunk {
            [] => {}
            [b] => self.tail = [self.tail[1], *b],
            [.., a, b] => self.tail = [*a, *b],
        }
    }

    /// Appends the end: a CRLF if the text did not end with one, then `.CRLF`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The whole of `msg` as DATA text (see [`DotStuffer`]).
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 64 + 5);
    let mut s = DotStuffer::default();
    s.push(msg, &mut out);
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_table() {
        let (r, n) = parse_response(b"250-mx.test Hello\r\n250-SIZE 1000\r\n250 DSN\r\nNEXT")
            .unwrap()
            .unwrap();
        assert_eq!(n, 43);
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mx.test Hello", "SIZE 1000", "DSN"]);
        let (r, _) = parse_response(b"550 5.1.1 No such user\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.status.map(|s| s.to_string()).as_deref(), Some("5.1.1"));
        assert_eq!(r.to_string(), "550 5.1.1 No such user");
        let (r, _) = parse_response(b"450 5.2.2 confused\r\n").unwrap().unwrap();
        assert_eq!(r.class(), Class::Transient);
        assert_eq!(r.effective_status().to_string(), "4.0.0");
        let (r, _) = parse_response(b"220\r\n").unwrap().unwrap();
        assert_eq!(r.lines, vec![""]);
        assert_eq!(parse_response(b"250-partial\r\n").unwrap(), None);
        assert_eq!(parse_response(b"25").unwrap(), None);
        assert!(parse_response(b"hello\r\n").is_err());
        assert!(parse_response(b"250-a\r\n251 b\r\n").is_err());
        assert!(parse_response(b"999 x\r\n").is_err());
        assert!(parse_response(&vec![b'2'; MAX_REPLY_LINE + 10]).is_err());
    }

    #[test]
    fn capabilities_from_ehlo() {
        let (r, _) = parse_response(
            b"250-mx Hello\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-DSN\r\n250-AUTH PLAIN login\r\n250 SMTPUTF8\r\n",
        )
        .unwrap()
        .unwrap();
        let c = Capabilities::from_ehlo(&r);
        assert_eq!(c.size_limit(), Some(35882577));
        assert!(c.eight_bit_mime && c.pipelining && c.dsn && c.smtputf8 && !c.chunking);
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN"]);
        let m = mail_command("a@b", &c, 10, true, false, Some(DsnRet::Hdrs), Some("id+1"));
        assert_eq!(
            m,
            "MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=id+2B1\r\n"
        );
        let n = Notify::parse("SUCCESS,FAILURE");
        assert_eq!(
            rcpt_command("x@y", &c, n, Some("rfc822;x@y")),
            "RCPT TO:<x@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y\r\n"
        );
        let plain = Capabilities::default();
        assert_eq!(
            rcpt_command("x@y", &plain, n, Some("rfc822;x@y")),
            "RCPT TO:<x@y>\r\n"
        );
        assert_eq!(
            mail_command("", &plain, 10, true, true, None, None),
            "MAIL FROM:<>\r\n"
        );
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
    }

    #[test]
    fn dot_stuffing_in_pieces_matches_the_whole() {
        let msg: &[u8] = b".a\r\nb\r\n.\r\n..c\r\nd.e\r\n.";
        let whole = dot_stuff(msg);
        for size in 1..msg.len() {
            let mut s = DotStuffer::default();
            let mut out = Vec::new();
            for chunk in msg.chunks(size) {
                s.push(chunk, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, whole, "chunks of {size}");
        }
        // A text that ends in CR LF split across pieces gets no second CRLF.
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        s.push(b"x\r", &mut out);
        s.push(b"\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }
}
