//! Invariant checks over arbitrary input: what the coverage-guided fuzz targets (`fuzz/`) run,
//! and what the corpus replay test runs on every saved input. Each function takes any bytes and
//! panics only when an invariant is broken: a parser panicking, an incremental decoder giving a
//! different answer for the same input split otherwise, a value that does not survive its own
//! round trip, a framer returning more than its limit.

use crate::line::{Frame, LineFramer};
use crate::smtp::address::{parse_forward_path, parse_reverse_path};
use crate::smtp::client::{dot_stuff, parse_response, DotStuffer};
use crate::smtp::params::{split_params, xtext_decode, xtext_encode};
use crate::smtp::{command, DataDecoder, DataOutcome, MailParams, Mailbox, RcptParams, Status};
use crate::{pop3, smtp};

/// The input's first byte, used to vary a check (a split point, a limit), and the rest.
fn knob(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((k, rest)) => (*k as usize, rest),
        None => (0, data),
    }
}

/// SMTP command lines: the parser never panics, and a parsed command has a verb.
pub fn smtp_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok(c) = command::parse(line) {
            assert!(!c.verb().is_empty());
        }
    }
}

/// Server replies as the outbound client reads them: never a panic, never more consumed than
/// given, and the class always agrees with the basic code.
pub fn smtp_reply(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((r, used))) = parse_response(rest) {
        assert!(used > 0 && used <= rest.len());
        assert_eq!(r.effective_status().class, r.class());
        rest = &rest[used..];
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(st) = Status::parse(s) {
            assert_eq!(Status::parse(&st.to_string()), Some(st));
        }
    }
}

/// Paths and mailboxes: never a panic, and a parsed mailbox survives its own display.
pub fn smtp_address(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_reverse_path(s);
    let _ = parse_forward_path(s);
    if let Ok(m) = Mailbox::parse(s) {
        assert_eq!(Mailbox::parse(&m.to_string()), Ok(m.clone()));
        let _ = m.has_routing_syntax();
        let _ = m.key();
    }
}

/// ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT) and xtext: never a panic,
/// and xtext encoding is undone by decoding.
pub fn smtp_params(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ps) = split_params(s) {
        let mut mail = MailParams::default();
        let mut rcpt = RcptParams::default();
        for (k, v) in &ps {
            let _ = mail.apply(k, v.as_deref());
            let _ = rcpt.apply(k, v.as_deref());
        }
    }
    let _ = smtp::Notify::parse(s);
    let _ = smtp::OrcptParam::parse(s);
    let _ = xtext_decode(s);
    assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
}

fn decode(
    input: &[u8],
    split: usize,
    dot: bool,
    max_line: usize,
) -> (Option<usize>, Vec<u8>, bool, bool, bool) {
    let mut d = if dot {
        DataDecoder::data(1 << 16, max_line)
    } else {
        DataDecoder::bdat(1 << 16, max_line)
    };
    let mut text = Vec::new();
    let mut done = None;
    let split = split.min(input.len());
    for (start, part) in [(0, &input[..split]), (split, &input[split..])] {
        if done.is_some() {
            break;
        }
        if let DataOutcome::Done { consumed } = d.feed(part) {
            done = Some(start + consumed);
        }
        text.extend_from_slice(d.output());
        d.clear_output();
    }
    let oversize = d.oversize();
    let (rest, flaws) = d.finish();
    text.extend_from_slice(&rest);
    (
        done,
        text,
        flaws.bare_lf,
        flaws.bare_cr,
        oversize || flaws.long_line,
    )
}

