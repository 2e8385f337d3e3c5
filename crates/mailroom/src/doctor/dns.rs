//! DNS, through the resolver delivery uses (`dns.nameservers`, or the system's): this server's
//! name resolves, and the MX of each local and accepted domain points at this server or
//! another of the organization. With the system's resolver, names under the special-use
//! domains of RFC 6761 (`localhost`, `.test`, `.example`, `.invalid`, `.localhost`), which
//! public DNS never answers by design, are not looked up: doctor says so (`dns-skipped`).

use super::local::Context;
use super::Code;
use super::Finding;
use crate::route::dns::{DnsError, HickoryResolver, Mx, Resolver};

/// What is wrong with a domain's MX records, given the names that count as ours.
pub fn mx_problem(domain: &str, mx: &Result<Vec<Mx>, DnsError>, ours: &[String]) -> Option<String> {
    let hosts: Vec<&str> = match mx {
        Ok(v) => v.iter().map(|m| m.exchange.as_str()).collect(),
        Err(DnsError::NoRecords) => {
            return Some(format!(
                "{domain} has no MX record: senders fall back to its address record"
            ))
        }
        Err(e) => return Some(format!("the MX lookup of {domain} failed: {e}")),
    };
    if hosts.iter().any(|h| h.is_empty()) {
        return Some(format!(
            "{domain} has a null MX (RFC 7505): it says it takes no mail"
        ));
    }
    if hosts
        .iter()
        .any(|h| ours.iter().any(|o| o.eq_ignore_ascii_case(h)))
    {
        return None;
    }
    Some(format!(
        "the MX of {domain} is {}, not a server of this organization ({})",
        hosts.join(", "),
        ours.join(", ")
    ))
}

/// Whether public DNS never answers for `name` (RFC 6761 §6: `localhost`, and `.test`,
/// `.example`, `.invalid`, `.localhost` and the names under them).
pub fn special_use(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let last = n.rsplit('.').next().unwrap_or_default();
    matches!(last, "localhost" | "test" | "example" | "invalid")
}

/// Runs the DNS checks with the resolver delivery uses.
pub async fn check(ctx: &Context) -> Vec<Finding> {
    let c = &ctx.config;
    let r = match HickoryResolver::new(&c.dns.nameservers) {
        Ok(r) => r,
        Err(e) => {
            return vec![ctx.f.find(
                Code::CheckFailed,
                "the DNS resolver delivery uses cannot be set up: DNS was not checked",
                vec![e],
                "outbound mail cannot find its destinations either",
                None,
            )]
        }
    };
    let mut out = Vec::new();
    // A private resolver (dns.nameservers) may serve any name; the system's answers for the
    // public DNS only.
    let public = c.dns.nameservers.is_empty();
    let mut skipped = Vec::new();
    let host = &c.server.hostname;
    if public && special_use(host) {
        skipped.push(host.clone());
    } else if let Err(e) = r.ips(host).await {
        out.push(ctx.f.find(
            Code::DnsHostname,
            format!("this server's name {host} does not resolve"),
            vec![format!("A/AAAA {host}: {e}")],
            "other servers reach this one, and check its greeting, by this name",
            Some(format!(
                "publish an A record for {host}, or set server.hostname to a name that has one"
            )),
        ));
    }
    let mut ours = vec![host.clone()];
    let mut domains = c.server.domains.clone();
    if let Some((_, state)) = &ctx.org {
        ours.extend(crate::org::dir::live(&state.dir.servers).map(|(n, _)| n.clone()));
        domains.extend(crate::org::dir::live(&state.dir.domains).map(|(d, _)| d.clone()));
    }
    domains.sort();
    domains.dedup();
    for d in domains {
        if public && special_use(&d) {
            skipped.push(d);
            continue;
        }
        let mx = r.mx(&d).await;
        if let Some(p) = mx_problem(&d, &mx, &ours) {
            out.push(ctx.f.find(
                Code::DnsMx,
                format!("mail for {d} from outside does not come to this organization"),
                vec![p],
                "senders on the Internet deliver by MX: mail goes elsewhere or nowhere",
                Some(format!("publish MX records for {d} naming {host}")),
            ));
        }
    }
    if !skipped.is_empty() {
        out.push(ctx.f.find(
            Code::DnsSkipped,
            format!("not looked up in DNS: {}", skipped.join(", ")),
            vec![
                "dns.nameservers is not set: the system's resolver, which asks the public DNS"
                    .into(),
                "these are special-use names (RFC 6761) that the public DNS never answers".into(),
            ],
            "fine for a test or a private server; a server on the Internet needs names that \
             resolve",
            None,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_names() {
        for n in [
            "localhost",
            "mx.example.test",
            "a.EXAMPLE",
            "x.invalid",
            "h.localhost.",
        ] {
            assert!(special_use(n), "{n}");
        }
        for n in [
            "mail.example.com",
            "test.example.org",
            "localhost.example.net",
            "exampletest",
        ] {
            assert!(!special_use(n), "{n}");
        }
    }

    #[test]
    fn mx_records_must_name_a_server_of_the_organization() {
        let mx = |h: &[&str]| -> Result<Vec<Mx>, DnsError> {
            Ok(h.iter()
                .map(|x| Mx {
                    preference: 10,
                    exchange: x.to_string(),
                })
                .collect())
        };
        let ours = vec!["s1.org.test".to_string(), "s2.org.test".to_string()];
        assert_eq!(
            mx_problem("org.test", &mx(&["other.example", "S2.org.test"]), &ours),
            None
        );
        let cases = [
            (
                mx(&["mx.elsewhere.example"]),
                "is mx.elsewhere.example, not a server",
            ),
            (mx(&[""]), "null MX"),
            (Err(DnsError::NoRecords), "no MX record"),
            (Err(DnsError::NoSuchDomain), "failed"),
        ];
        for (r, want) in cases {
            let p = mx_problem("org.test", &r, &ours).unwrap();
            assert!(p.contains(want), "{p}");
        }
    }
}
