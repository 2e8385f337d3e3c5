//! Answering FETCH and SEARCH from a message's octets: ENVELOPE, BODY and BODYSTRUCTURE
//! (RFC 3501 §7.4.2, RFC 9051 §7.5.2), `BODY[section]` (RFC 3501 §6.4.5), `BINARY[part]`
//! (RFC 3516, RFC 9051 §6.4.5), and the SEARCH keys that look inside a message (§6.4.4).
//!
//! [`Message::parse`] cuts the octets into a tree of parts once, remembering for each part
//! where its header, its body and its end are, and its Content-Type. Everything else is read
//! from the octets again when asked: a FETCH wants one or two items, and the answers must be
//! byte-exact slices of what is stored (a client caches `BODY[1.2]` and expects the same
//! octets the next time, and from every server).
//!
//! Why our own part tree rather than `mail_parser`'s offsets: the IMAP rules are about octets,
//! at the places RFC 2046 §5.1.1 gives (the line break before a boundary delimiter belongs to
//! the delimiter, not to the part; preamble and epilogue belong to the multipart but to no
//! child), with the `multipart/digest` default of `message/rfc822` (RFC 2046 §5.1.5), an
//! encapsulated message addressed in the same raw buffer, and the same answer for the same
//! octets however malformed, which fuzzers check. `mail_parser` does what it is good at:
//! RFC 2047 encoded words and charsets, for SEARCH.
//!
//! Nothing here fails: a message without a header is one `text/plain` part, a `multipart`
//! without a usable boundary has no children, nesting deeper than [`MAX_DEPTH`] is not
//! parsed, and a part that does not exist is `None`.

use std::ops::Range;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, MessageParser};

use super::encode::{nstring, string};
use super::section::{Section, SectionText};
use crate::header::{field_name_len, fields, is_blank, line_end, Field};

/// How deep multiparts and encapsulated messages are parsed; below it a `multipart` has no
/// children and a `message/rfc822` is a leaf. Real mail nests a few levels; the bound keeps
/// the work (each level scans its octets once) and the recursion bounded for any input.
pub const MAX_DEPTH: usize = 32;

/// How many parts a message is cut into at most; past it a multipart's last part runs to its
/// end and nothing more is parsed. Tiny parts cost a few octets each in the message but a
/// node each in memory: the bound keeps a hostile message from costing more than a real one.
pub const MAX_PARTS: usize = 10_000;

/// A message, parsed into its MIME parts, answering FETCH and SEARCH.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    root: Part,
}

/// One part: `start..body` is its header (with the blank line that ends it, when there is
/// one), `body..end` its body. For the message itself the header is the message header; for
/// a body part, its MIME header (RFC 2045 §3).
#[derive(Debug, Clone)]
struct Part {
    start: usize,
    body: usize,
    end: usize,
    /// Media type and subtype, ASCII lower case.
    ty: Vec<u8>,
    sub: Vec<u8>,
    /// Content-Type parameters, values unquoted, RFC 2231 continuations joined.
    params: Vec<(Vec<u8>, Vec<u8>)>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Leaf,
    Multipart(Vec<Part>),
    /// `message/rfc822` (or `message/global`, RFC 9051 §7.5.2): the encapsulated message,
    /// whose header starts at this part's body.
    Message(Box<Part>),
}

/// Why a `BINARY[part]` cannot be answered (RFC 3516 §4.2, RFC 9051 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part path names no part: the server answers an empty part, as for `BODY[part]`.
    #[error("no such part")]
    NoSuchPart,
    /// The Content-Transfer-Encoding (lower case) is not one the server can remove: the
    /// server answers `NO [UNKNOWN-CTE]` (RFC 3516 §4.3, RFC 9051 §7.1).
    #[error("unknown content-transfer-encoding {0}")]
    UnknownEncoding(String),
}

