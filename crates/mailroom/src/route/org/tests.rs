//! Route choice table tests: inside a group, across groups by cost, around DOWN connectors,
//! SMTP connectors by address-space specificity, size restrictions, and loops.

use chrono::Utc;

use super::*;
use crate::org::dir::{Connector, ConnectorKind};
use crate::org::links::Link;

/// Groups A {a1 master, a2}, B {b1, b2}, C {c1}; connectors ab (A–B, cost 1, bridgeheads a1
/// and b1), ac (A–C, cost 5, any server), cb (C–B, cost 1); SMTP connectors `star` (`*`,
/// cost 1, from b2 through a smart host) and `exact` (`example.org`, cost 50, from a2, at
/// most 1000 octets).
fn org() -> OrgState {
    let mut s = OrgState::create("org1", "Org", "a1", "127.0.0.1:2001", "A");
    s.set_server("a1", "a2", "A", "127.0.0.1:2002");
    s.add_group("a1", "B", "b1");
    s.set_server("a1", "b1", "B", "127.0.0.1:2003");
    s.set_server("a1", "b2", "B", "127.0.0.1:2004");
    s.add_group("a1", "C", "c1");
    s.set_server("a1", "c1", "C", "127.0.0.1:2005");
    let rgc = |a: &str, b: &str, cost, heads: &[&str]| Connector {
        kind: ConnectorKind::Group {
            between: [a.into(), b.into()],
        },
        cost,
        bridgeheads: heads.iter().map(|h| h.to_string()).collect(),
        max_size: None,
    };
    s.set_connector("a1", "ab", rgc("A", "B", 1, &["a1", "b1"]))
        .unwrap();
    s.set_connector("a1", "ac", rgc("A", "C", 5, &[])).unwrap();
    s.set_connector("a1", "cb", rgc("C", "B", 1, &[])).unwrap();
    let smtp = |space: &str, cost, head: &str, smart: Option<&str>, max| Connector {
        kind: ConnectorKind::Smtp {
            address_spaces: vec![space.into()],
            smart_host: smart.map(String::from),
        },
        cost,
        bridgeheads: vec![head.into()],
        max_size: max,
    };
    s.set_connector(
        "a1",
        "star",
        smtp("*", 1, "b2", Some("relay.test:25"), None),
    )
    .unwrap();
    s.set_connector(
        "a1",
        "exact",
        smtp("example.org", 50, "a2", None, Some(1000)),
    )
    .unwrap();
    s.set_domain("a1", "org.test", true);
    for (u, home) in [("a1", "a1"), ("a2", "a2"), ("b2", "b2"), ("c1", "c1")] {
        s.set_user("a1", &format!("{u}@org.test"), Some(home))
            .unwrap();
    }
    s
}

fn down(s: &mut OrgState, server: &str) {
    let st = s.stamp("test");
    s.links.publish(
        server,
        Link {
            up: false,
            why: "connection refused".into(),
            since: Utc::now(),
        },
        st,
    );
}

fn to(name: &str) -> Decision {
    Decision::Server {
        name: name.into(),
        address: org().dir.server(name).unwrap().address.clone(),
    }
}

