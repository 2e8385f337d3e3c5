//! Writing IMAP strings in responses (RFC 9051 §4.3): a quoted string when the value allows it,
//! a literal otherwise, `NIL` for an absent value.

/// Appends `s` as an IMAP string: quoted (with `\` before `"` and `\`) when it is short and holds
/// no CR, LF, NUL or 8-bit octet, else as a literal `{n}\r\n` followed by the octets.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80);
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `s` as a literal: `{n}\r\n` and the octets.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Appends an nstring: `NIL` for `None`, else [`string`].
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends an astring: the bare atom when every octet is an ATOM-CHAR (and it is not `NIL`),
/// else [`string`].
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && !s.eq_ignore_ascii_case(b"NIL") && s.iter().all(|&b| is_astring_char(b)) {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

/// ATOM-CHAR and `]` (RFC 9051 §9 `ASTRING-CHAR`).
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// RFC 9051 §9 `ATOM-CHAR`: any CHAR except atom-specials.
pub fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"abc", b"\"abc\""),
            (b"a\"b\\", b"\"a\\\"b\\\\\""),
            (b"a\r\nb", b"{4}\r\na\r\nb"),
            ("é".as_bytes(), b"{2}\r\n\xc3\xa9"),
            (b"", b"\"\""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            string(&mut out, input);
            assert_eq!(&out, want, "{:?}", String::from_utf8_lossy(input));
        }
        let mut out = Vec::new();
        astring(&mut out, b"INBOX");
        astring(&mut out, b" ");
        astring(&mut out, b"nil");
        assert_eq!(out, b"INBOX\" \"\"nil\"");
    }
}
