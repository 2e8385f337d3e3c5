//! The organization's SMTP verbs: their arguments, and the chunked transfer of link state.
//!
//! mailroom's servers speak to each other over SMTP with three extensions of their own, in the
//! roles Exchange 2000/2003 gave X-EXPS, X-LINK2STATE and XEXCH50:
//!
//! - `X-ORG-AUTH`: mutual challenge–response over the organization's secret
//!   (`X-ORG-AUTH HELLO org-id server-name nonce`, then `X-ORG-AUTH PROOF hex`);
//! - `X-LINKSTATE`: the organization's directory and link-state table, compared by digest
//!   (`X-LINKSTATE DIGEST hex`) and sent in ordered, labelled chunks
//!   (`X-LINKSTATE FIRST|NEXT|LAST data`, `X-LINKSTATE PULL` for the other direction);
//! - `X-ORG-META`: the per-message metadata of the next transaction (`X-ORG-META data`), and
//!   the release of shadow copies (`X-ORG-META DONE id...`);
//! - `X-ORG-TRACK`: another server's tracking events, for `mailroom track --org`
//!   (`X-ORG-TRACK QUERY data`, then `X-ORG-TRACK PULL` for each chunk of the answer);
//! - `X-ORG-MOVE`: a mailbox moving to the server (`X-ORG-MOVE USER data`, then for each
//!   message `X-ORG-MOVE MAIL data` and its text in chunks, `X-ORG-MOVE FIRST|NEXT|LAST data`).
//!
//! Chunk data is base64 (RFC 4648 §4); a chunk line is at most [`MAX_CHUNK_LINE`] octets, as
//! X-LINK2STATE's were. [`Assembler`] puts a transfer back together and refuses, without
//! keeping anything, a chunk out of order, without a label, too large or not base64. Everything
//! here is pure and total: it is fuzzed (`fuzz/fuzz_targets/org_chunks.rs`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use thiserror::Error;

/// Longest `X-LINKSTATE` chunk line, verb and CRLF included.
pub const MAX_CHUNK_LINE: usize = 1024;
/// The most data octets one chunk carries (its base64 fits in [`MAX_CHUNK_LINE`]).
pub const CHUNK_DATA: usize = 720;

/// Where a chunk stands in its transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The first chunk (a transfer of one chunk is `FIRST` then an empty `LAST`).
    First,
    /// A chunk in the middle.
    Next,
    /// The last chunk: the transfer is complete.
    Last,
}

impl Label {
    /// The keyword on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::First => "FIRST",
            Label::Next => "NEXT",
            Label::Last => "LAST",
        }
    }
}

/// One chunk of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its place.
    pub label: Label,
    /// The decoded data.
    pub data: Vec<u8>,
}

/// What an `X-LINKSTATE` command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStateArg {
    /// Compare digests: the client's is this (lower-case hex).
    Digest(String),
    /// A chunk of the client's state.
    Chunk(Chunk),
    /// Send the next chunk of the server's state.
    Pull,
}

/// What an `X-ORG-TRACK` command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgTrackArg {
    /// A query (base64 of its JSON), answered in chunks.
    Query(Vec<u8>),
    /// The next chunk of the answer.
    Pull,
}

/// Parses the arguments of `X-ORG-TRACK`.
pub fn parse_org_track(arg: &str) -> Result<OrgTrackArg, OrgError> {
    let syntax = OrgError::Syntax("X-ORG-TRACK QUERY base64 | X-ORG-TRACK PULL");
    let mut w = arg.split_ascii_whitespace();
    let out = match w.next() {
        Some(k) if k.eq_ignore_ascii_case("PULL") => OrgTrackArg::Pull,
        Some(k) if k.eq_ignore_ascii_case("QUERY") => {
            let data = w.next().ok_or(syntax.clone())?;
            OrgTrackArg::Query(STANDARD.decode(data).map_err(|_| OrgError::Encoding)?)
        }
        _ => return Err(syntax),
    };
    if w.next().is_some() {
        return Err(syntax);
    }
    Ok(out)
}