#[test]
fn routes_in_table() {
    struct Case {
        what: &'static str,
        me: &'static str,
        rcpt: &'static str,
        size: u64,
        down: &'static [&'static str],
        passed: &'static [&'static str],
        want: Decision,
        connectors: &'static [&'static str],
        cost: u32,
    }
    let outside = |c: Option<&str>, h: Option<&str>| Decision::Outside {
        connector: c.map(String::from),
        smart_host: h.map(String::from),
    };
    let cases = vec![
        Case { what: "home is here", me: "a1", rcpt: "a1@org.test", size: 10, down: &[], passed: &[], want: Decision::Local, connectors: &[], cost: 0 },
        Case { what: "same group: straight to the home", me: "a1", rcpt: "A2@Org.Test", size: 10, down: &[], passed: &[], want: to("a2"), connectors: &[], cost: 0 },
        Case { what: "same group, home DOWN: still to it (mail waits)", me: "a1", rcpt: "a2@org.test", size: 10, down: &["a2"], passed: &[], want: to("a2"), connectors: &[], cost: 0 },
        Case { what: "not a bridgehead: to the local bridgehead", me: "a2", rcpt: "b2@org.test", size: 10, down: &[], passed: &[], want: to("a1"), connectors: &["ab"], cost: 1 },
        Case { what: "bridgehead: to the remote bridgehead", me: "a1", rcpt: "b2@org.test", size: 10, down: &[], passed: &[], want: to("b1"), connectors: &["ab"], cost: 1 },
        Case { what: "remote bridgehead: inside its group", me: "b1", rcpt: "b2@org.test", size: 10, down: &[], passed: &["a1"], want: to("b2"), connectors: &[], cost: 0 },
        Case { what: "ab DOWN: around through C by cost", me: "a1", rcpt: "b2@org.test", size: 10, down: &["b1"], passed: &[], want: to("c1"), connectors: &["ac", "cb"], cost: 6 },
        Case { what: "the reverse direction", me: "b1", rcpt: "a2@org.test", size: 10, down: &[], passed: &[], want: to("a1"), connectors: &["ab"], cost: 1 },
        Case { what: "most specific address space wins regardless of cost", me: "a1", rcpt: "x@example.org", size: 10, down: &[], passed: &[], want: to("a2"), connectors: &["exact"], cost: 50 },
        Case { what: "the bridgehead of the connector sends it out", me: "a2", rcpt: "x@EXAMPLE.org", size: 10, down: &[], passed: &[], want: outside(Some("exact"), None), connectors: &["exact"], cost: 50 },
        Case { what: "too big for exact: the * connector in B", me: "a1", rcpt: "x@example.org", size: 5000, down: &[], passed: &[], want: to("b1"), connectors: &["ab", "star"], cost: 2 },
        Case { what: "exact DOWN: falls back to *", me: "a1", rcpt: "x@example.org", size: 10, down: &["a2"], passed: &[], want: to("b1"), connectors: &["ab", "star"], cost: 2 },
        Case { what: "other domains take *", me: "b2", rcpt: "x@other.net", size: 10, down: &[], passed: &[], want: outside(Some("star"), Some("relay.test:25")), connectors: &["star"], cost: 1 },
        Case { what: "no UP route between groups: waits", me: "a1", rcpt: "b2@org.test", size: 10, down: &["b1", "c1"], passed: &[], want: Decision::Unreachable { why: "no UP route from routing group A to B: ab is DOWN (b1 is DOWN: connection refused); ac is DOWN (c1 is DOWN: connection refused); cb is DOWN (c1 is DOWN: connection refused)".into() }, connectors: &[], cost: 0 },
        Case { what: "never back to a server already passed", me: "a1", rcpt: "b2@org.test", size: 10, down: &[], passed: &["b1"], want: Decision::Fail { status: mailroom_proto::smtp::Status::ROUTING_LOOP, why: "routing loop: every next hop towards ab has already handled this message (it passed b1)".into() }, connectors: &[], cost: 0 },
        Case { what: "same group, home already passed: a loop", me: "b1", rcpt: "b2@org.test", size: 10, down: &[], passed: &["b2"], want: Decision::Fail { status: mailroom_proto::smtp::Status::ROUTING_LOOP, why: "routing loop: every next hop towards b2 has already handled this message (it passed b2)".into() }, connectors: &[], cost: 0 },
        Case { what: "a probe mailbox: to its server, across groups", me: "a2", rcpt: "mailroom-probe@b2", size: 10, down: &[], passed: &[], want: to("a1"), connectors: &["ab"], cost: 1 },
        Case { what: "this server's probe mailbox is here", me: "b2", rcpt: "mailroom-probe@b2", size: 10, down: &[], passed: &[], want: Decision::Local, connectors: &[], cost: 0 },
        Case { what: "accepted domain, no such user: the local directory", me: "b1", rcpt: "nobody@org.test", size: 10, down: &[], passed: &[], want: Decision::Local, connectors: &[], cost: 0 },
    ];
    for c in cases {
        let mut s = org();
        for d in c.down {
            down(&mut s, d);
        }
        let passed: Vec<String> = c.passed.iter().map(|p| p.to_string()).collect();
        let p = plan(
            &s,
            c.me,
            Request {
                recipient: c.rcpt,
                size: c.size,
                passed: &passed,
            },
        );
        assert_eq!(p.decision, c.want, "{}: {:#?}", c.what, p.steps);
        assert_eq!(p.connectors, c.connectors, "{}", c.what);
        assert_eq!(p.cost, c.cost, "{}", c.what);
        assert!(!p.steps.is_empty(), "{}: no explanation", c.what);
    }
}