impl<'a> Message<'a> {
    /// Parses the MIME structure of `raw`. Never fails: a message whose first line is not a
    /// header field has no header and is a single `text/plain` part (the defaults of RFC 2045
    /// §5.2), and a malformed multipart keeps whatever structure can be found.
    pub fn parse(raw: &'a [u8]) -> Message<'a> {
        let mut budget = MAX_PARTS;
        let root = parse_part(raw, 0, raw.len(), false, 0, &mut budget);
        Message { raw, root }
    }

    /// The ENVELOPE (RFC 3501 §7.4.2 / RFC 9051 §7.5.2):
    /// `(date subject from sender reply-to to cc bcc in-reply-to message-id)`.
    ///
    /// Address lists are `((name adl mailbox host) ...)` or `NIL`; sender and reply-to are
    /// the from list when absent or empty, as the RFC requires; a group is a start marker
    /// `(NIL NIL "groupname" NIL)`, its members, and an end marker `(NIL NIL NIL NIL)`. Values
    /// are the raw field values, unfolded (CR and LF removed) and trimmed, with RFC 2047
    /// encoded words as they are, as Dovecot does: the client decodes them, and an envelope
    /// that is a function of the octets alone is what clients cache.
    pub fn envelope(&self) -> Vec<u8> {
        self.envelope_of(&self.root)
    }

    /// `BODY` (`extensible` false) or `BODYSTRUCTURE` (true), RFC 3501 §7.4.2 / RFC 9051
    /// §7.5.2.
    ///
    /// A single part is `(type subtype params id description encoding size ...)`, then the
    /// line count for `text/*`, and envelope, body structure and line count for
    /// `message/rfc822`; a multipart is `(part)(part) "subtype"`. Extension data follows when
    /// `extensible`: md5, disposition, language, location for a single part; params,
    /// disposition, language, location for a multipart. Type, subtype, parameter names,
    /// disposition type and encoding are upper case (`"TEXT" "PLAIN"`), values as written; a
    /// `text/*` part without a charset gets `("CHARSET" "US-ASCII")`, its RFC 2045 §5.2
    /// default, and the encoding defaults to `"7BIT"` (RFC 2045 §6.1). The size is the octets
    /// of the body as stored; the line count is the line breaks in them (see [`lines`]).
    pub fn body_structure(&self, extensible: bool) -> Vec<u8> {
        self.structure(&self.root, extensible)
    }

    /// The octets of `BODY[section]` (RFC 3501 §6.4.5), byte-exact from the raw message;
    /// `None` when the part does not exist or the specifier does not apply to it.
    ///
    /// An empty part path means the message: all of it, or its `HEADER` (with the blank line),
    /// `TEXT`, `HEADER.FIELDS (...)` or `HEADER.FIELDS.NOT (...)`; field names match without
    /// regard to case, the fields kept are in message order with their folding, and a blank
    /// line ends them. With a part path: the part's body, or its `MIME` header; `HEADER...`
    /// and `TEXT` apply only to a `message/rfc822` part, whose body is the encapsulated
    /// message and whose part numbers continue inside it. Part 1 of a message that is not
    /// multipart is its body.
    pub fn section(&self, s: &Section) -> Option<Vec<u8>> {
        if s.part.is_empty() {
            return match &s.text {
                None => Some(self.raw.to_vec()),
                Some(t) => self.message_text(&self.root, t),
            };
        }
        let p = self.resolve(&s.part)?;
        match (&s.text, &p.kind) {
            (None, _) => Some(self.slice(p.body..p.end).to_vec()),
            (Some(SectionText::Mime), _) => Some(self.slice(p.start..p.body).to_vec()),
            (Some(t), Kind::Message(inner)) => self.message_text(inner, t),
            _ => None,
        }
    }

    /// `BINARY[part]` (RFC 3516 §4.1 / RFC 9051 §6.4.5): the part's body with its
    /// Content-Transfer-Encoding removed (base64, quoted-printable; 7bit, 8bit and binary are
    /// the octets already). Decoding is lenient, as RFC 2045 §6.7 and §6.8 ask of readers. An
    /// empty path is the whole message, which has no encoding of its own.
    pub fn binary(&self, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
        if part.is_empty() {
            return Ok(self.raw.to_vec());
        }
        self.decoded(self.resolve(part).ok_or(BinaryError::NoSuchPart)?)
    }

    /// The size `BINARY.SIZE[part]` reports (RFC 3516 §4.2): the length of
    /// [`Message::binary`].
    pub fn binary_size(&self, part: &[u32]) -> Result<u64, BinaryError> {
        self.binary(part).map(|b| b.len() as u64)
    }

    /// The Date: field's calendar date in the field's own time zone, as (year, month, day):
    /// what SENTBEFORE, SENTON and SENTSINCE compare, "disregarding time and timezone" (RFC
    /// 3501 §6.4.4). `None` without a readable Date: field (RFC 5322 §3.3, with the obsolete
    /// two- and three-digit years of §4.3).
    pub fn sent_date(&self) -> Option<(i32, u32, u32)> {
        parse_date(&self.value(&self.header(&self.root), "date")?)
    }

    /// SEARCH HEADER, FROM, TO, CC, BCC, SUBJECT (RFC 3501 §6.4.4): does a field `name` (any
    /// case) of the message header contain `needle`? Compared without regard to case, the
    /// field unfolded and its RFC 2047 encoded words decoded, so that the user finds what the
    /// client shows; an address field matches on its whole decoded text (names and
    /// addresses). An empty needle matches every message that has the field (RFC 3501).
    pub fn header_contains(&self, name: &str, needle: &str) -> bool {
        let header = self.slice(self.root.start..self.root.body);
        field_contains(header, name, &needle.to_lowercase())
    }

    /// SEARCH BODY (RFC 3501 §6.4.4): does the text of a `text/*` part, its
    /// Content-Transfer-Encoding and charset decoded, contain `needle` (without regard to
    /// case)? A message without a text part is searched in its raw body.
    pub fn body_contains(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        let mut texts = false;
        needle.is_empty()
            || self.texts_contain(&self.root, &needle, &mut texts)
            || !texts && lower(self.slice(self.root.body..self.root.end)).contains(&needle)
    }

    /// SEARCH TEXT (RFC 3501 §6.4.4): does the header (a field, its name included, decoded
    /// as for [`Message::header_contains`]) or the body contain `needle`?
    pub fn text_contains(&self, needle: &str) -> bool {
        let low = needle.to_lowercase();
        let header = self.header(&self.root);
        header.iter().any(|f| {
            let name = lower(self.slice(f.start..f.name_end));
            format!("{name}: {}", self.decode_field(f)).contains(&low)
        }) || self.body_contains(needle)
    }

    fn slice(&self, r: Range<usize>) -> &'a [u8] {
        self.raw.get(r).unwrap_or_default()
    }

    fn header(&self, p: &Part) -> Vec<Field> {
        fields(self.raw, p.start..p.body)
    }

    /// The first field `name` of a header, unfolded and trimmed.
    fn value(&self, header: &[Field], name: &str) -> Option<Vec<u8>> {
        let f = header.iter().find(|f| f.is(self.raw, name))?;
        Some(unfold(self.slice(f.value..f.end)))
    }