/// What an `X-ORG-MOVE` command says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgMoveArg {
    /// The user (base64 of its JSON).
    User(Vec<u8>),
    /// The next message's description (base64 of its JSON).
    Mail(Vec<u8>),
    /// A chunk of that message's text.
    Chunk(Chunk),
}

/// Parses the arguments of `X-ORG-MOVE`.
pub fn parse_org_move(arg: &str) -> Result<OrgMoveArg, OrgError> {
    let t = arg.trim();
    let (kw, rest) = t.split_once(' ').unwrap_or((t, ""));
    let data = |s: &str| {
        let s = s.trim();
        if s.is_empty() || s.contains(' ') {
            return Err(OrgError::Syntax("X-ORG-MOVE USER|MAIL base64"));
        }
        STANDARD.decode(s).map_err(|_| OrgError::Encoding)
    };
    if kw.eq_ignore_ascii_case("USER") {
        return data(rest).map(OrgMoveArg::User);
    }
    if kw.eq_ignore_ascii_case("MAIL") {
        return data(rest).map(OrgMoveArg::Mail);
    }
    parse_chunk(t).map(OrgMoveArg::Chunk)
}

/// What an `X-ORG-AUTH` command says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgAuthArg {
    /// The client names its organization and itself and sends its nonce.
    Hello {
        /// The organization's id.
        org: String,
        /// The client server's name in the organization.
        server: String,
        /// The client's nonce (hex).
        nonce: String,
    },
    /// The client's proof (hex), after the server's challenge.
    Proof(String),
}

