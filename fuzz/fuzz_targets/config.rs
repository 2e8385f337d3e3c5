//! Coverage-guided fuzzing of the configuration loader (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailroom_config::check(data));
