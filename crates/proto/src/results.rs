//! Removing forged `Authentication-Results` fields (RFC 8601 §5) from a message as it streams in.
//!
//! A reader's mail client trusts an `Authentication-Results` field because it names the server
//! that did the checks (the authserv-id, RFC 8601 §2.5). A sender can put such a field into its
//! own message to make a spoofed message look checked, so a server "SHOULD remove" the fields
//! that claim its own authserv-id from mail it receives, before it adds its own.
//!
//! [`ResultsFilter`] does that on the stream of message text, one chunk at a time, holding at
//! most one header field (bounded by [`MAX_HELD`]): a field is complete when the next line does
//! not begin with white space (RFC 5322 §2.2.3), and the header section ends at the first empty
//! line, after which everything passes unchanged.

/// The most octets of one header field held to decide on it. An `Authentication-Results` field
/// whose authserv-id is not found within this many octets is removed: a real one names its
/// server first.
pub const MAX_HELD: usize = 8192;

const NAME: &[u8] = b"authentication-results";

/// The streaming filter. Feed it with [`ResultsFilter::push`] and end with
/// [`ResultsFilter::finish`].
#[derive(Debug, Clone)]
pub struct ResultsFilter {
    /// The authserv-ids removed, lower case.
    ids: Vec<Vec<u8>>,
    /// The field being read (in the header section).
    held: Vec<u8>,
    /// The last octet seen was LF: the next one tells whether a field goes on.
    line_start: bool,
    /// What to do with the rest of a field that outgrew [`MAX_HELD`].
    overflow: Option<bool>,
    /// The header section has ended.
    body: bool,
    removed: usize,
}

impl ResultsFilter {
    /// A filter removing the fields that name `authserv_id` (compared without regard to case).
    pub fn new(authserv_id: &str) -> ResultsFilter {
        ResultsFilter::any_of([authserv_id])
    }

    /// A filter removing the fields that name any of `ids`: the servers of an organization,
    /// each of which its users' clients trust alike.
    pub fn any_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> ResultsFilter {
        ResultsFilter {
            ids: ids
                .into_iter()
                .map(|i| i.to_ascii_lowercase().into_bytes())
                .collect(),
            held: Vec::new(),
            line_start: true,
            overflow: None,
            body: false,
            removed: 0,
        }
    }

    /// The header section has ended: from now on everything passes unchanged (a caller may
    /// skip the filter and its copy).
    pub fn in_body(&self) -> bool {
        self.body
    }

    /// How many fields were removed.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Filters `chunk`, appending what is kept to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < chunk.len() {
            if self.body {
                out.extend_from_slice(&chunk[i..]);
                return;
            }
            let b = chunk[i];
            if self.line_start && b != b' ' && b != b'\t' {
                // The field held so far is complete.
                self.settle(out);
                if b == b'\r' || b == b'\n' {
                    self.body = true;
                    continue;
                }
            }
            self.line_start = b == b'\n';
            match self.overflow {
                Some(true) => out.push(b),
                Some(false) => {}
                None => {
                    self.held.push(b);
                    if self.held.len() > MAX_HELD {
                        let keep = !is_results(&self.held);
                        if keep {
                            out.append(&mut self.held);
                        } else {
                            self.held.clear();
                            self.removed += 1;
                        }
                        self.overflow = Some(keep);
                    }
                }
            }
            i += 1;
        }
    }

    /// Ends the text: a field still held (a message that is all header) is decided.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.settle(out);
    }

    fn settle(&mut self, out: &mut Vec<u8>) {
        if self.overflow.take().is_none() && !self.held.is_empty() {
            if self.ids.iter().any(|id| names(&self.held, id)) {
                self.removed += 1;
            } else {
                out.extend_from_slice(&self.held);
            }
        }
        self.held.clear();
    }
}

/// The field is an `Authentication-Results` field.
fn is_results(field: &[u8]) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    field[..colon].trim_ascii().eq_ignore_ascii_case(NAME)
}

/// The field is an `Authentication-Results` field whose authserv-id is `id` (RFC 8601 §2.2:
/// `authserv-id` after optional CFWS, ended by CFWS or `;`).
pub fn names(field: &[u8], id: &[u8]) -> bool {
    if !is_results(field) {
        return false;
    }
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let value = skip_cfws(&field[colon + 1..]);
    authserv_id(value).eq_ignore_ascii_case(id)
}

