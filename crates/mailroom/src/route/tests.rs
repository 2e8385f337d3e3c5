//! Route table tests: smart hosts, MX order, implicit MX, null MX, DNS failures.

use std::net::SocketAddr;

use super::dns::{DnsError, Mx, StaticResolver};
use super::*;
use crate::testutil::config;

fn resolver() -> StaticResolver {
    let mut r = StaticResolver::default();
    let mx = |p, h: &str| Mx {
        preference: p,
        exchange: h.to_string(),
    };
    r.mx.insert(
        "two.test".into(),
        Ok(vec![mx(20, "mx2.two.test"), mx(10, "mx1.two.test")]),
    );
    r.mx.insert("nomx.test".into(), Err(DnsError::NoRecords));
    r.mx.insert("null.test".into(), Ok(vec![mx(0, "")]));
    r.mx.insert(
        "flaky.test".into(),
        Err(DnsError::Temporary("SERVFAIL".into())),
    );
    r.mx.insert(
        "dangling.test".into(),
        Ok(vec![mx(10, "gone.dangling.test")]),
    );
    r.ips.insert(
        "mx1.two.test".into(),
        Ok(vec!["192.0.2.1".parse().unwrap()]),
    );
    r.ips.insert(
        "mx2.two.test".into(),
        Ok(vec![
            "192.0.2.2".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        ]),
    );
    r.ips
        .insert("nomx.test".into(), Ok(vec!["192.0.2.3".parse().unwrap()]));
    r.ips
        .insert("relay.test".into(), Ok(vec!["192.0.2.9".parse().unwrap()]));
    r
}

fn hosts(d: &[Destination]) -> Vec<(String, Vec<SocketAddr>)> {
    d.iter()
        .map(|d| (d.host.clone(), d.addrs.clone()))
        .collect()
}

#[tokio::test]
async fn mx_in_preference_order_then_implicit_mx() {
    let cfg = config();
    let r = resolver();
    let d = destinations(&cfg, &r, "two.test").await.unwrap();
    assert_eq!(
        hosts(&d),
        vec![
            (
                "mx1.two.test".to_string(),
                vec!["192.0.2.1:25".parse().unwrap()]
            ),
            (
                "mx2.two.test".to_string(),
                vec![
                    "192.0.2.2:25".parse().unwrap(),
                    "[2001:db8::2]:25".parse().unwrap()
                ]
            ),
        ]
    );
    let d = destinations(&cfg, &r, "nomx.test").await.unwrap();
    assert_eq!(
        hosts(&d),
        vec![(
            "nomx.test".to_string(),
            vec!["192.0.2.3:25".parse().unwrap()]
        )]
    );
}

#[tokio::test]
async fn failures_are_classified() {
    let cfg = config();
    let r = resolver();
    let status = |d: &str| {
        let cfg = cfg.clone();
        let r = r.clone();
        let d = d.to_string();
        async move {
            destinations(&cfg, &r, &d)
                .await
                .unwrap_err()
                .status
                .to_string()
        }
    };
    assert_eq!(status("null.test").await, "5.1.10");
    assert_eq!(status("nxdomain.test").await, "5.1.2");
    assert_eq!(status("flaky.test").await, "4.4.3");
    assert_eq!(status("dangling.test").await, "4.4.4");
}

#[tokio::test]
async fn smart_hosts_win_over_mx() {
    let mut cfg = config();
    cfg.outbound
        .smart_hosts
        .insert("two.test".into(), "relay.test:2525".into());
    let r = resolver();
    let d = destinations(&cfg, &r, "two.test").await.unwrap();
    assert_eq!(
        hosts(&d),
        vec![(
            "relay.test".to_string(),
            vec!["192.0.2.9:2525".parse().unwrap()]
        )]
    );
    assert_eq!(link_queue(&cfg, "two.test").key(), "link:relay.test:2525");
    assert_eq!(link_queue(&cfg, "nomx.test").key(), "link:nomx.test");
    cfg.outbound.smart_host = Some("127.0.0.1:2526".into());
    let d = destinations(&cfg, &r, "nomx.test").await.unwrap();
    assert_eq!(
        hosts(&d),
        vec![(
            "127.0.0.1".to_string(),
            vec!["127.0.0.1:2526".parse().unwrap()]
        )]
    );
}

#[test]
fn host_port_table() {
    let cases: &[(&str, Option<(&str, u16)>)] = &[
        ("relay.test", Some(("relay.test", 25))),
        ("relay.test:2525", Some(("relay.test", 2525))),
        ("127.0.0.1:10025", Some(("127.0.0.1", 10025))),
        ("[::1]:10025", Some(("::1", 10025))),
        ("[192.0.2.1]", Some(("192.0.2.1", 25))),
        ("", None),
        ("relay.test:port", None),
        ("a b:25", None),
    ];
    for (input, want) in cases {
        let got = parse_host_port(input, 25);
        assert_eq!(
            got.as_ref().map(|(h, p)| (h.as_str(), *p)),
            *want,
            "{input}"
        );
    }
}
