//! Mailbox names in modified UTF-7 (RFC 3501 §5.1.3), as IMAP4rev1 clients send and expect
//! them; IMAP4rev2 and UTF8=ACCEPT sessions use UTF-8 (RFC 9051 §5.1, RFC 6855 §3).
//!
//! `&` starts a run of UTF-16 code units in a modified base64 (`,` for `/`, no padding) and `-`
//! ends it; `&-` is `&` itself. Printable ASCII stands for itself.

use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;

const ALPHABET: base64::alphabet::Alphabet = match base64::alphabet::Alphabet::new(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,",
) {
    Ok(a) => a,
    Err(_) => panic!("the modified base64 alphabet is valid"),
};

const B64: GeneralPurpose = GeneralPurpose::new(
    &ALPHABET,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes a modified UTF-7 name. `None` when it is not valid modified UTF-7 (8-bit octets, a
/// bad run, an unpaired surrogate, or a run that encodes printable ASCII).
pub fn decode(name: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if !(0x20..0x7f).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let end = i + 1 + name[i + 1..].iter().position(|&c| c == b'-')?;
        let run = &name[i + 1..end];
        if run.is_empty() {
            out.push('&');
        } else {
            let bytes = B64.decode(run).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let text = String::from_utf16(&units).ok()?;
            if text.chars().any(|c| (' '..='~').contains(&c)) {
                return None;
            }
            out.push_str(&text);
        }
        i = end + 1;
    }
    Some(out)
}

/// Encodes a name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&B64.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        // RFC 3501 §5.1.3's example, and others.
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("A&B", "A&-B"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("😀", "&2D3eAA-"),
            ("INBOX", "INBOX"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode(utf8), utf7);
            assert_eq!(decode(utf7.as_bytes()).as_deref(), Some(utf8));
        }
    }

    #[test]
    fn refuses_invalid() {
        for bad in ["&U,BTFw", "&AGE-", "caf\u{e9}", "&2D0-", "&=-"] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
