//! Replays every saved fuzzing input (fuzz/corpus/<target>/) through the checks the fuzz targets
//! run, so that what the fuzzer once found, or covered, is tested on every run of the suite, on
//! the stable toolchain and without cargo-fuzz.

use std::path::PathBuf;

use mailroom_proto::check;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let ok = std::panic::catch_unwind(|| f(&data));
        assert!(
            ok.is_ok(),
            "{target}: {} broke an invariant",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "{target}: the corpus is empty");
}

#[test]
fn smtp_command() {
    replay("smtp_command", check::smtp_command);
}

#[test]
fn smtp_reply() {
    replay("smtp_reply", check::smtp_reply);
}

#[test]
fn smtp_address() {
    replay("smtp_address", check::smtp_address);
}

#[test]
fn smtp_params() {
    replay("smtp_params", check::smtp_params);
}

#[test]
fn smtp_data() {
    replay("smtp_data", check::smtp_data);
}

#[test]
fn pop3() {
    replay("pop3", check::pop3);
}

#[test]
fn line() {
    replay("line", check::line);
}

#[test]
fn org_chunks() {
    replay("org_chunks", check::org_chunks);
}

#[test]
fn scram() {
    replay("scram", check::scram);
}

#[test]
fn results_filter() {
    replay("results_filter", check::results_filter);
}

#[test]
fn imap_command() {
    replay("imap_command", check::imap_command);
}

#[test]
fn imap_thread() {
    replay("imap_thread", check::imap_thread);
}

#[test]
fn imap_mime() {
    replay("imap_mime", check::imap_mime);
}
