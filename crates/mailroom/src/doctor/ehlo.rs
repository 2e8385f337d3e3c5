//! The seed's step 1, automated: an EHLO to every listener (authenticated with the
//! organization, where its verbs need it), the advertised verbs against those a healthy server
//! offers, missing and unexpected ones named.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::local::{expected_on_receive, Context};
use super::Code;
use super::Finding;
use crate::client::Conn;
use crate::config::STANDARD_EXTENSIONS;
use crate::org::channel::{Channel, ChannelError, Timeouts};
use crate::receive::extensions::{Facts, Registry};

/// Timeouts of a probe: short, a healthy server answers at once.
pub const PROBE: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    command: Duration::from_secs(10),
};

/// What an EHLO probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The keywords advertised (after organization authentication, where it succeeded).
    pub keywords: Vec<String>,
    /// Why organization authentication did not happen or failed, if it did not succeed.
    pub auth: Option<String>,
}

/// The verbs expected but not advertised, and those advertised that mailroom does not
/// register, in that order.
pub fn compare(expected: &[&str], advertised: &[String]) -> (Vec<String>, Vec<String>) {
    let missing = expected
        .iter()
        .filter(|e| !advertised.iter().any(|a| a.eq_ignore_ascii_case(e)))
        .map(|e| e.to_string())
        .collect();
    let unexpected = advertised
        .iter()
        .filter(|a| {
            !STANDARD_EXTENSIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(a))
        })
        .cloned()
        .collect();
    (missing, unexpected)
}

/// Probes one listener: greets, and inside an organization authenticates and says EHLO again.
pub async fn probe(ctx: &Context, addr: SocketAddr) -> Result<Seen, String> {
    let me = ctx.me();
    let helo = format!("doctor.{}", ctx.config.server.hostname);
    let conn = Conn::open(&me, addr, &helo, PROBE.connect, PROBE.command)
        .await
        .map_err(|e| e.0)?;
    let before = conn.caps.keywords.clone();
    let Some((m, _)) = &ctx.org else {
        conn.quit().await;
        return Ok(Seen {
            keywords: before,
            auth: None,
        });
    };
    match Channel::over(conn, &me, m, PROBE).await {
        Ok(conn) => {
            let keywords = conn.caps.keywords.clone();
            conn.quit().await;
            Ok(Seen {
                keywords,
                auth: None,
            })
        }
        Err(e @ ChannelError::NoOrgVerbs { .. }) => Ok(Seen {
            keywords: before,
            auth: Some(e.to_string()),
        }),
        Err(e) => Ok(Seen {
            keywords: before,
            auth: Some(e.to_string()),
        }),
    }
}

/// Where to connect to reach a listener (an unspecified address: the loopback).
fn target(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        IpAddr::V6(v) if v.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), a.port())
        }
        _ => a,
    }
}

/// What kind of SMTP listener a probe goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// `smtp.listen`: other servers' mail, and the organization's verbs.
    Mx,
    /// `submission.listen`: users' mail programs, STARTTLS then AUTH.
    Submission,
    /// `submission.tls_listen`: the same under implicit TLS (RFC 8314).
    Submissions,
}

impl Listener {
    fn key(self) -> &'static str {
        match self {
            Listener::Mx => "smtp.listen",
            Listener::Submission => "submission.listen",
            Listener::Submissions => "submission.tls_listen",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Listener::Mx => "smtp-receive",
            _ => "submission",
        }
    }
}

/// What a healthy server advertises on a submission listener: the standard registrations as
/// they apply to a first EHLO there (STARTTLS before TLS where a certificate works, AUTH under
/// TLS only).
fn expected_on_submission(ctx: &Context, implicit_tls: bool) -> Vec<&'static str> {
    let facts = Facts {
        in_org: ctx.org.is_some(),
        org_authenticated: false,
        tls_available: !implicit_tls && ctx.tls_error.is_none(),
        tls: implicit_tls,
        submission: true,
    };
    let off = ctx.chosen_off();
    Registry::standard()
        .offered_keywords(facts)
        .into_iter()
        .filter(|k| !off.iter().any(|o| o == k))
        .collect()
}