    /// The part at a part path (RFC 3501 §6.4.5): numbers index the children of a multipart;
    /// in a `message/rfc822` part they go on in the encapsulated message, whose body is part 1
    /// when it is not multipart.
    fn resolve(&self, path: &[u32]) -> Option<&Part> {
        let mut cur: Option<&Part> = None;
        for &n in path {
            let i = usize::try_from(n).ok()?.checked_sub(1)?;
            let message = match cur.map(|p| &p.kind) {
                None => &self.root,
                Some(Kind::Multipart(children)) => {
                    cur = Some(children.get(i)?);
                    continue;
                }
                Some(Kind::Message(inner)) => inner,
                Some(Kind::Leaf) => return None,
            };
            cur = Some(match &message.kind {
                Kind::Multipart(children) => children.get(i)?,
                _ if i == 0 => message,
                _ => return None,
            });
        }
        cur
    }

    /// HEADER, TEXT, HEADER.FIELDS(.NOT) of a message (the top one or an encapsulated one).
    fn message_text(&self, m: &Part, t: &SectionText) -> Option<Vec<u8>> {
        let (names, keep) = match t {
            SectionText::Header => return Some(self.slice(m.start..m.body).to_vec()),
            SectionText::Text => return Some(self.slice(m.body..m.end).to_vec()),
            SectionText::Mime => return None,
            SectionText::HeaderFields(names) => (names, true),
            SectionText::HeaderFieldsNot(names) => (names, false),
        };
        let mut out = Vec::new();
        for f in self.header(m) {
            if names.iter().any(|n| f.is(self.raw, n)) == keep {
                let octets = self.slice(f.start..f.end);
                out.extend_from_slice(octets);
                if !octets.ends_with(b"\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        Some(out)
    }

    fn envelope_of(&self, m: &Part) -> Vec<u8> {
        let header = self.header(m);
        let get = |name| ns(self.value(&header, name).as_deref());
        let addrs = |name| addresses(&self.value(&header, name).unwrap_or_default());
        let from = addrs("from");
        let or_from = |list: Vec<Addr>| address_list(if list.is_empty() { &from } else { &list });
        paren(
            &[
                get("date"),
                get("subject"),
                address_list(&from),
                or_from(addrs("sender")),
                or_from(addrs("reply-to")),
                address_list(&addrs("to")),
                address_list(&addrs("cc")),
                address_list(&addrs("bcc")),
                get("in-reply-to"),
                get("message-id"),
            ],
            b" ",
        )
    }

    fn structure(&self, p: &Part, ext: bool) -> Vec<u8> {
        let header = self.header(p);
        let get = |name| ns(self.value(&header, name).as_deref());
        let mut items = Vec::new();
        if let Kind::Multipart(children) = &p.kind {
            let mut parts: Vec<u8> = children
                .iter()
                .flat_map(|c| self.structure(c, ext))
                .collect();
            if parts.is_empty() {
                // RFC 3501 wants at least one body part; Dovecot writes an empty text part
                // for a multipart that has none, and so do we.
                let tail: &[u8] = if ext { b" NIL NIL NIL NIL)" } else { b")" };
                parts = [EMPTY_PART, tail].concat();
            }
            items.extend([parts, s(&p.sub.to_ascii_uppercase())]);
            if ext {
                items.push(param_list(&p.params, false));
            }
        } else {
            let text = p.ty == b"text";
            let charset = param(&p.params, "charset").is_some();
            let cte = cte(self.raw, &header).unwrap_or_else(|| b"7bit".to_vec());
            let body = self.slice(p.body..p.end);
            items.extend([
                s(&p.ty.to_ascii_uppercase()),
                s(&p.sub.to_ascii_uppercase()),
                param_list(&p.params, text && !charset),
                get("content-id"),
                get("content-description"),
                s(&cte.to_ascii_uppercase()),
                body.len().to_string().into_bytes(),
            ]);
            if let Kind::Message(inner) = &p.kind {
                items.extend([self.envelope_of(inner), self.structure(inner, ext)]);
            }
            if text || matches!(p.kind, Kind::Message(_)) {
                items.push(lines(body).to_string().into_bytes());
            }
            if ext {
                items.push(get("content-md5"));
            }
        }
        if ext {
            let dsp = field_lex(self.raw, &header, "content-disposition", |lx| {
                lx.token().map(|t| (t.to_ascii_uppercase(), params(lx)))
            });
            let langs = field_lex(self.raw, &header, "content-language", |lx| {
                let mut tags = Vec::new();
                loop {
                    tags.extend(lx.token().map(s));
                    if !lx.eat(b',') {
                        return Some(tags);
                    }
                }
            });
            items.push(dsp.map_or(NIL.to_vec(), |(t, ps)| {
                paren(&[s(&t), param_list(&ps, false)], b" ")
            }));
            items.push(match langs.unwrap_or_default() {
                tags if tags.is_empty() => NIL.to_vec(),
                mut tags if tags.len() == 1 => tags.remove(0),
                tags => paren(&tags, b" "),
            });
            items.push(get("content-location"));
        }
        paren(&items, b" ")
    }

    /// The body of a part with its Content-Transfer-Encoding removed.
    fn decoded(&self, p: &Part) -> Result<Vec<u8>, BinaryError> {
        let body = self.slice(p.body..p.end);
        match cte(self.raw, &self.header(p))
            .unwrap_or_default()
            .as_slice()
        {
            b"" | b"7bit" | b"8bit" | b"binary" => Ok(body.to_vec()),
            b"base64" => Ok(base64_decode(body)),
            b"quoted-printable" => Ok(qp_decode(body)),
            other => Err(BinaryError::UnknownEncoding(
                String::from_utf8_lossy(other).into(),
            )),
        }
    }

    /// Whether a `text/*` leaf in `p` contains `needle` (lower case); `texts` records that
    /// there was a text part.
    fn texts_contain(&self, p: &Part, needle: &str, texts: &mut bool) -> bool {
        match &p.kind {
            Kind::Multipart(parts) => parts.iter().any(|c| self.texts_contain(c, needle, texts)),
            Kind::Message(inner) => self.texts_contain(inner, needle, texts),
            Kind::Leaf if p.ty == b"text" => {
                *texts = true;
                let raw = || self.slice(p.body..p.end).to_vec();
                let octets = self.decoded(p).unwrap_or_else(|_| raw());
                match param(&p.params, "charset").and_then(charset_decoder) {
                    Some(decode) => decode(&octets).to_lowercase().contains(needle),
                    None => lower(&octets).contains(needle),
                }
            }
            Kind::Leaf => false,
        }
    }

    /// A field's value unfolded and its RFC 2047 encoded words decoded (by `mail_parser`'s
    /// unstructured-text reader, RFC 5322 §3.2.5 and RFC 2047 §6), in lower case.
    fn decode_field(&self, f: &Field) -> String {
        let value = self.slice(f.value..f.end);
        plain_text(value).unwrap_or_else(|| parsed_text(value))
    }
}

const NIL: &[u8] = b"NIL";

/// The body structure written for a multipart without parts (as Dovecot does), without its
/// closing parenthesis.
const EMPTY_PART: &[u8] = b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0";

/// An IMAP string (quoted or literal) as a response item.
fn s(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, v);
    out
}

/// An IMAP nstring (`NIL` for `None`) as a response item.
fn ns(v: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    nstring(&mut out, v);
    out
}

/// `(` items joined by `sep` `)`.
fn paren(items: &[Vec<u8>], sep: &[u8]) -> Vec<u8> {
    [&b"("[..], &items.join(sep), b")"].concat()
}

/// A body-fld-param: `("NAME" "value" ...)` or `NIL`, with the default charset first when
/// `charset`.
fn param_list(params: &[(Vec<u8>, Vec<u8>)], charset: bool) -> Vec<u8> {
    let mut items = Vec::new();
    if charset {
        items.extend([s(b"CHARSET"), s(b"US-ASCII")]);
    }
    for (name, value) in params {
        items.extend([s(&name.to_ascii_uppercase()), s(value)]);
    }
    if items.is_empty() {
        NIL.to_vec()
    } else {
        paren(&items, b" ")
    }
}

/// Parses the part in `raw[start..end]`: its header, its Content-Type and, for a multipart
/// or an encapsulated message, what is inside.
/// `budget` is how many more parts may be made.
fn parse_part(
    raw: &[u8],
    start: usize,
    end: usize,
    digest: bool,
    depth: usize,
    budget: &mut usize,
) -> Part {
    *budget = budget.saturating_sub(1);
    let body = header_end(raw, start, end);
    let header = fields(raw, start..body);
    let ct = field_lex(raw, &header, "content-type", |lx| {
        let ty = lx.token()?.to_ascii_lowercase();
        let sub = lx
            .eat(b'/')
            .then(|| lx.token())
            .flatten()?
            .to_ascii_lowercase();
        Some((ty, sub, params(lx)))
    });
    // RFC 2045 §5.2: no (or an unreadable) Content-Type is text/plain in US-ASCII, except in
    // a multipart/digest, where it is message/rfc822 (RFC 2046 §5.1.5).
    let (ty, sub, params) = ct.unwrap_or_else(|| {
        let (ty, sub): (&[u8], &[u8]) = if digest {
            (b"message", b"rfc822")
        } else {
            (b"text", b"plain")
        };
        (ty.to_vec(), sub.to_vec(), Vec::new())
    });
    let deeper = depth < MAX_DEPTH && *budget > 0;
    let kind = if ty == b"multipart" {
        let parts = match param(&params, "boundary") {
            Some(b) if !b.is_empty() && deeper => split(raw, body, end, b, *budget),
            _ => Vec::new(),
        };
        let digest = sub == b"digest";
        let parse = |r: Range<usize>| parse_part(raw, r.start, r.end, digest, depth + 1, budget);
        Kind::Multipart(parts.into_iter().map(parse).collect())
    } else if ty == b"message" && (sub == b"rfc822" || sub == b"global") && deeper {
        // An encapsulated message can be read only when it is not encoded (RFC 2046 §5.2.1
        // allows 7bit, 8bit and binary only); an encoded one stays a leaf, for BINARY.
        match cte(raw, &header).as_deref() {
            None | Some(b"7bit" | b"8bit" | b"binary") => Kind::Message(Box::new(parse_part(
                raw,
                body,
                end,
                false,
                depth + 1,
                budget,
            ))),
            Some(_) => Kind::Leaf,
        }
    } else {
        Kind::Leaf
    };
    Part {
        start,
        body,
        end,
        ty,
        sub,
        params,
        kind,
    }
}

/// The header section of a message (RFC 5322 §2.1): up to and with the empty line that ends
/// it, all of the text when there is none, and nothing when the first line is not a header
/// field, as [`Message::parse`] cuts it. What SEARCH on a header field and FETCH of header
/// items read, so a store can hand out this much without the body.
pub fn header_section(raw: &[u8]) -> &[u8] {
    raw.get(..header_end(raw, 0, raw.len())).unwrap_or_default()
}

/// [`Message::header_contains`] on a header section alone (see [`header_section`]), with the
/// needle already in lower case: what SEARCH runs on every message of a folder, without
/// cutting the message into parts.
///
/// The fields are found as [`fields`] finds them, but without collecting them: only a line
/// that starts with `name` is looked at further.
pub fn field_contains(header: &[u8], name: &str, needle_lower: &str) -> bool {
    let name = name.as_bytes();
    // A field's name is printable ASCII without a colon (RFC 5322 §3.6.8): no other matches.
    if name.is_empty()
        || !name
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b':')
    {
        return false;
    }
    let end = header.len();
    let mut pos = 0;
    while pos < end {
        let next = line_end(header, pos, end);
        let line = header.get(pos..next).unwrap_or_default();
        if is_blank(line) {
            break;
        }
        let (head, rest) = line.split_at(name.len().min(line.len()));
        let named = head.eq_ignore_ascii_case(name)
            && rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':')
            && field_name_len(line).is_some();
        if !named {
            pos = next;
            continue;
        }
        let colon = rest
            .iter()
            .position(|&b| b == b':')
            .map_or(next, |c| pos + name.len() + c + 1);
        let mut field_end = next;
        while field_end < end {
            let after = line_end(header, field_end, end);
            match header.get(field_end) {
                Some(b' ' | b'\t')
                    if !is_blank(header.get(field_end..after).unwrap_or_default()) =>
                {
                    field_end = after
                }
                _ => break,
            }
        }
        let value = header.get(colon..field_end).unwrap_or_default();
        if plain_text(value)
            .unwrap_or_else(|| parsed_text(value))
            .contains(needle_lower)
        {
            return true;
        }
        pos = field_end;
    }
    false
}

