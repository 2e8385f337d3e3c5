//! Coverage-guided fuzzing of the config store's backups and key edits (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailroom_config::history::check(data));
