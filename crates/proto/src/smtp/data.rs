//! The message text decoder for DATA (RFC 5321 §4.1.1.4, §4.5.2) and the line checker for BDAT
//! (RFC 3030).
//!
//! End of data is recognised **only** at `<CRLF>.<CRLF>`. Bare LF and bare CR anywhere in the text
//! are recorded as [`LineFlaws`] so that the session can refuse the message once the real end of data
//! has been read: this closes the "SMTP smuggling" family of attacks (`<LF>.<LF>`, `<CR>.<CR>`,
//! `<CRLF>.<LF>`, …), where a lenient receiver and a strict one disagree on where a message ends.
//! A line that starts with a period has that period removed (dot-unstuffing, §4.5.2).
//!
//! The decoder is incremental: feed it whatever bytes arrived and it reports how many it consumed.
//! It also enforces the size limit without buffering beyond it: once the limit is passed it keeps
//! counting but stores nothing more, so an oversized message costs no memory.

/// Defects found in the message text. Any of them makes the message unacceptable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineFlaws {
    /// An LF not preceded by CR.
    pub bare_lf: bool,
    /// A CR not followed by LF.
    pub bare_cr: bool,
    /// A line longer than the configured limit (RFC 5321 §4.5.3.1.6: 1000 octets with CRLF).
    pub long_line: bool,
}

impl LineFlaws {
    /// True when no defect was seen.
    pub fn is_clean(&self) -> bool {
        !(self.bare_lf || self.bare_cr || self.long_line)
    }
}

/// Result of feeding bytes to a [`DataDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutcome {
    /// All input was consumed; more is needed.
    NeedMore,
    /// The end-of-data marker was found; `consumed` bytes of this input belong to the message
    /// (including the marker); the rest is the next command (pipelining).
    Done {
        /// Bytes of the input consumed.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of the text).
    LineStart,
    /// Inside a line.
    Text,
    /// Saw CR inside or at the end of a line.
    Cr,
    /// Saw "." at the start of a line (DATA only).
    Dot,
    /// Saw ".CR" at the start of a line (DATA only).
    DotCr,
}

/// Incremental decoder of DATA text (with `dot` handling) or checker of BDAT chunks (without).
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    dot: bool,
    line_len: usize,
    max_line: usize,
    max_size: u64,
    size: u64,
    out: Vec<u8>,
    flaws: LineFlaws,
}

impl DataDecoder {
    /// A decoder for DATA: dot-unstuffing and end-of-data detection.
    /// `max_line` counts octets including CRLF; `max_size` is the largest message stored.
    pub fn data(max_size: u64, max_line: usize) -> DataDecoder {
        DataDecoder::new(max_size, max_line, true)
    }

    /// A checker for BDAT chunks: the text is taken verbatim, lines are still checked.
    pub fn bdat(max_size: u64, max_line: usize) -> DataDecoder {
        DataDecoder::new(max_size, max_line, false)
    }

