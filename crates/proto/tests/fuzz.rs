//! Property tests over random input: the parsers never panic, and the incremental decoders give
//! the same answer however the input is split. These run in CI in bounded time (a fixed number
//! of cases); they are the stable-toolchain stand-in for coverage-guided fuzzing.

use mailroom_proto::line::LineFramer;
use mailroom_proto::results::ResultsFilter;
use mailroom_proto::scram;
use mailroom_proto::smtp::{command, DataDecoder, DataOutcome};
use mailroom_proto::{pop3, smtp};
use proptest::prelude::*;

/// Bytes biased towards the characters that matter to SMTP framing.
fn smtp_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"\r\n.<>@:%!\" =,;+".to_vec()),
            4 => prop::sample::select(b"MAILFROMRCPTODATBHLESQUIVNXZ0123456789abc".to_vec()),
            1 => any::<u8>(),
        ],
        0..300,
    )
}

/// A valid mailbox (RFC 5321 §4.1.2, RFC 6531 for UTF-8): a dot-string or quoted local part,
/// at a domain of labels or an address literal.
fn mailbox_text() -> impl Strategy<Value = String> {
    let atom = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,8}";
    let dot_string = prop::collection::vec(atom, 1..4).prop_map(|a| a.join("."));
    let quoted = prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9 .@,:;<>()\\[\\]]".prop_map(|c| c.to_string()),
            1 => Just("\\\"".to_string()),
            1 => Just("\\\\".to_string()),
        ],
        1..10,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()));
    let utf8 = "[a-zé]{1,3}[ü日本]{1,2}";
    let local = prop_oneof![4 => dot_string, 2 => quoted, 1 => utf8.prop_map(String::from)];
    let label = "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?";
    let domain = prop_oneof![
        4 => prop::collection::vec(label, 1..4).prop_map(|l| format!("{}.test", l.join("."))),
        1 => (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("[{a}.{b}.{c}.{d}]")),
    ];
    (local, domain).prop_map(|(l, d)| format!("{l}@{d}"))
}

/// Message text with its end (CRLF.CRLF) somewhere in it, after lines that look like it.
fn text_with_end() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(b"text line\r\n".to_vec()),
        2 => Just(b"..dot-stuffed\r\n".to_vec()),
        1 => Just(b"\n.\n".to_vec()),
        1 => Just(b"\r.\r".to_vec()),
        1 => Just(b"x\n.\r\n".to_vec()),
        1 => Just(b"x\r\n.\n".to_vec()),
        1 => Just(b"x\r.\r\n".to_vec()),
        1 => Just(b".\r".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    (
        prop::collection::vec(piece.clone(), 0..12),
        prop::collection::vec(piece, 0..4),
    )
        .prop_map(|(before, after)| {
            let mut t = before.concat();
            t.extend_from_slice(b"\r\n.\r\n");
            t.extend(after.concat());
            t
        })
}

fn decode_split(input: &[u8], split: usize) -> (Option<usize>, Vec<u8>, bool, bool) {
    let mut d = DataDecoder::data(1 << 20, 1000);
    let split = split.min(input.len());
    let mut done = None;
    if let DataOutcome::Done { consumed } = d.feed(&input[..split]) {
        done = Some(consumed);
    } else if let DataOutcome::Done { consumed } = d.feed(&input[split..]) {
        done = Some(split + consumed);
    }
    let (text, flaws) = d.finish();
    (done, text, flaws.bare_lf, flaws.bare_cr)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn smtp_commands_never_panic(line in smtp_bytes()) {
        let _ = command::parse(&line);
    }

    #[test]
    fn pop3_commands_never_panic(line in smtp_bytes()) {
        let _ = pop3::parse(&line);
        let _ = pop3::sasl_plain(&line);
    }

    /// Every generated mailbox is valid (the assertion is reached in every case, issue 21: with
    /// random bytes it was in 4 of 1,000), and what it displays parses back to it.
    #[test]
    fn mailbox_display_round_trips(text in mailbox_text()) {
        let m = smtp::Mailbox::parse(&text);
        prop_assert!(m.is_ok(), "{:?} does not parse: {:?}", text, m);
        let m = m.unwrap();
        let again = smtp::Mailbox::parse(&m.to_string());
        prop_assert_eq!(again, Ok(m));
    }

    #[test]
    fn data_decoder_is_split_invariant(input in smtp_bytes(), split in 0usize..300) {
        let whole = decode_split(&input, input.len());
        let parts = decode_split(&input, split);
        prop_assert_eq!(whole, parts);
    }

    /// Text that holds the end of data (CRLF.CRLF) somewhere, after the look-alikes SMTP
    /// smuggling uses (`\n.\n`, `\r.\r`, `\n.\r\n`, `\r\n.\n`, dot-stuffed lines): the decoder
    /// ends at the real one and nowhere else, however the text is split, at every split point
    /// (issue 21: with random bytes the assertion was reached in 1 of 20 cases, and never with
    /// the split that matters).
    #[test]
    fn data_ends_only_at_crlf_dot_crlf(input in text_with_end()) {
        // Where it must end: the first CRLF.CRLF, the start counting as after a CRLF.
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(&input);
        let at = framed.windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assert!(at.is_some());
        let want = at.unwrap() + 3;
        for split in 0..=input.len() {
            let (done, _, _, _) = decode_split(&input, split);
            prop_assert_eq!(done, Some(want), "split at {}", split);
        }
    }

    #[test]
    fn framer_never_returns_more_than_the_limit(input in smtp_bytes(), max in 3usize..64) {
        let mut f = LineFramer::new(max);
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let (frame, used) = f.next(rest);
            if let Some(mailroom_proto::line::Frame::Line(l)) = frame {
                prop_assert!(l.len() < max);
            }
            if used == 0 { break; }
            rest = &rest[used..];
        }
    }

    #[test]
    fn scram_messages_never_panic(msg in scram_bytes()) {
        let _ = scram::ClientFirst::parse(&msg);
        let _ = scram::ClientFinal::parse(&msg);
    }

    #[test]
    fn results_filter_is_split_invariant_and_never_grows(input in results_bytes(), split in 0usize..300) {
        let run = |cut: usize| {
            let mut f = ResultsFilter::new("mx.example.test");
            let mut out = Vec::new();
            let cut = cut.min(input.len());
            f.push(&input[..cut], &mut out);
            f.push(&input[cut..], &mut out);
            f.finish(&mut out);
            out
        };
        let whole = run(input.len());
        prop_assert_eq!(&run(split), &whole);
        prop_assert!(whole.len() <= input.len());
    }
}

/// Header-like text with `Authentication-Results` fields, some naming the filtered server.
fn results_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(b"Authentication-Results: mx.example.test; spf=pass\r\n".to_vec()),
            2 => Just(b"Authentication-Results: other.test; x\r\n".to_vec()),
            2 => Just(b" (folded)\r\n".to_vec()),
            2 => Just(b"Subject: s\r\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..20,
    )
    .prop_map(|parts| parts.concat())
}

/// Bytes biased towards SCRAM's syntax.
fn scram_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"nyp,=acrspv23CD".to_vec()),
            2 => prop::sample::select(b"biwsAZaz09+/".to_vec()),
            1 => any::<u8>(),
        ],
        0..120,
    )
}