/// A text up to and with its first empty line, all of it when there is none: what a store
/// keeps of each content so that [`header_section`] can be had without the body. Unlike
/// [`header_section`] it does not look at the first line, so the fields a message copy puts
/// in front (`Return-Path:`, …) can go before it: `header_section(fields ++ header_block(c))`
/// is `header_section(fields ++ c)` for complete field lines `fields`.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < raw.len() {
        let next = line_end(raw, pos, raw.len());
        if is_blank(raw.get(pos..next).unwrap_or_default()) {
            return raw.get(..next).unwrap_or_default();
        }
        pos = next;
    }
    raw
}

/// The text of a field value decoded by `mail_parser` as an unstructured field (RFC 2047
/// encoded words, charsets), in lower case; unfolded and trimmed as it is when that fails.
pub(crate) fn parsed_text(value: &[u8]) -> String {
    let buf = [b"Subject:", value, b"\r\n"].concat();
    let parser = MessageParser::new().header_text(HeaderName::Subject);
    let decoded = parser.parse_headers(&buf).and_then(|m| {
        let text = m.parts.first()?.headers.first()?.value.as_text()?;
        Some(text.to_lowercase())
    });
    decoded.unwrap_or_else(|| lower(&unfold(value)))
}

/// The values of the fields of a message's header, as written (for the fuzz checks).
pub(crate) fn field_values(raw: &[u8]) -> Vec<&[u8]> {
    fields(raw, 0..header_end(raw, 0, raw.len()))
        .iter()
        .filter_map(|f| raw.get(f.value..f.end))
        .collect()
}