/// Probes every SMTP listener of this server: `smtp.listen` (with the organization's
/// authentication, where it is in one), `submission.listen`, and `submission.tls_listen` through
/// its implicit TLS.
pub async fn check_local(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(status) = &ctx.status else {
        return out;
    };
    let c = &ctx.config;
    let listeners = c
        .smtp
        .listen
        .iter()
        .map(|a| (Listener::Mx, *a))
        .chain(
            c.submission
                .listen
                .iter()
                .map(|a| (Listener::Submission, *a)),
        )
        .chain(
            c.submission
                .tls_listen
                .iter()
                .map(|a| (Listener::Submissions, *a)),
        );
    for (kind, addr) in listeners {
        let down = status
            .services
            .iter()
            .any(|s| s.name == kind.service() && s.state != crate::services::State::Running);
        let at = target(addr);
        let (seen, expected) = match kind {
            Listener::Mx => (probe(ctx, at).await, expected_on_receive(ctx)),
            Listener::Submission | Listener::Submissions => {
                let implicit = kind == Listener::Submissions;
                (
                    probe_submission(ctx, at, implicit).await,
                    expected_on_submission(ctx, implicit),
                )
            }
        };
        match seen {
            Err(e) => out.push(ctx.f.find(
                Code::EhloUnreachable,
                format!(
                    "the SMTP listener {addr} ({}) cannot be reached",
                    kind.key()
                ),
                vec![e],
                if kind == Listener::Mx {
                    "no client and no other server can hand mail to this one there"
                } else {
                    "users' mail programs cannot send mail through this server there"
                },
                down.then(|| {
                    format!(
                        "see the {} finding: it says why the service is not running",
                        kind.service()
                    )
                }),
            )),
            Ok(seen) => out.extend(verdict(ctx, kind, addr, at, &seen, &expected)),
        }
    }
    out
}

/// Probes a submission listener: greets (through TLS, where it is implicit) and says EHLO.
async fn probe_submission(
    ctx: &Context,
    addr: SocketAddr,
    implicit_tls: bool,
) -> Result<Seen, String> {
    let me = ctx.me();
    let helo = format!("doctor.{}", ctx.config.server.hostname);
    let conn = if implicit_tls {
        Conn::open_implicit_tls(
            &me,
            addr,
            &helo,
            PROBE.connect,
            PROBE.command,
            crate::tls::client::opportunistic(),
        )
        .await
    } else {
        Conn::open(&me, addr, &helo, PROBE.connect, PROBE.command).await
    }
    .map_err(|e| e.0)?;
    let keywords = conn.caps.keywords.clone();
    conn.quit().await;
    Ok(Seen {
        keywords,
        auth: None,
    })
}

/// The findings of one listener's EHLO: verbs missing, and verbs mailroom does not register.
fn verdict(
    ctx: &Context,
    kind: Listener,
    addr: SocketAddr,
    at: SocketAddr,
    seen: &Seen,
    expected: &[&str],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let (missing, unexpected) = compare(expected, &seen.keywords);
    let mut evidence = vec![
        format!(
            "EHLO to {at} ({}) advertised: {}",
            kind.key(),
            seen.keywords.join(" ")
        ),
        format!("a healthy server advertises: {}", expected.join(" ")),
    ];
    if let Some(a) = &seen.auth {
        evidence.push(format!("organization authentication: {a}"));
    }
    if !missing.is_empty() {
        let org = missing
            .iter()
            .any(|k| crate::config::ORG_EXTENSIONS.contains(&k.as_str()));
        let mut f = ctx.f.find(
            Code::EhloMissingVerbs,
            format!("{addr} does not advertise {}", missing.join(" ")),
            evidence.clone(),
            "clients and servers see a server without them: the organization's \
             servers cannot authenticate or exchange state with it, and mail \
             between them stops (the seed's symptom)",
            Some("mailroom repair".into()),
        );
        if !org {
            f.severity = super::Severity::Warning;
        }
        out.push(f);
    }
    if !unexpected.is_empty() {
        out.push(ctx.f.find(
            Code::EhloUnexpectedVerbs,
            format!(
                "{addr} advertises what mailroom does not register: {}",
                unexpected.join(" ")
            ),
            evidence,
            "another program may answer on this address instead of mailroom",
            None,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unexpected_verbs_are_named() {
        let adv: Vec<String> = ["SIZE 1000", "PIPELINING", "XEXCH50", "x-org-auth"]
            .iter()
            .map(|s| s.split(' ').next().unwrap().to_string())
            .collect();
        let (missing, unexpected) = compare(&["SIZE", "PIPELINING", "X-ORG-AUTH", "DSN"], &adv);
        assert_eq!(missing, ["DSN"]);
        assert_eq!(unexpected, ["XEXCH50"]);
        assert_eq!(
            target("0.0.0.0:25".parse().unwrap()),
            "127.0.0.1:25".parse::<SocketAddr>().unwrap()
        );
    }
}