    fn new(max_size: u64, max_line: usize, dot: bool) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            dot,
            line_len: 0,
            max_line: max_line.max(3),
            max_size,
            size: 0,
            out: Vec::with_capacity(max_size.min(64 * 1024) as usize),
            flaws: LineFlaws::default(),
        }
    }

    /// Total decoded size so far, including any part not stored because of the size limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True once the decoded text exceeds the size limit.
    pub fn oversize(&self) -> bool {
        self.size > self.max_size
    }

    /// Defects seen so far.
    pub fn flaws(&self) -> LineFlaws {
        self.flaws
    }

    /// The decoded text not taken yet (empty once oversize). A receiver streams it to storage
    /// after each [`DataDecoder::feed`] and then calls [`DataDecoder::clear_output`], so the
    /// decoder never holds more than one input's worth of text, however large the message.
    pub fn output(&self) -> &[u8] {
        if self.oversize() {
            &[]
        } else {
            &self.out
        }
    }

    /// Forgets the text returned by [`DataDecoder::output`].
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Consumes the decoder: the stored text not yet taken (empty if oversize) and its defects.
    /// For BDAT, call after the LAST chunk: a final CR without LF is a bare CR.
    pub fn finish(mut self) -> (Vec<u8>, LineFlaws) {
        if !self.dot && self.state == State::Cr {
            self.flaws.bare_cr = true;
        }
        if self.oversize() {
            self.out = Vec::new();
        }
        (self.out, self.flaws)
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size <= self.max_size {
            self.out.extend_from_slice(bytes);
        }
    }

    fn grow_line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len + 2 > self.max_line {
            self.flaws.long_line = true;
        }
    }

    /// Feeds bytes. Returns [`DataOutcome::Done`] as soon as `<CRLF>.<CRLF>` is complete (DATA
    /// only); bytes after it are not consumed.
    pub fn feed(&mut self, input: &[u8]) -> DataOutcome {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart if self.dot && input[i] == b'.' => {
                    // The transparency dot does not count towards the line length
                    // (RFC 5321 §4.5.3.1.6).
                    self.state = State::Dot;
                    i += 1;
                }
                State::LineStart | State::Text => {
                    // Fast path: copy up to the next CR or LF in one go.
                    let rest = &input[i..];
                    let n = rest
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(rest.len());
                    if n > 0 {
                        self.emit(&rest[..n]);
                        self.grow_line(n);
                        i += n;
                        self.state = State::Text;
                        continue;
                    }
                    match input[i] {
                        b'\r' => self.state = State::Cr,
                        _ => {
                            // Bare LF: recorded; the next byte is NOT at a line start, so a
                            // following "." cannot end the data.
                            self.flaws.bare_lf = true;
                            self.emit(b"\n");
                            self.line_len = 0;
                            self.state = State::Text;
                        }
                    }
                    i += 1;
                }
                State::Cr => {
                    match input[i] {
                        b'\n' => {
                            self.emit(b"\r\n");
                            self.line_len = 0;
                            self.state = State::LineStart;
                        }
                        b'\r' => {
                            self.flaws.bare_cr = true;
                            self.emit(b"\r");
                        }
                        b => {
                            self.flaws.bare_cr = true;
                            self.emit(&[b'\r', b]);
                            self.grow_line(2);
                            self.state = State::Text;
                        }
                    }
                    i += 1;
                }
                State::Dot => {
                    match input[i] {
                        b'\r' => self.state = State::DotCr,
                        b'\n' => {
                            // "<CRLF>.<LF>": not an end of data; a smuggling attempt.
                            self.flaws.bare_lf = true;
                            self.emit(b".\n");
                            self.line_len = 0;
                            self.state = State::Text;
                        }
                        b => {
                            // Dot-unstuffing: the leading period is dropped (".." → ".").
                            self.emit(&[b]);
                            self.grow_line(1);
                            self.state = State::Text;
                        }
                    }
                    i += 1;
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        return DataOutcome::Done { consumed: i + 1 };
                    }
                    // "<CRLF>.<CR>x": a bare CR after the dot.
                    self.flaws.bare_cr = true;
                    self.emit(b"\r");
                    self.state = State::Text;
                    // Re-examine this byte in Text state.
                }
            }
        }
        DataOutcome::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of every size from 1 to its length, checking the result is the same.
    fn decode(input: &[u8]) -> Option<(Vec<u8>, LineFlaws, usize)> {
        let mut results = Vec::new();
        for chunk in 1..=input.len().max(1) {
            let mut d = DataDecoder::data(1 << 20, 1000);
            let mut fed = 0;
            let mut done = None;
            for c in input.chunks(chunk) {
                if let DataOutcome::Done { consumed } = d.feed(c) {
                    done = Some(fed + consumed);
                    break;
                }
                fed += c.len();
            }
            let r = done.map(|n| {
                let (text, flaws) = d.finish();
                (text, flaws, n)
            });
            results.push(r);
        }
        for r in &results[1..] {
            assert_eq!(r, &results[0], "chunking changed the result for {input:?}");
        }
        results.pop().unwrap()
    }

    #[test]
    fn end_of_data_table() {
        // (input, decoded text, (bare LF, bare CR), bytes consumed)
        type Case<'a> = (&'a [u8], &'a [u8], (bool, bool), usize);
        let cases: &[Case] = &[
            (b".\r\n", b"", (false, false), 3),
            (b"hello\r\n.\r\n", b"hello\r\n", (false, false), 10),
            (b"hello\r\n.\r\nQUIT\r\n", b"hello\r\n", (false, false), 10),
            (b"..x\r\n.\r\n", b".x\r\n", (false, false), 8),
            (b"..\r\n.\r\n", b".\r\n", (false, false), 7),
            (b".x\r\n.\r\n", b"x\r\n", (false, false), 7),
            (b"a\r\n\r\n.\r\n", b"a\r\n\r\n", (false, false), 8),
            // Smuggling patterns never end the data; they are flagged.
            (b"a\n.\nMAIL\r\n.\r\n", b"a\n.\nMAIL\r\n", (true, false), 13),
            (
                b"a\r\n.\nMAIL\r\n.\r\n",
                b"a\r\n.\nMAIL\r\n",
                (true, false),
                14,
            ),
            (b"a\r.\rMAIL\r\n.\r\n", b"a\r.\rMAIL\r\n", (false, true), 13),
            (
                b"a\r\n.\rMAIL\r\n.\r\n",
                b"a\r\n\rMAIL\r\n",
                (false, true),
                14,
            ),
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", (true, false), 11),
            (b"a\r\r\n.\r\n", b"a\r\r\n", (false, true), 7),
        ];
        for (input, text, (lf, cr), consumed) in cases {
            let (got, flaws, n) = decode(input).unwrap_or_else(|| panic!("no end in {input:?}"));
            assert_eq!(got, *text, "text of {:?}", String::from_utf8_lossy(input));
            assert_eq!(
                (flaws.bare_lf, flaws.bare_cr),
                (*lf, *cr),
                "flaws of {input:?}"
            );
            assert_eq!(n, *consumed, "consumed of {input:?}");
        }
        for unfinished in [&b"a\n.\n"[..], b"a\r.\r", b"a\r\n.\n", b"a\r\n.", b"a\r\n"] {
            assert!(decode(unfinished).is_none(), "{unfinished:?} must not end");
        }
    }

    #[test]
    fn line_length_limit() {
        let mut ok = vec![b'a'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert!(decode(&ok).unwrap().1.is_clean());
        let mut long = vec![b'a'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert!(decode(&long).unwrap().1.long_line);
        // A 998-octet line that starts with a period is sent as 999 octets: still legal.
        let mut dotted = vec![b'.'; 1];
        dotted.extend_from_slice(&[b'.'; 1]);
        dotted.extend_from_slice(&[b'd'; 997]);
        dotted.extend_from_slice(b"\r\n.\r\n");
        let (text, flaws, _) = decode(&dotted).unwrap();
        assert!(flaws.is_clean(), "{flaws:?}");
        assert_eq!(text.len(), 998 + 2);
    }

    #[test]
    fn size_limit_stores_nothing_beyond() {
        let mut d = DataDecoder::data(10, 1000);
        assert_eq!(d.feed(b"0123456789abc\r\n"), DataOutcome::NeedMore);
        assert!(d.oversize());
        assert_eq!(d.feed(b".\r\n"), DataOutcome::Done { consumed: 3 });
        assert_eq!(d.size(), 15);
        assert!(d.finish().0.is_empty());
    }

    #[test]
    fn bdat_is_verbatim_but_checked() {
        let mut d = DataDecoder::bdat(100, 1000);
        assert_eq!(d.feed(b".a\r\n.\r"), DataOutcome::NeedMore);
        assert_eq!(d.feed(b"\nb\r\n"), DataOutcome::NeedMore);
        let (text, flaws) = d.finish();
        assert_eq!(text, b".a\r\n.\r\nb\r\n");
        assert!(flaws.is_clean());
        let mut d = DataDecoder::bdat(100, 1000);
        d.feed(b"a\nb\r");
        let (_, flaws) = d.finish();
        assert!(flaws.bare_lf && flaws.bare_cr);
    }
}