/// The text of a field value that needs no decoding, in lower case, exactly as `mail_parser`
/// gives it for an unstructured field (which the tests check against it): folding white
/// space, which spans a line break, becomes one space; other white space stays as written;
/// the ends are trimmed. Only for ASCII without an encoded word (`=?`) and without control
/// characters other than tab and CRLF; `None` otherwise, and the value goes to `mail_parser`.
/// SEARCH HEADER runs this on every message of a folder, and `mail_parser` is the costly part.
pub(crate) fn plain_text(v: &[u8]) -> Option<String> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let bare_cr = v
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && v.get(i + 1) != Some(&b'\n'));
    let control = v.iter().any(|&b| b.is_ascii_control() && !ws(b));
    if !v.is_ascii() || bare_cr || control || v.windows(2).any(|w| w == b"=?") {
        return None;
    }
    let mut out = String::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if ws(b) {
            let run = v[i..].iter().take_while(|&&b| ws(b)).count();
            let spaces = v.get(i..i + run).unwrap_or_default();
            if spaces.contains(&b'\n') {
                out.push(' ');
            } else {
                out.extend(spaces.iter().map(|&b| char::from(b)));
            }
            i += run;
        } else {
            out.push(char::from(b.to_ascii_lowercase()));
            i += 1;
        }
    }
    Some(out.trim_matches([' ', '\t']).to_string())
}

/// Where the header starting at `start` ends: after the first empty line (RFC 5322 §2.1; a
/// bare LF accepted too), at `end` when there is none, and at `start` when the first line
/// is not a header field, so that text without a header is all body.
fn header_end(raw: &[u8], start: usize, end: usize) -> usize {
    let mut pos = start;
    while pos < end {
        let next = line_end(raw, pos, end);
        let line = raw.get(pos..next).unwrap_or_default();
        if is_blank(line) {
            return next;
        }
        if pos == start && field_name_len(line).is_none() {
            return start;
        }
        pos = next;
    }
    end
}