/// A malformed organization verb or chunk.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OrgError {
    /// The arguments do not have the verb's form.
    #[error("syntax: {0}")]
    Syntax(&'static str),
    /// A chunk without `FIRST`, `NEXT` or `LAST`.
    #[error("the chunk has no label (FIRST, NEXT or LAST)")]
    Unlabelled,
    /// The chunk line is longer than [`MAX_CHUNK_LINE`].
    #[error("the chunk line is longer than {MAX_CHUNK_LINE} octets")]
    LineTooLong,
    /// The chunk data is not base64.
    #[error("the chunk data is not base64")]
    Encoding,
    /// `NEXT` or `LAST` without `FIRST`, or `FIRST` in the middle of a transfer.
    #[error("chunk {0} out of order")]
    OutOfOrder(&'static str),
    /// The transfer is larger than allowed.
    #[error("the transfer is larger than {0} octets")]
    TooLarge(usize),
}

fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn is_hex(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the arguments of `X-ORG-AUTH`.
pub fn parse_org_auth(arg: &str) -> Result<OrgAuthArg, OrgError> {
    let mut w = arg.split_ascii_whitespace();
    let syntax = OrgError::Syntax("X-ORG-AUTH HELLO org-id server nonce | X-ORG-AUTH PROOF hex");
    let kw = w.next().ok_or(syntax.clone())?;
    let out = if kw.eq_ignore_ascii_case("HELLO") {
        let (org, server, nonce) = match (w.next(), w.next(), w.next()) {
            (Some(o), Some(s), Some(n)) => (o, s, n),
            _ => return Err(syntax),
        };
        if !is_token(org, 64) || !is_token(server, 255) || !is_hex(nonce, 128) {
            return Err(syntax);
        }
        OrgAuthArg::Hello {
            org: org.to_string(),
            server: server.to_ascii_lowercase(),
            nonce: nonce.to_ascii_lowercase(),
        }
    } else if kw.eq_ignore_ascii_case("PROOF") {
        let p = w.next().ok_or(syntax.clone())?;
        if !is_hex(p, 128) {
            return Err(syntax);
        }
        OrgAuthArg::Proof(p.to_ascii_lowercase())
    } else {
        return Err(syntax);
    };
    if w.next().is_some() {
        return Err(syntax);
    }
    Ok(out)
}

/// Parses a chunk: `LABEL [base64]` (the text after `X-LINKSTATE`, or of a `PULL` reply).
pub fn parse_chunk(arg: &str) -> Result<Chunk, OrgError> {
    if arg.len() > MAX_CHUNK_LINE {
        return Err(OrgError::LineTooLong);
    }
    let mut w = arg.split_ascii_whitespace();
    let label = match w.next() {
        Some(l) if l.eq_ignore_ascii_case("FIRST") => Label::First,
        Some(l) if l.eq_ignore_ascii_case("NEXT") => Label::Next,
        Some(l) if l.eq_ignore_ascii_case("LAST") => Label::Last,
        _ => return Err(OrgError::Unlabelled),
    };
    let data = match w.next() {
        None => Vec::new(),
        Some(b) => STANDARD.decode(b).map_err(|_| OrgError::Encoding)?,
    };
    if w.next().is_some() {
        return Err(OrgError::Syntax("X-LINKSTATE FIRST|NEXT|LAST base64"));
    }
    if data.len() > CHUNK_DATA {
        return Err(OrgError::LineTooLong);
    }
    Ok(Chunk { label, data })
}

/// Parses the arguments of `X-LINKSTATE`.
pub fn parse_linkstate(arg: &str) -> Result<LinkStateArg, OrgError> {
    if arg.len() > MAX_CHUNK_LINE {
        return Err(OrgError::LineTooLong);
    }
    let trimmed = arg.trim();
    let (kw, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    if kw.eq_ignore_ascii_case("DIGEST") {
        let d = rest.trim();
        if !is_hex(d, 128) {
            return Err(OrgError::Syntax("X-LINKSTATE DIGEST hex"));
        }
        return Ok(LinkStateArg::Digest(d.to_ascii_lowercase()));
    }
    if kw.eq_ignore_ascii_case("PULL") {
        if !rest.trim().is_empty() {
            return Err(OrgError::Syntax("X-LINKSTATE PULL"));
        }
        return Ok(LinkStateArg::Pull);
    }
    parse_chunk(trimmed).map(LinkStateArg::Chunk)
}

/// Splits `data` into chunk texts (`FIRST …`, `NEXT …`, `LAST …`), each within
/// [`MAX_CHUNK_LINE`] with the `X-LINKSTATE ` verb in front.
pub fn chunks(data: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = data
        .chunks(CHUNK_DATA)
        .map(|c| format!("NEXT {}", STANDARD.encode(c)))
        .collect();
    if out.is_empty() {
        out.push("FIRST".into());
    } else {
        out[0].replace_range(..4, "FIRST");
    }
    out.push("LAST".into());
    out
}

/// Puts a chunked transfer back together, within a size limit.
#[derive(Debug)]
pub struct Assembler {
    max: usize,
    buf: Option<Vec<u8>>,
}

impl Assembler {
    /// An assembler for transfers of at most `max` octets.
    pub fn new(max: usize) -> Assembler {
        Assembler { max, buf: None }
    }

    /// True while a transfer is under way.
    pub fn in_progress(&self) -> bool {
        self.buf.is_some()
    }

    /// Adds a chunk: `Ok(Some(data))` when it completes the transfer. Any error abandons the
    /// transfer under way (the peer starts again with `FIRST`).
    pub fn push(&mut self, chunk: Chunk) -> Result<Option<Vec<u8>>, OrgError> {
        let r = self.push_inner(chunk);
        if r.is_err() {
            self.buf = None;
        }
        r
    }

    fn push_inner(&mut self, chunk: Chunk) -> Result<Option<Vec<u8>>, OrgError> {
        match (chunk.label, self.buf.as_mut()) {
            (Label::First, Some(_)) => Err(OrgError::OutOfOrder("FIRST")),
            (Label::First, None) => {
                if chunk.data.len() > self.max {
                    return Err(OrgError::TooLarge(self.max));
                }
                self.buf = Some(chunk.data);
                Ok(None)
            }
            (Label::Next, None) => Err(OrgError::OutOfOrder("NEXT")),
            (Label::Last, None) => Err(OrgError::OutOfOrder("LAST")),
            (label, Some(buf)) => {
                if buf.len() + chunk.data.len() > self.max {
                    return Err(OrgError::TooLarge(self.max));
                }
                buf.extend_from_slice(&chunk.data);
                if label == Label::Last {
                    Ok(self.buf.take())
                } else {
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_within_the_line_limit() {
        for len in [0, 1, CHUNK_DATA - 1, CHUNK_DATA, CHUNK_DATA + 1, 5000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut a = Assembler::new(10_000);
            let mut done = None;
            for c in chunks(&data) {
                assert!(format!("X-LINKSTATE {c}\r\n").len() <= MAX_CHUNK_LINE);
                let LinkStateArg::Chunk(ch) = parse_linkstate(&c).unwrap() else {
                    panic!("{c} is not a chunk");
                };
                assert!(done.is_none(), "data after the end");
                done = a.push(ch).unwrap();
            }
            assert_eq!(done.unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn out_of_order_unlabelled_oversized_and_malformed_are_refused() {
        let c = |l, d: &[u8]| Chunk {
            label: l,
            data: d.to_vec(),
        };
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(c(Label::Next, b"x")),
            Err(OrgError::OutOfOrder("NEXT"))
        );
        assert_eq!(
            a.push(c(Label::Last, b"x")),
            Err(OrgError::OutOfOrder("LAST"))
        );
        a.push(c(Label::First, b"abc")).unwrap();
        assert_eq!(
            a.push(c(Label::First, b"x")),
            Err(OrgError::OutOfOrder("FIRST"))
        );
        assert!(!a.in_progress(), "an error abandons the transfer");
        a.push(c(Label::First, b"abcdef")).unwrap();
        assert_eq!(
            a.push(c(Label::Next, b"ghijk")),
            Err(OrgError::TooLarge(10))
        );
        assert!(!a.in_progress());
        let table = [
            ("HELLO", OrgError::Unlabelled),
            ("", OrgError::Unlabelled),
            ("FIRST !!!", OrgError::Encoding),
            (
                "FIRST YWJj extra",
                OrgError::Syntax("X-LINKSTATE FIRST|NEXT|LAST base64"),
            ),
            ("DIGEST xyz", OrgError::Syntax("X-LINKSTATE DIGEST hex")),
            ("PULL now", OrgError::Syntax("X-LINKSTATE PULL")),
        ];
        for (arg, want) in table {
            assert_eq!(parse_linkstate(arg), Err(want), "{arg:?}");
        }
        let long = format!("FIRST {}", "A".repeat(MAX_CHUNK_LINE));
        assert_eq!(parse_linkstate(&long), Err(OrgError::LineTooLong));
        assert_eq!(
            parse_linkstate("digest ABCDEF").unwrap(),
            LinkStateArg::Digest("abcdef".into())
        );
    }

    #[test]
    fn org_auth_arguments() {
        assert_eq!(
            parse_org_auth("HELLO 0a1b mx1.example.test 00ff").unwrap(),
            OrgAuthArg::Hello {
                org: "0a1b".into(),
                server: "mx1.example.test".into(),
                nonce: "00ff".into()
            }
        );
        assert_eq!(
            parse_org_auth("proof ABCD").unwrap(),
            OrgAuthArg::Proof("abcd".into())
        );
        for bad in [
            "",
            "HELLO",
            "HELLO org",
            "HELLO org srv",
            "HELLO org srv nothex",
            "HELLO org srv 00 more",
            "HELLO or/g srv 00",
            "PROOF",
            "PROOF xyz",
            "LOGIN me",
        ] {
            assert!(parse_org_auth(bad).is_err(), "{bad:?}");
        }
    }
}
