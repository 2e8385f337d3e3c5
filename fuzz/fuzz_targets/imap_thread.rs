//! Coverage-guided fuzzing of [`mailroom_proto::check::imap_thread`] (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailroom_proto::check::imap_thread(data));