/// The ranges of the body parts of the multipart body `raw[body..end]` (RFC 2046 §5.1.1): a
/// delimiter is a line `--boundary`, or `--boundary--` for the last, with only white space
/// after it; the line break before a delimiter belongs to it. After the last delimiter, when
/// the close delimiter is missing, or after `limit` parts, the part runs to the end.
fn split(raw: &[u8], body: usize, end: usize, boundary: &[u8], limit: usize) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let mut pos = body;
    while pos < end {
        let next = line_end(raw, pos, end);
        if let Some(close) = delimiter(raw.get(pos..next).unwrap_or_default(), boundary) {
            if let Some(s) = open {
                let before = raw.get(s..pos).unwrap_or_default();
                let eol = before
                    .strip_suffix(b"\n")
                    .map_or(0, |b| 1 + usize::from(b.ends_with(b"\r")));
                parts.push(s..pos - eol);
            }
            open = (!close).then_some(next);
            if close || parts.len() >= limit {
                break;
            }
        }
        pos = next;
    }
    parts.extend(open.map(|s| s..end));
    parts
}

/// `Some(is_close)` when `line` is a delimiter line for `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let close = rest.starts_with(b"--");
    let rest = rest.get(if close { 2 } else { 0 }..).unwrap_or_default();
    rest.iter().all(u8::is_ascii_whitespace).then_some(close)
}

/// Runs `f` on a lexer over the value of the first field `name`.
fn field_lex<T>(
    raw: &[u8],
    header: &[Field],
    name: &str,
    f: impl FnOnce(&mut Lex) -> Option<T>,
) -> Option<T> {
    let field = header.iter().find(|x| x.is(raw, name))?;
    f(&mut Lex {
        s: raw.get(field.value..field.end)?,
        i: 0,
    })
}

/// The Content-Transfer-Encoding of a header (RFC 2045 §6.1), lower case, if given.
fn cte(raw: &[u8], header: &[Field]) -> Option<Vec<u8>> {
    let value = field_lex(raw, header, "content-transfer-encoding", |lx| lx.value());
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.to_ascii_lowercase())
}

/// A lexer for MIME structured fields (RFC 2045 §5.1): tokens and quoted strings, with RFC
/// 822 comments and white space between them.
struct Lex<'b> {
    s: &'b [u8],
    i: usize,
}

impl<'b> Lex<'b> {
    fn cfws(&mut self) {
        loop {
            match self.s.get(self.i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.i += 1,
                Some(b'(') => self.i = enclosed(self.s, self.i).1,
                _ => return,
            }
        }
    }

    /// An RFC 2045 token (8-bit octets let through: they are there and must be shown).
    fn token(&mut self) -> Option<&'b [u8]> {
        self.cfws();
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c <= b' ' || c == 0x7f || b"()<>@,;:\\\"/[]?=".contains(&c) {
                break;
            }
            self.i += 1;
        }
        self.s.get(start..self.i).filter(|t| !t.is_empty())
    }

    /// A token or a quoted string, unquoted.
    fn value(&mut self) -> Option<Vec<u8>> {
        self.cfws();
        if self.s.get(self.i) != Some(&b'"') {
            return self.token().map(<[u8]>::to_vec);
        }
        let (text, end) = enclosed(self.s, self.i);
        self.i = end;
        Some(text)
    }

    fn eat(&mut self, c: u8) -> bool {
        self.cfws();
        let found = self.s.get(self.i) == Some(&c);
        self.i += usize::from(found);
        found
    }

    /// The next `; attribute = value`, skipping what cannot be read.
    fn param(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        loop {
            self.cfws();
            match self.s.get(self.i)? {
                b';' => self.i += 1,
                b'"' => {
                    self.i = enclosed(self.s, self.i).1;
                    continue;
                }
                _ => {
                    self.i += 1;
                    continue;
                }
            }
            let Some(name) = self.token() else { continue };
            if let Some(value) = self.eat(b'=').then(|| self.value()).flatten() {
                return Some((name.to_vec(), value));
            }
        }
    }
}

/// The value of the first parameter `name` (any case).
fn param<'p>(params: &'p [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'p [u8]> {
    let mut named = params
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
    named.next().map(|(_, v)| v.as_slice())
}

/// At most this many parameters are read from a field: no real message has more, and the
/// bound keeps joining RFC 2231 sections cheap for any input.
const MAX_PARAMS: usize = 100;

/// `*(";" attribute "=" value)` (RFC 2045 §5.1), with RFC 2231 §3 continuations (`name*0`,
/// `name*1*`...) joined in order into one `name`, or `name*` when the first is extended
/// (its charset'language' prefix and %-escapes kept for the client, as Dovecot does).
fn params(lx: &mut Lex) -> Vec<(Vec<u8>, Vec<u8>)> {
    let all: Vec<_> = std::iter::from_fn(|| lx.param()).take(MAX_PARAMS).collect();
    let mut out = Vec::new();
    for (name, value) in &all {
        match continuation(name) {
            None => out.push((name.clone(), value.clone())),
            Some((base, 0, ext)) => {
                let mut sections: Vec<(u32, &[u8])> = all
                    .iter()
                    .filter_map(|(n, v)| {
                        let (b, i, _) = continuation(n)?;
                        b.eq_ignore_ascii_case(base).then_some((i, v.as_slice()))
                    })
                    .collect();
                sections.sort_by_key(|&(i, _)| i);
                let name = [base, if ext { b"*" } else { b"" }].concat();
                out.push((
                    name,
                    sections.into_iter().flat_map(|(_, v)| v.to_vec()).collect(),
                ));
            }
            Some(_) => {}
        }
    }
    out
}

