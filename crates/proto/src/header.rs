//! Header fields (RFC 5322 §2.2): the one scanner every part of mailroom reads a message's
//! header with: IMAP (FETCH, SEARCH, ENVELOPE, BODYSTRUCTURE), intake (`ingest::headers`: the
//! Message-ID, Date and Received a message arrives with) and DKIM (which fields a signature can
//! cover). Positions, not copies: a field is ranges into the text, so that FETCH can answer with
//! its exact octets and nothing is allocated per field.
//!
//! A line that starts with white space goes on with the field before it (§2.2.3, folding); a
//! field's name is printable ASCII without a colon (§3.6.8), white space before the colon
//! allowed (§4.5, obsolete syntax); a line that is neither is kept as a nameless field, so that
//! no octet is lost; an empty line ends the section (§2.1).

use std::ops::Range;

/// The end of the line starting at `pos` (after its LF), or `end`.
pub fn line_end(raw: &[u8], pos: usize, end: usize) -> usize {
    let line = raw.get(pos..end).unwrap_or_default();
    line.iter()
        .position(|&b| b == b'\n')
        .map_or(end, |i| pos + i + 1)
}

/// An empty line: the end of a header section.
pub fn is_blank(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// The length of the field name that starts `line` (RFC 5322 §3.6.8 ftext; white space
/// before the colon allowed, §4.5), if the line starts a header field.
pub fn field_name_len(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line.get(..colon)?.trim_ascii_end();
    let ok = !name.is_empty() && name.iter().all(|b| (0x21..=0x7e).contains(b));
    ok.then_some(name.len())
}

/// One header field: `start..end` is all of it (folded lines and line break included), the
/// name `start..name_end` (empty for a line that is no field), the value `value..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where the field starts.
    pub start: usize,
    /// Where its name ends.
    pub name_end: usize,
    /// Where its value starts (after the colon).
    pub value: usize,
    /// Where it ends (after its last line break).
    pub end: usize,
}

impl Field {
    /// Is this field named `name` (any case)?
    pub fn is(&self, raw: &[u8], name: &str) -> bool {
        let own = raw.get(self.start..self.name_end).unwrap_or_default();
        !own.is_empty() && own.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields of the header `raw[header]`, in order. A line starting with white space goes
/// on with the field before it (RFC 5322 §2.2.3); a line that is neither is kept as a
/// nameless field, so that no octet is lost.
pub fn fields(raw: &[u8], header: Range<usize>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    let mut pos = header.start;
    while pos < header.end {
        let next = line_end(raw, pos, header.end);
        let line = raw.get(pos..next).unwrap_or_default();
        if is_blank(line) {
            break;
        }
        match (line.first(), out.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.end = next,
            _ => {
                let colon = line.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
                let (name_end, value) = match field_name_len(line) {
                    Some(n) => (pos + n, pos + colon),
                    None => (pos, pos),
                };
                out.push(Field {
                    start: pos,
                    name_end,
                    value,
                    end: next,
                });
            }
        }
        pos = next;
    }
    out
}

impl Field {
    /// The field's name (empty for a line that is no field).
    pub fn name<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.start..self.name_end).unwrap_or_default()
    }

    /// The field's value as written: after the colon, folding and line breaks included.
    pub fn value<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.value..self.end).unwrap_or_default()
    }

    /// The value unfolded (line breaks removed, RFC 5322 §2.2.3) and trimmed, as text (a
    /// lossy conversion of 8-bit octets).
    pub fn unfolded(&self, raw: &[u8]) -> String {
        let v: Vec<u8> = self
            .value(raw)
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        String::from_utf8_lossy(v.trim_ascii()).into_owned()
    }
}

/// A message's header section: its fields, and whether the empty line that ends it was there
/// (a text that is all header has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The fields, in order.
    pub fields: Vec<Field>,
    /// The empty line that ends the section was found.
    pub complete: bool,
}

/// The header section at the start of `raw`.
pub fn header(raw: &[u8]) -> Header {
    let fields = fields(raw, 0..raw.len());
    let after = fields.last().map_or(0, |f| f.end);
    let next = line_end(raw, after, raw.len());
    let complete = is_blank(raw.get(after..next).unwrap_or_default());
    Header { fields, complete }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_folded_nameless_and_the_end() {
        let raw = b"Subject: a\r\n b\r\nX-A : 1\r\nnot a field\r\nFrom: c\r\n\r\nbody: no\r\n";
        let h = header(raw);
        assert!(h.complete);
        let names: Vec<&[u8]> = h.fields.iter().map(|f| f.name(raw)).collect();
        assert_eq!(names, [&b"Subject"[..], b"X-A", b"", b"From"]);
        assert_eq!(h.fields[0].value(raw), b" a\r\n b\r\n");
        assert_eq!(h.fields[0].unfolded(raw), "a b");
        assert!(h.fields[1].is(raw, "x-a"));
        assert_eq!(h.fields[1].unfolded(raw), "1");
        // All header, no empty line: not complete; an LF-only text is read the same.
        let h = header(b"Subject: x\nDate: y\n");
        assert!(!h.complete);
        assert_eq!(h.fields.len(), 2);
        assert!(header(b"\r\nbody").complete);
        assert_eq!(header(b"").fields, []);
    }
}
