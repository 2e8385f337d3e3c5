//! Every enhanced status code written in the source is one: `Reply::code(550, "5.1.1", …)`
//! parses its status at run time, where a typo would be a panic in a session (or, before
//! issue 21, a silent 5.0.0 in a failure). This reads every call in the workspace's sources
//! and checks each literal: it parses (RFC 3463) and its class is the reply code's.

use mailroom_proto::smtp::{Class, Status};

fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn every_reply_status_literal_is_valid_and_of_its_class() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&crates, &mut files);
    let mut checked = 0;
    for (path, text) in &files {
        let mut rest = text.as_str();
        while let Some((_, after)) = rest.split_once("Reply::code(") {
            rest = after;
            // (A test that the refusal of a wrong one panics is left out.)
            let at = text.len() - after.len();
            let before = text.get(at.saturating_sub(120)..at).unwrap_or_default();
            if before.contains("should_panic") {
                continue;
            }
            // `Reply::code(CODE, "STATUS", …`, possibly across lines.
            let args: Vec<&str> = after.splitn(3, ',').take(2).map(str::trim).collect();
            let [code, status] = args[..] else { continue };
            let (Ok(code), Some(status)) = (
                code.parse::<u16>(),
                status.strip_prefix('"').and_then(|s| s.strip_suffix('"')),
            ) else {
                continue;
            };
            let parsed = Status::parse(status);
            assert!(
                parsed.is_some(),
                "{}: {status:?} is not a status",
                path.display()
            );
            let class = match code / 100 {
                2 => Class::Success,
                4 => Class::Transient,
                _ => Class::Permanent,
            };
            assert_eq!(
                parsed.map(|s| s.class),
                Some(class),
                "{}: {code} with {status}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "only {checked} calls found: the scan is broken"
    );
}