#[test]
fn a_server_never_routes_around_itself_and_a_loop_while_a_link_is_down_waits() {
    // s1 published a2 DOWN while a2 was away; a2, running again, still routes through itself.
    let mut s = org();
    down(&mut s, "a1");
    let req = Request {
        recipient: "b2@org.test",
        size: 1,
        passed: &[],
    };
    assert_eq!(
        plan(&s, "a1", req).decision,
        to("b1"),
        "a1 is running: ab is UP for it"
    );
    // b1 DOWN, and the message came from c1: going back would loop; it waits instead.
    let mut s = org();
    down(&mut s, "b1");
    let passed = ["c1".to_string()];
    let p = plan(
        &s,
        "a1",
        Request {
            passed: &passed,
            ..req
        },
    );
    assert!(
        matches!(p.decision, Decision::Unreachable { ref why } if why.contains("waiting while ab")),
        "{p:?}"
    );
}

#[test]
fn no_connector_matches_or_none_exists() {
    let mut s = org();
    let me = "a1";
    s.remove_connector(me, "star").unwrap();
    let req = Request {
        recipient: "x@other.net",
        size: 1,
        passed: &[],
    };
    assert!(matches!(
        plan(&s, me, req).decision,
        Decision::Fail {
            status: mailroom_proto::smtp::Status::CANNOT_ROUTE,
            ..
        }
    ));
    s.remove_connector(me, "exact").unwrap();
    assert_eq!(
        plan(&s, me, req).decision,
        Decision::Outside {
            connector: None,
            smart_host: None
        },
        "an organization without SMTP connectors sends from every server"
    );
}

#[test]
fn the_alternative_is_the_route_without_the_first_connector() {
    let s = org();
    let req = Request {
        recipient: "b2@org.test",
        size: 1,
        passed: &[],
    };
    let p = plan(&s, "a1", req);
    let alt = alternative(&s, "a1", req, &p).unwrap();
    assert_eq!(alt.decision, to("c1"));
    assert_eq!(alt.connectors, ["ac", "cb"]);
    let local = plan(
        &s,
        "a1",
        Request {
            recipient: "a1@org.test",
            ..req
        },
    );
    assert!(alternative(&s, "a1", req, &local).is_none());
}

#[test]
fn address_space_specificity() {
    let table = [
        ("*", "a.b.c", Some(0)),
        ("*.b.c", "a.b.c", Some(4)),
        ("*.c", "a.b.c", Some(2)),
        ("*.b.c", "b.c", None),
        ("*.b.c", "xb.c", None),
        ("a.b.c", "A.B.C", Some(100_005)),
        ("a.b.c", "x.a.b.c", None),
    ];
    for (space, domain, want) in table {
        assert_eq!(specificity(space, domain), want, "{space} vs {domain}");
    }
    assert!(specificity("a.b.c", "a.b.c") > specificity("*.b.c", "a.b.c"));
    assert!(specificity("*.b.c", "a.b.c") > specificity("*.c", "a.b.c"));
}
