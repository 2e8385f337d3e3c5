//! Coverage-guided fuzzing of [`mailroom_proto::check::results_filter`] (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailroom_proto::check::results_filter(data));