/// The authserv-id at the start of `value`: a token, or a quoted string (RFC 5322 §3.2.4)
/// with its quoted-pairs undone.
fn authserv_id(value: &[u8]) -> Vec<u8> {
    let Some(quoted) = value.strip_prefix(b"\"") else {
        let end = value
            .iter()
            .position(|&b| matches!(b, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(value.len());
        return value[..end].to_vec();
    };
    let mut out = Vec::new();
    let mut bytes = quoted.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => break,
            b'\\' => out.extend(bytes.next()),
            b'\r' | b'\n' => {}
            _ => out.push(b),
        }
    }
    out
}

/// Skips white space, line breaks and (nested) comments (RFC 5322 §3.2.2).
fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        match s.first() {
            Some(b' ' | b'\t' | b'\r' | b'\n') => s = &s[1..],
            Some(b'(') => {
                let mut depth = 0usize;
                let mut i = 0;
                while i < s.len() {
                    match s[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                s = s.get(i + 1..).unwrap_or(&[]);
            }
            _ => return s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &[u8], split: usize) -> (Vec<u8>, usize) {
        let mut f = ResultsFilter::new("MX.example.test");
        let mut out = Vec::new();
        let split = split.min(text.len());
        f.push(&text[..split], &mut out);
        f.push(&text[split..], &mut out);
        f.finish(&mut out);
        (out, f.removed())
    }

    #[test]
    fn removes_only_fields_naming_this_server() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (
                b"Authentication-Results: mx.example.test; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
                b"Subject: x\r\n\r\nbody\r\n",
                1,
            ),
            // Folded, upper case, comment before the id.
            (
                b"From: a@b\r\nAUTHENTICATION-RESULTS : (forged)\r\n MX.EXAMPLE.TEST 1;\r\n\tdkim=pass\r\n\r\nx",
                b"From: a@b\r\n\r\nx",
                1,
            ),
            // Another server's results stay (they were never ours to vouch for).
            (
                b"Authentication-Results: mx.other.test; spf=pass\r\n\r\n",
                b"Authentication-Results: mx.other.test; spf=pass\r\n\r\n",
                0,
            ),
            // A longer name that starts with ours is not ours.
            (
                b"Authentication-Results: mx.example.test.evil; spf=pass\r\n\r\n",
                b"Authentication-Results: mx.example.test.evil; spf=pass\r\n\r\n",
                0,
            ),
            // In the body, nothing is touched.
            (
                b"Subject: x\r\n\r\nAuthentication-Results: mx.example.test; spf=pass\r\n",
                b"Subject: x\r\n\r\nAuthentication-Results: mx.example.test; spf=pass\r\n",
                0,
            ),
            // A quoted id, with a quoted-pair.
            (
                b"Authentication-Results: \"mx.example.te\\st\"; spf=pass\r\n\r\n",
                b"\r\n",
                1,
            ),
            // Bare LF line ends, and a message that is all header.
            (
                b"Authentication-Results: mx.example.test; x\nSubject: y\n",
                b"Subject: y\n",
                1,
            ),
            (b"", b"", 0),
        ];
        for (input, want, removed) in cases {
            for split in 0..=input.len() {
                let (out, n) = filter(input, split);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(want),
                    "split at {split}"
                );
                assert_eq!(n, *removed);
            }
        }
    }

    #[test]
    fn every_server_of_the_organization_is_removed() {
        let mut f = ResultsFilter::any_of(["s1.org.test", "s2.org.test"]);
        let mut out = Vec::new();
        f.push(
            b"Authentication-Results: s2.org.test; dmarc=pass\r\n\
              Authentication-Results: s1.org.test; dmarc=pass\r\n\
              Authentication-Results: s3.other.test; dmarc=pass\r\n\r\n",
            &mut out,
        );
        f.finish(&mut out);
        assert_eq!(
            out,
            b"Authentication-Results: s3.other.test; dmarc=pass\r\n\r\n"
        );
    }

    #[test]
    fn a_padded_forgery_is_removed_and_a_long_field_kept() {
        let pad = "(".to_string() + &"x".repeat(MAX_HELD) + ")";
        let forged = format!(
            "Authentication-Results: {pad} mx.example.test; spf=pass\r\nSubject: s\r\n\r\nb"
        );
        let (out, n) = filter(forged.as_bytes(), 100);
        assert_eq!(out, b"Subject: s\r\n\r\nb");
        assert_eq!(n, 1);
        let long = format!("X-Long: {}\r\n\r\nb", "y".repeat(MAX_HELD * 2));
        assert_eq!(filter(long.as_bytes(), 5).0, long.as_bytes());
    }
}
