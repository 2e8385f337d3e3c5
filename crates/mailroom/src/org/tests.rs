//! Organization state tests: edits, digests, tokens.

use super::*;

#[test]
fn edits_check_what_they_name_and_masters_follow_moves() {
    let mut s = OrgState::create("o", "Org", "a1", "127.0.0.1:1", "A");
    s.set_server("a1", "a2", "A", "127.0.0.1:2");
    s.add_group("a1", "B", "a2");
    assert!(s.move_server("a1", "zz", "B").is_err());
    assert!(s.move_server("a1", "a1", "Q").is_err());
    s.move_server("a1", "a1", "B").unwrap();
    assert_eq!(
        s.dir.group("A").unwrap().master,
        "a2",
        "A's master left: a2 takes over"
    );
    s.set_user("a1", "u@x.test", Some("a2")).unwrap();
    assert!(s.set_user("a1", "v@x.test", Some("nope")).is_err());
    assert!(matches!(
        s.remove_server("a1", "a2"),
        Err(OrgError::Conflict(_))
    ));
    s.set_user("a1", "u@x.test", None).unwrap();
    s.remove_server("a1", "a2").unwrap();
    assert!(s.dir.server("a2").is_none());
}

#[test]
fn digests_agree_after_merging_in_any_order() {
    let base = OrgState::create("o", "Org", "a1", "127.0.0.1:1", "A");
    let mut x = base.clone();
    x.set_server("a1", "a2", "A", "127.0.0.1:2");
    let mut y = base.clone();
    y.set_user("b1", "u@x.test", Some("a1")).unwrap();
    let mut xy = x.clone();
    assert!(xy.merge(&y));
    let mut yx = y.clone();
    assert!(yx.merge(&x));
    assert_eq!(xy.digest(), yx.digest());
    assert_ne!(xy.digest(), base.digest());
    xy.set_domain("a1", "x.test", true);
    let json = xy.to_json();
    assert_eq!(OrgState::from_json(&json, "o").unwrap(), xy);
    assert!(OrgState::from_json(&json, "o")
        .unwrap()
        .dir
        .accepts("X.test"));
    assert!(
        OrgState::from_json(&json, "other").is_err(),
        "another organization's state"
    );
    assert!(OrgState::from_json(b"{", "o").is_err());
}

#[test]
fn join_tokens_round_trip_and_refuse_garbage() {
    let t = JoinToken {
        org: "o".into(),
        secret: random_hex(32),
        server: "a1".into(),
        address: "[::1]:2525".into(),
    };
    let line = t.encode();
    assert!(!line.contains(char::is_whitespace));
    assert_eq!(JoinToken::decode(&format!("  {line}\n")).unwrap(), t);
    for bad in ["", "mrorg1.", "mrorg1.!!!", "other.abc", "mrorg1.e30"] {
        assert!(JoinToken::decode(bad).is_err(), "{bad:?}");
    }
}