/// `base*N` or `base*N*` → (base, N, extended).
fn continuation(name: &[u8]) -> Option<(&[u8], u32, bool)> {
    let ext = name.ends_with(b"*");
    let name = name.get(..name.len() - usize::from(ext))?;
    let star = name.iter().rposition(|&b| b == b'*')?;
    let digits = name.get(star + 1..)?;
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    Some((name.get(..star)?, n, ext))
}

/// The quoted string (`s[i] == '"'`) or nested comment (`s[i] == '('`) starting at `i`: its
/// content, quoted-pairs unescaped, and where it ends (RFC 5322 §3.2.2, §3.2.4).
fn enclosed(s: &[u8], i: usize) -> (Vec<u8>, usize) {
    let nests = s.get(i) == Some(&b'(');
    let close = if nests { b')' } else { b'"' };
    let (mut text, mut depth, mut j) = (Vec::new(), 1usize, i + 1);
    while let Some(&c) = s.get(j) {
        j += 1;
        if c == b'\\' && j < s.len() {
            text.extend(s.get(j));
            j += 1;
            continue;
        }
        if c == close {
            depth -= 1;
            if depth == 0 {
                break;
            }
        } else if nests && c == b'(' {
            depth += 1;
        }
        text.push(c);
    }
    (text, j)
}

/// One entry of an ENVELOPE address list (RFC 3501 §7.4.2): name, adl, mailbox, host; a
/// group start marker has the group name as mailbox and no host, an end marker nothing.
type Addr = [Option<Vec<u8>>; 4];

fn address_list(list: &[Addr]) -> Vec<u8> {
    if list.is_empty() {
        return NIL.to_vec();
    }
    let item = |a: &Addr| paren(&a.each_ref().map(|f| ns(f.as_deref())), b" ");
    paren(&list.iter().map(item).collect::<Vec<_>>(), b"")
}

/// A lexical token of an address field (RFC 5322 §3.2): `kind` is `a` (atom), `"` (quoted
/// string, `text` unquoted), `[` (domain literal), `(` (comment, `text` its content), or the
/// special character itself; `space` tells that white space or a comment came before it.
struct Tok<'v> {
    kind: u8,
    raw: &'v [u8],
    text: Vec<u8>,
    space: bool,
}

fn tokens(v: &[u8]) -> Vec<Tok<'_>> {
    const SPECIAL: &[u8] = b"<>@,;:.";
    let mut out = Vec::new();
    let (mut i, mut space) = (0, false);
    while let Some(&c) = v.get(i) {
        let (start, rest) = (i, v.get(i..).unwrap_or_default());
        let mut text = None;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                (i, space) = (i + 1, true);
                continue;
            }
            b'(' | b'"' => {
                let (t, end) = enclosed(v, i);
                (i, text) = (end, Some(t));
                c
            }
            b'[' => {
                i += rest
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(rest.len(), |p| p + 1);
                c
            }
            _ if SPECIAL.contains(&c) => {
                i += 1;
                c
            }
            _ => {
                let atom = |b: &u8| !b" \t\r\n(\"[".contains(b) && !SPECIAL.contains(b);
                i += rest.iter().take_while(|b| atom(b)).count();
                b'a'
            }
        };
        let raw = v.get(start..i).unwrap_or_default();
        let text = text.unwrap_or_else(|| raw.to_vec());
        out.push(Tok {
            kind,
            raw,
            text,
            space,
        });
        space = kind == b'(';
    }
    out
}

/// Parses an address list (RFC 5322 §3.4: mailboxes, `name <addr>`, routes, groups) into
/// ENVELOPE entries. Display names stay raw: quoted strings unquoted, words joined by one
/// space, RFC 2047 encoded words as they are; a comment is the name when there is none
/// (`user@host (Name)`). Unreadable pieces give what they can; a missing host is `""`.
fn addresses(v: &[u8]) -> Vec<Addr> {
    let toks = tokens(v);
    let mut out: Vec<Addr> = Vec::new();
    let mut cur: Vec<&Tok> = Vec::new();
    let (mut done, mut group, mut i) = (false, false, 0);
    while let Some(t) = toks.get(i) {
        i += 1;
        match t.kind {
            b':' if !group && !done => {
                let name = phrase(&cur).unwrap_or_default();
                out.push([None, None, Some(name), None]);
                (group, done) = (true, false);
                cur.clear();
            }
            b'<' if !done => {
                let close = toks.iter().skip(i).position(|t| t.kind == b'>');
                let inner: Vec<&Tok> = toks
                    .iter()
                    .skip(i)
                    .take(close.unwrap_or(usize::MAX))
                    .collect();
                i += inner.len() + 1;
                let spec: Vec<&Tok> = inner.iter().copied().filter(|t| t.kind != b'(').collect();
                let route = spec.iter().position(|t| t.kind == b':');
                let adl = route.map(|r| concat(spec.get(..r).unwrap_or_default()));
                let (mailbox, host) =
                    addr_spec(spec.get(route.map_or(0, |r| r + 1)..).unwrap_or_default());
                let name = phrase(&cur).or_else(|| first_comment(cur.iter().chain(&inner)));
                out.push([name, adl, Some(mailbox), Some(host)]);
                done = true;
                cur.clear();
            }
            b',' | b';' => {
                if !done {
                    out.extend(bare(&cur));
                }
                cur.clear();
                done = false;
                if t.kind == b';' && group {
                    out.push(Addr::default());
                    group = false;
                }
            }
            b'(' if done => {
                let last = out.last_mut().filter(|a| a[0].is_none() && a[3].is_some());
                if let Some(last) = last.filter(|_| !t.text.is_empty()) {
                    last[0] = Some(t.text.clone());
                }
            }
            _ if !done => cur.push(t),
            _ => {}
        }
    }
    if !done {
        out.extend(bare(&cur));
    }
    if group {
        out.push(Addr::default());
    }
    out
}