/// The DATA decoder and the BDAT checker: the same answer however the input is split, and the
/// end of data only ever at `<CRLF>.<CRLF>` (SMTP smuggling).
pub fn smtp_data(data: &[u8]) {
    let (k, input) = knob(data);
    let max_line = 3 + k % 200;
    for dot in [true, false] {
        let whole = decode(input, input.len(), dot, max_line);
        let parts = decode(input, k * 7 % (input.len() + 1), dot, max_line);
        assert_eq!(whole, parts);
        if let (true, Some(n)) = (dot, whole.0) {
            let end = &input[..n];
            assert!(end.ends_with(b"\r\n.\r\n") || end == b".\r\n");
        }
        if !dot {
            assert_eq!(whole.0, None, "BDAT text has no end marker");
        }
    }
    // Outbound: stuffing in pieces equals stuffing the whole, and decoding undoes it.
    let whole = dot_stuff(input);
    let mut s = DotStuffer::default();
    let mut pieces = Vec::new();
    for chunk in input.chunks(1 + k % 17) {
        s.push(chunk, &mut pieces);
    }
    s.finish(&mut pieces);
    assert_eq!(whole, pieces);
}

/// POP3 commands, SASL PLAIN and the multi-line writer: never a panic, and a multi-line body
/// always ends with its terminator.
pub fn pop3(data: &[u8]) {
    let (k, input) = knob(data);
    for line in input.split(|&b| b == b'\n') {
        let _ = pop3::parse(line.strip_suffix(b"\r").unwrap_or(line));
    }
    let _ = pop3::sasl_plain(input);
    let top = (k % 2 == 0).then_some(k as u32 / 2);
    let mut out = Vec::new();
    pop3::write_multiline(input, top, &mut out);
    assert!(out.ends_with(b".\r\n"));
    // Streamed in pieces, the same response.
    let mut w = pop3::MultilineWriter::new(top);
    let mut pieces = Vec::new();
    for chunk in input.chunks(1 + k % 13) {
        w.push(chunk, &mut pieces);
    }
    w.finish(&mut pieces);
    assert_eq!(pieces, out);
}

/// The line framer: never a line longer than its limit, always progress.
pub fn line(data: &[u8]) {
    let (k, input) = knob(data);
    let max = 3 + k % 64;
    let mut f = LineFramer::new(max);
    let mut rest = input;
    while !rest.is_empty() {
        let (frame, used) = f.next(rest);
        if let Some(Frame::Line(l)) = frame {
            assert!(l.len() < max);
        }
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
}

/// Organization verbs and link-state chunks: each line is an `X-LINKSTATE` or `X-ORG-AUTH`
/// argument; parsing never panics, an assembler never holds more than its limit, and any data
/// survives being chunked and put back together.
pub fn org_chunks(data: &[u8]) {
    use crate::smtp::org::{self, Assembler, LinkStateArg};
    let (k, rest) = knob(data);
    let max = k * 16;
    let mut a = Assembler::new(max);
    for line in rest.split(|&b| b == b'\n') {
        let Ok(s) = std::str::from_utf8(line) else {
            continue;
        };
        let _ = org::parse_org_auth(s);
        let _ = org::parse_org_track(s);
        let _ = org::parse_org_move(s);
        if let Ok(LinkStateArg::Chunk(c)) = org::parse_linkstate(s) {
            if let Ok(Some(done)) = a.push(c) {
                assert!(done.len() <= max, "an assembled transfer exceeds its limit");
            }
        }
    }
    let mut a = Assembler::new(rest.len());
    let mut out = None;
    for c in org::chunks(rest) {
        assert!(c.len() + "X-LINKSTATE \r\n".len() <= org::MAX_CHUNK_LINE);
        match org::parse_linkstate(&c) {
            Ok(LinkStateArg::Chunk(ch)) => out = a.push(ch).expect("own chunks assemble"),
            other => panic!("own chunk {c:?} parsed as {other:?}"),
        }
    }
    assert_eq!(
        out.as_deref(),
        Some(rest),
        "chunked data does not come back whole"
    );
}

/// SCRAM client messages (RFC 5802): never a panic, and what parses keeps its parts in place
/// (the bare message is the first message without its gs2 header; the final message's text
/// without the proof is a prefix of it).
pub fn scram(data: &[u8]) {
    if let Ok(f) = crate::scram::ClientFirst::parse(data) {
        assert_eq!(format!("{}{}", f.gs2_header, f.bare).as_bytes(), data);
    }
    if let Ok(f) = crate::scram::ClientFinal::parse(data) {
        assert!(data.starts_with(f.without_proof.as_bytes()));
    }
}

/// The `Authentication-Results` filter (RFC 8601 §5): the same output however the text is
/// split, never longer than the input, and the body after the header section untouched.
pub fn results_filter(data: &[u8]) {
    let (k, data) = knob(data);
    let run = |cut: usize| {
        let mut f = crate::results::ResultsFilter::any_of(["mx.example.test", "s2.org.test"]);
        let mut out = Vec::new();
        let cut = cut.min(data.len());
        f.push(&data[..cut], &mut out);
        f.push(&data[cut..], &mut out);
        f.finish(&mut out);
        out
    };
    let whole = run(data.len());
    assert_eq!(run(k * 7), whole);
    assert!(whole.len() <= data.len());
    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        assert!(whole.ends_with(&data[i + 2..]), "the body is kept");
    }
}

