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

    #[test]
    fn mailbox_display_round_trips(line in smtp_bytes()) {
        if let Ok(s) = std::str::from_utf8(&line) {
            if let Ok(m) = smtp::Mailbox::parse(s) {
                let again = smtp::Mailbox::parse(&m.to_string());
                prop_assert_eq!(again, Ok(m));
            }
        }
    }

    #[test]
    fn data_decoder_is_split_invariant(input in smtp_bytes(), split in 0usize..300) {
        let whole = decode_split(&input, input.len());
        let parts = decode_split(&input, split);
        prop_assert_eq!(whole, parts);
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf(input in smtp_bytes()) {
        let (done, _, _, _) = decode_split(&input, input.len());
        if let Some(n) = done {
            // The consumed bytes end with CRLF.CRLF, or are exactly ".\r\n" at the start.
            let end = &input[..n];
            prop_assert!(end.ends_with(b"\r\n.\r\n") || end == b".\r\n");
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