/// A mailbox without angle brackets: `local@domain`, perhaps with a comment for its name.
fn bare(toks: &[&Tok]) -> Option<Addr> {
    let spec: Vec<&Tok> = toks.iter().copied().filter(|t| t.kind != b'(').collect();
    if spec.is_empty() {
        return None;
    }
    let (mailbox, host) = addr_spec(&spec);
    Some([first_comment(toks), None, Some(mailbox), Some(host)])
}

/// Local part and domain of an addr-spec, each its tokens' octets joined without the white
/// space (quotes kept in a quoted local part, so that the address can be rebuilt).
fn addr_spec(spec: &[&Tok]) -> (Vec<u8>, Vec<u8>) {
    match spec.iter().rposition(|t| t.kind == b'@') {
        Some(at) => {
            let part = |r: Range<usize>| concat(spec.get(r).unwrap_or_default());
            (part(0..at), part(at + 1..spec.len()))
        }
        None => (concat(spec), Vec::new()),
    }
}

fn concat(toks: &[&Tok]) -> Vec<u8> {
    toks.iter().flat_map(|t| t.raw.iter().copied()).collect()
}

fn phrase(toks: &[&Tok]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for t in toks.iter().filter(|t| t.kind != b'(') {
        if t.space && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(&t.text);
    }
    (!out.is_empty()).then_some(out)
}

fn first_comment<'t, 'v: 't>(toks: impl IntoIterator<Item = &'t &'t Tok<'v>>) -> Option<Vec<u8>> {
    let mut toks = toks.into_iter();
    toks.find(|t| t.kind == b'(' && !t.text.is_empty())
        .map(|t| t.text.clone())
}

/// A field value with CR and LF removed (unfolded, RFC 5322 §2.2.3) and white space trimmed.
fn unfold(v: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = v.iter().copied().filter(|b| !b"\r\n".contains(b)).collect();
    v.trim_ascii().to_vec()
}

fn lower(v: &[u8]) -> String {
    String::from_utf8_lossy(v).to_lowercase()
}

/// The lines of a body (RFC 3501 body-fld-lines): its line breaks. A part's body ends before
/// the CRLF of the next boundary (RFC 2046 §5.1.1), so its last line has no break and, as
/// Dovecot and Cyrus count, is not counted.
fn lines(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

/// Base64 (RFC 2045 §6.8) by the `base64` crate, with the leniency the RFC asks of a decoder:
/// characters outside the alphabet (line breaks, stray octets) are ignored, and `=` ends a
/// quantum, so that concatenated encodings decode too; a quantum of one character (six bits,
/// no whole octet) gives nothing.
fn base64_decode(s: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for run in s.split(|&b| b == b'=') {
        let mut clean: Vec<u8> = run
            .iter()
            .copied()
            .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
            .collect();
        if clean.len() % 4 == 1 {
            clean.pop();
        }
        // (Cannot fail: only the alphabet is left, in a length the engine takes.)
        let _ = LENIENT.decode_vec(&clean, &mut out);
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` octets, `=` at the end of a line a soft line
/// break, trailing white space removed (rule 3); an `=` without two hex digits is kept.
///
/// Our own rather than `mail_parser`'s: that one refuses the whole part at the first `=` not
/// followed by two hex digits, where RFC 2045 §6.7 (note 1) asks a decoder to keep it, as
/// Dovecot does; and it writes CRLF or LF for every line by the first break it met.
fn qp_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for line in s.split_inclusive(|&b| b == b'\n') {
        let eol = if line.ends_with(b"\r\n") {
            2
        } else {
            usize::from(line.ends_with(b"\n"))
        };
        let (content, eol) = line.split_at(line.len() - eol);
        let content = content.trim_ascii_end();
        let (content, soft) = match content.strip_suffix(b"=") {
            Some(c) => (c, true),
            None => (content, false),
        };
        let mut i = 0;
        while let Some(&c) = content.get(i) {
            let hex = |j: usize| content.get(j).and_then(|&h| char::from(h).to_digit(16));
            match (c, hex(i + 1), hex(i + 2)) {
                (b'=', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
    out
}

/// The date of an RFC 5322 §3.3 date-time: `[day-name ","] day month year ...`.
fn parse_date(v: &[u8]) -> Option<(i32, u32, u32)> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let text = String::from_utf8_lossy(v).to_ascii_lowercase();
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    let mut word = words.next()?;
    if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
        word = words.next()?;
    }
    let day: u32 = word.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = words.next()?;
    let month = MONTHS.iter().position(|m| month.starts_with(m))? as u32 + 1;
    let year = words.next()?;
    if !(2..=4).contains(&year.len()) || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = year.parse().ok()?;
    let year = match year.len() {
        2 if n < 50 => 2000 + n,
        2 | 3 => 1900 + n,
        _ => n,
    };
    Some((year, month, day))
}

#[cfg(test)]
#[path = "mime_tests.rs"]
mod tests;