/// IMAP commands: the framer finds the same command ends however the input is split, never
/// passes its limits, and the parser never panics on what it frames; mailbox names survive
/// modified UTF-7 both ways.
pub fn imap_command(data: &[u8]) {
    use crate::imap::frame::{Framer, Limits, Scan};
    use crate::imap::{mutf7, parse};
    let (k, input) = knob(data);
    let limits = Limits {
        max_line: 64 + k * 4,
        max_literal: 256,
        max_command: 2048,
        // Half the inputs as after login: APPEND's literals offered, taken out as the session
        // takes them (into `taken`), `{0}` left in their place.
        offer_over: (k % 2 == 1).then_some(32 + k as u64),
    };
    // Each command framed, with the octets of the literals taken out of it.
    type Framed = Result<(Vec<u8>, Vec<u8>), ()>;
    let frames = |step: usize| -> Vec<Framed> {
        let mut f = Framer::new(limits);
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut taken: Vec<u8> = Vec::new();
        // A literal being taken: where the command goes on, and its octets still to come.
        let mut taking: Option<(usize, u64)> = None;
        for chunk in input.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                if let Some((resume, left)) = taking {
                    let n = (left as usize).min(buf.len() - resume);
                    taken.extend(buf.drain(resume..resume + n));
                    if n as u64 == left {
                        taking = None;
                        f.taken(resume);
                    } else {
                        taking = Some((resume, left - n as u64));
                        break;
                    }
                }
                match f.scan(&buf) {
                    Scan::Complete { len } => {
                        let cmd: Vec<u8> = buf.drain(..len).collect();
                        f.reset();
                        out.push(Ok((cmd, std::mem::take(&mut taken))));
                    }
                    Scan::Continue { len } => assert!(len <= limits.max_literal),
                    Scan::Literal {
                        len, open, start, ..
                    } => {
                        assert!(len <= limits.max_literal && open < start && start <= buf.len());
                        let tail = buf.split_off(start);
                        buf.truncate(open);
                        buf.extend_from_slice(b"{0}\r\n");
                        let resume = buf.len();
                        buf.extend_from_slice(&tail);
                        taking = Some((resume, len));
                    }
                    Scan::Incomplete => break,
                    Scan::Error(_) => {
                        out.push(Err(()));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = frames(input.len().max(1));
    assert_eq!(whole, frames(1 + k % 7), "split input framed differently");
    for (cmd, _) in whole.into_iter().flatten() {
        let _ = parse::command(&cmd);
        let _ = parse::tag_of(&cmd);
    }
    if let Some(name) = mutf7::decode(input) {
        assert_eq!(
            mutf7::decode(mutf7::encode(&name).as_bytes()),
            Some(name.clone())
        );
    }
    if let Ok(text) = std::str::from_utf8(input) {
        assert_eq!(
            mutf7::decode(mutf7::encode(text).as_bytes()).as_deref(),
            Some(text)
        );
    }
}

/// Messages as FETCH and SEARCH read them: nothing panics, and the header and the text of the
/// whole message put together are the message.
pub fn imap_mime(data: &[u8]) {
    use crate::imap::mime::Message;
    use crate::imap::section::{Section, SectionText};
    let m = Message::parse(data);
    let _ = m.envelope();
    let _ = m.body_structure(true);
    let _ = m.body_structure(false);
    let _ = m.sent_date();
    let _ = m.header_contains("subject", "a");
    for v in crate::imap::mime::field_values(data) {
        if let Some(fast) = crate::imap::mime::plain_text(v) {
            assert_eq!(
                fast,
                crate::imap::mime::parsed_text(v),
                "plain decoding differs"
            );
        }
    }
    let _ = m.text_contains("x");
    let whole = m.section(&Section::default());
    assert_eq!(whole.as_deref(), Some(data));
    let part = |text| Section {
        part: vec![],
        text: Some(text),
    };
    if let (Some(mut h), Some(t)) = (
        m.section(&part(SectionText::Header)),
        m.section(&part(SectionText::Text)),
    ) {
        h.extend_from_slice(&t);
        assert_eq!(h, data, "HEADER + TEXT is not the message");
    }
    for p in 1..4u32 {
        let _ = m.section(&Section {
            part: vec![p],
            text: None,
        });
        let _ = m.section(&Section {
            part: vec![p, 1],
            text: Some(SectionText::Mime),
        });
        let _ = m.binary(&[p]);
    }
}

/// SORT and THREAD (RFC 5256) on messages cut from `data` at NUL octets: the header keys of
/// anything, every sort key, and both threading algorithms. Invariants: a sort is a
/// permutation; each thread answer names every message exactly once; `encode` balances its
/// parentheses.
pub fn imap_thread(data: &[u8]) {
    use crate::imap::command::{SortCriterion, SortKey};
    use crate::imap::sort::{encode, ordered_subject, references, sort, HeaderKeys, Item, Node};
    let items: Vec<Item> = data
        .split(|&b| b == 0)
        .take(64)
        .enumerate()
        .map(|(i, header)| Item {
            num: i as u32 + 1,
            seq: i as u32 + 1,
            arrival: (i as i64 * 7919) % 1000,
            size: header.len() as u64,
            keys: HeaderKeys::of(header),
        })
        .collect();
    let n = items.len();
    let keys = [
        SortKey::Arrival,
        SortKey::Cc,
        SortKey::Date,
        SortKey::From,
        SortKey::Size,
        SortKey::Subject,
        SortKey::To,
        SortKey::DisplayFrom,
        SortKey::DisplayTo,
    ];
    for (k, key) in keys.into_iter().enumerate() {
        let mut v = items.clone();
        sort(
            &mut v,
            &[SortCriterion {
                reverse: k % 2 == 1,
                key,
            }],
        );
        let mut nums: Vec<u32> = v.iter().map(|i| i.num).collect();
        nums.sort_unstable();
        assert!(nums.iter().copied().eq(1..=n as u32), "sort lost a message");
    }
    fn walk(node: &Node, seen: &mut Vec<u32>) {
        seen.extend(node.num);
        node.children.iter().for_each(|c| walk(c, seen));
    }
    for threads in [ordered_subject(&items), references(&items)] {
        let mut seen = Vec::new();
        threads.iter().for_each(|t| walk(t, &mut seen));
        seen.sort_unstable();
        assert!(
            seen.iter().copied().eq(1..=n as u32),
            "a thread answer does not name each message once: {threads:?}"
        );
        let text = encode(&threads);
        let mut depth = 0i64;
        for c in text.chars() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            assert!(depth >= 0, "unbalanced: {text}");
        }
        assert_eq!(depth, 0, "unbalanced: {text}");
    }
}
