//! Table tests of the expansion over an in-memory directory.

use std::collections::HashMap;

use super::*;

fn user(id: i64, address: &str, quota: Option<u64>, used: u64) -> DirEntry {
    DirEntry::User(User {
        id,
        address: address.into(),
        quota,
        used,
        messages: 0,
    })
}

fn run(dir: &HashMap<String, DirEntry>, address: &str) -> (Resolution, usize) {
    let mut lookups = 0;
    let r = expand::<()>(
        address,
        ExpansionLimits::default(),
        |d| d == "example.com",
        |a| {
            lookups += 1;
            Ok(dir.get(a).cloned())
        },
    )
    .unwrap();
    (r, lookups)
}

fn addresses(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Targets { targets, .. } => targets.iter().map(|t| t.address.clone()).collect(),
        other => vec![format!("{other:?}")],
    }
}

#[test]
fn expansion_table() {
    let mut dir = HashMap::new();
    dir.insert("a@example.com".into(), user(1, "a@example.com", None, 0));
    dir.insert(
        "b@example.com".into(),
        user(2, "b@example.com", Some(100), 40),
    );
    dir.insert(
        "team@example.com".into(),
        DirEntry::List(vec![
            "a@example.com".into(),
            "b@example.com".into(),
            "far@other.test".into(),
            "ghost@example.com".into(),
        ]),
    );
    dir.insert(
        "all@example.com".into(),
        DirEntry::List(vec!["team@example.com".into(), "a@example.com".into()]),
    );
    dir.insert(
        "loop1@example.com".into(),
        DirEntry::List(vec!["loop2@example.com".into()]),
    );
    dir.insert(
        "loop2@example.com".into(),
        DirEntry::List(vec!["loop1@example.com".into()]),
    );
    dir.insert(
        "loopy@example.com".into(),
        DirEntry::List(vec!["loopy@example.com".into(), "a@example.com".into()]),
    );
    // Two paths to one list is not a loop.
    dir.insert(
        "twice@example.com".into(),
        DirEntry::List(vec!["team@example.com".into(), "all@example.com".into()]),
    );
    dir.insert(
        "fwd@example.com".into(),
        DirEntry::Alias(vec!["b@example.com".into()]),
    );
    let cases: &[(&str, &[&str])] = &[
        ("a@example.com", &["a@example.com"]),
        ("nobody@example.com", &["Unknown"]),
        (
            "team@example.com",
            &[
                "a@example.com",
                "b@example.com",
                "far@other.test",
                "ghost@example.com",
            ],
        ),
        (
            "all@example.com",
            &[
                "a@example.com",
                "b@example.com",
                "far@other.test",
                "ghost@example.com",
            ],
        ),
        ("loop1@example.com", &["Loop"]),
        ("loopy@example.com", &["a@example.com"]),
        (
            "twice@example.com",
            &[
                "a@example.com",
                "b@example.com",
                "far@other.test",
                "ghost@example.com",
            ],
        ),
        ("fwd@example.com", &["b@example.com"]),
    ];
    for (addr, want) in cases {
        let (r, _) = run(&dir, addr);
        assert_eq!(addresses(&r), *want, "{addr}");
    }
    let (r, _) = run(&dir, "twice@example.com");
    let Resolution::Targets {
        loop_cut, targets, ..
    } = &r
    else {
        panic!()
    };
    assert!(!loop_cut, "a second path is not a loop");
    assert_eq!(targets[1].room, Some(60), "b has 60 octets left");
    assert_eq!(targets[3].route, Route::Unresolved);
    let (r, _) = run(&dir, "loopy@example.com");
    assert!(matches!(r, Resolution::Targets { loop_cut: true, .. }));
}

#[test]
fn a_full_mailbox() {
    let t = |room| Target {
        address: "x@example.com".into(),
        route: Route::Local { user_id: 1 },
        room,
        quota: room.map(|r| r + 100),
    };
    assert!(t(Some(10)).never_fits(111) && !t(Some(10)).never_fits(110));
    assert!(!t(None).never_fits(u64::MAX));
    assert!(!Target::remote("x@far.test").never_fits(u64::MAX));
    assert!(t(Some(0)).is_full_for(0));
    assert!(t(Some(10)).is_full_for(11));
    assert!(!t(Some(10)).is_full_for(10));
    assert!(!t(None).is_full_for(u64::MAX));
    assert!(!Target::remote("x@far.test").is_full_for(u64::MAX));
}

/// A 10,000-member list is expanded with one lookup per entry, not per path or per pair.
#[test]
fn a_ten_thousand_member_list_in_linear_time() {
    let mut dir = HashMap::new();
    let mut members = Vec::new();
    for i in 0..10_000 {
        let a = format!("u{i}@example.com");
        dir.insert(a.clone(), user(i + 1, &a, None, 0));
        members.push(a);
    }
    // Every member twice more: through a nested list, and directly again.
    dir.insert("inner@example.com".into(), DirEntry::List(members.clone()));
    let mut outer = members.clone();
    outer.push("inner@example.com".into());
    dir.insert("big@example.com".into(), DirEntry::List(outer));
    let started = std::time::Instant::now();
    let (r, lookups) = run(&dir, "big@example.com");
    let Resolution::Targets { targets, .. } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(targets.len(), 10_000);
    assert_eq!(lookups, 10_002, "each entry looked up once");
    // Not a benchmark: a guard against a quadratic step (which takes tens of seconds here).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
