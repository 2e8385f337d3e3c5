//! Sender authentication of mail from outside: SPF (RFC 7208), DKIM (RFC 6376), ARC (RFC 8617)
//! and DMARC (RFC 7489), by mail-auth (Stalwart's implementation), reported in an
//! `Authentication-Results` header (RFC 8601) that this server puts above the message.
//!
//! Mail from inside (`smtp.inside_networks`, `smtp.trusted_networks`), from servers of the
//! organization and from users who logged in is not checked: it did not come from the internet,
//! and the organization's first server has checked what it relays.
//!
//! A DMARC failure (neither an aligned SPF pass nor an aligned DKIM pass) of a domain whose
//! policy is `p=reject` is refused with `550 5.7.1` when `sender_auth.dmarc_policy =
//! "enforce"`; `p=quarantine` is accepted and marked (tracking says so; a Junk folder comes
//! with IMAP). A message larger than `sender_auth.max_verify_size` (by default the largest
//! message taken) is not checked for DKIM: its DMARC verdict then rests on SPF alone, since a
//! signature that was not checked proves nothing. A message whose `From:` names several
//! domains is judged once for each of them.

use std::net::IpAddr;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};
use mailroom_proto::smtp::Reply;

use crate::config::{Config, DmarcAction, SenderAuthConfig};

/// Messages up to this size are checked on the session's own task (hashing a MiB takes a few
/// milliseconds).
pub const INLINE: usize = 1 << 20;

/// The checks of larger messages running at once: one per core.
static LARGE: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
});

/// The checks, with their DNS resolver.
pub struct Verifier {
    auth: MessageAuthenticator,
    host: String,
    config: SenderAuthConfig,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("host", &self.host)
            .finish()
    }
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The `Authentication-Results` field, CRLF-terminated.
    pub header: Vec<u8>,
    /// The results in one line, for tracking (`spf=pass dkim=pass dmarc=pass`).
    pub summary: String,
    /// The refusal, when DMARC says reject and the policy is enforced.
    pub refusal: Option<Reply>,
    /// DMARC failed with `p=quarantine` (enforced).
    pub quarantine: bool,
}

impl Verifier {
    /// A verifier asking the configured name servers (`dns.nameservers`), or the system's.
    pub fn new(config: &Config) -> Result<Verifier, String> {
        let auth = if config.dns.nameservers.is_empty() {
            MessageAuthenticator::new_system_conf()
        } else {
            let (c, o) = crate::route::dns::resolver_config(&config.dns.nameservers);
            MessageAuthenticator::new(c, o)
        }
        .map_err(|e| format!("cannot start the DNS resolver for SPF, DKIM and DMARC: {e}"))?;
        Ok(Verifier {
            auth,
            host: config.server.hostname.clone(),
            config: config.sender_auth.clone(),
        })
    }

    /// [`Verifier::check`], for a message in hand. Hashing a large body takes a while, so a
    /// message over [`INLINE`] is checked on a blocking thread, at most one per core at a time
    /// (a flood of large messages whose DNS answers slowly waits for its turn rather than
    /// taking the threads that the store and the password checks need).
    pub async fn check_owned(
        self: std::sync::Arc<Self>,
        raw: Vec<u8>,
        too_large: bool,
        ip: IpAddr,
        helo: String,
        mail_from: String,
    ) -> Result<Verdict, tokio::task::JoinError> {
        if raw.len() <= INLINE {
            return Ok(self.check(&raw, too_large, ip, &helo, &mail_from).await);
        }
        let _permit = LARGE.acquire().await;
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            rt.block_on(self.check(&raw, too_large, ip, &helo, &mail_from))
        })
        .await
    }

    /// Checks a message from `ip`, which said `helo` and gave `mail_from` (empty: `<>`); `raw`
    /// is the whole message, or only its header section when it is `too_large` to check DKIM.
    pub async fn check(
        &self,
        raw: &[u8],
        too_large: bool,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Verdict {
        let host = self.host.as_str();
        let spf = if mail_from.is_empty() {
            self.auth
                .verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
                .await
        } else {
            self.auth
                .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, mail_from))
                .await
        };
        let mut summary = vec![format!("spf={}", spf_word(&spf))];
        let mut results = AuthenticationResults::new(host);
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            results = results.with_spf_mailfrom_result(&spf, ip, mail_from, helo);
            let why = "dkim=permerror (the header section does not parse);\r\n\tdmarc=none";
            summary.push(why.replace(";\r\n\t", " "));
            return Verdict {
                header: field(&results, why),
                summary: summary.join(" "),
                refusal: None,
                quarantine: false,
            };
        };
        // Too large: only the header section is at hand, so no signature is checked.
        let dkim = if too_large {
            Vec::new()
        } else {
            self.auth.verify_dkim(&msg).await
        };
        let header_from = msg.from.first().map(String::as_str).unwrap_or("");
        if !dkim.is_empty() {
            results = results.with_dkim_results(&dkim, header_from);
        }
        results = results.with_spf_mailfrom_result(&spf, ip, mail_from, helo);
        if !too_large {
            let arc = self.auth.verify_arc(&msg).await;
            results = results.with_arc_result(&arc, ip);
        }
        let dkim_word = if too_large {
            "neutral"
        } else if dkim.is_empty() {
            "none"
        } else if dkim
            .iter()
            .any(|d| matches!(d.result(), mail_auth::DkimResult::Pass))
        {
            "pass"
        } else {
            "fail"
        };
        summary.push(format!("dkim={dkim_word}"));
        let mut clauses = Vec::new();
        if too_large {
            clauses.push("dkim=neutral (message too large to check)".to_string());
        } else if dkim.is_empty() {
            clauses.push("dkim=none (no signature)".to_string());
        }
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| helo.to_string());
        let mut refusal = None;
        let mut quarantine = false;
        for one in per_author_domain(&msg) {
            let m = one.as_ref().unwrap_or(&msg);
            let dmarc = self
                .auth
                .verify_dmarc(DmarcParameters::new(m, &dkim, &mail_from_domain, &spf))
                .await;
            let j = judge(&dmarc);
            clauses.push(j.clause);
            summary.push(j.summary);
            // A DNS failure never makes a refusal for good: the check may pass next time.
            let enforce = self.config.dmarc_policy == DmarcAction::Enforce && j.enforceable;
            if enforce && dmarc.policy() == Policy::Reject && refusal.is_none() {
                refusal = Some(Reply::code(
                    550,
                    "5.7.1",
                    format!(
                        "Message refused: it fails the DMARC check of {} (p=reject): neither \
                         SPF nor DKIM confirms that it comes from that domain",
                        dmarc.domain()
                    ),
                ));
            }
            quarantine |= enforce && dmarc.policy() == Policy::Quarantine;
        }
        let m = crate::metrics::get();
        for word in summary.iter().flat_map(|s| s.split(' ')) {
            if let Some((method, result)) = word.split_once('=') {
                let known = ["spf", "dkim", "dmarc", "arc"].contains(&method);
                if known && !result.is_empty() && result.bytes().all(|b| b.is_ascii_lowercase()) {
                    m.sender_auth.with_label_values(&[method, result]).inc();
                }
            }
        }
        Verdict {
            header: field(&results, &clauses.join(";\r\n\t")),
            summary: summary.join(" "),
            refusal,
            quarantine,
        }
    }
}

/// The message once for each domain of its `From:` authors, when there are several: DMARC
/// exempts such a message (RFC 7489 §6.6.1, and so does mail-auth), which would let a spoofer
/// escape the check by adding a second author, so each domain is judged on its own and the
/// strictest verdict stands. `None` once: the message as it is.
fn per_author_domain<'x>(msg: &AuthenticatedMessage<'x>) -> Vec<Option<AuthenticatedMessage<'x>>> {
    let domain = |a: &String| a.rsplit_once('@').map(|(_, d)| d.to_lowercase());
    let mut domains: Vec<String> = msg.from.iter().filter_map(domain).collect();
    domains.sort();
    domains.dedup();
    if domains.len() < 2 {
        return vec![None];
    }
    domains
        .into_iter()
        .map(|d| {
            let mut m = msg.clone();
            m.from.retain(|a| domain(a).as_deref() == Some(d.as_str()));
            Some(m)
        })
        .collect()
}

/// One domain's DMARC verdict in words.
struct Judged {
    clause: String,
    summary: String,
    /// Failed for certain: not a DNS failure.
    enforceable: bool,
}

/// With a record found, DMARC passes on an aligned SPF or DKIM pass and fails otherwise (RFC
/// 7489 §6.6.2); without one it does not apply; a DNS failure is a temperror. A signature that
/// was not checked (the message was too large) passes nothing: anyone can write one.
fn judge(dmarc: &mail_auth::DmarcOutput) -> Judged {
    let passed =
        *dmarc.spf_result() == DmarcResult::Pass || *dmarc.dkim_result() == DmarcResult::Pass;
    let failed = dmarc.dmarc_record().is_some() && !passed;
    let temp = [dmarc.spf_result(), dmarc.dkim_result()]
        .iter()
        .any(|r| matches!(r, DmarcResult::TempError(_)));
    let domain = dmarc.domain();
    let policy = policy_word(dmarc.policy());
    if domain.is_empty() {
        return Judged {
            clause: "dmarc=none".into(),
            summary: "dmarc=none".into(),
            enforceable: false,
        };
    }
    let word = match (passed, failed, temp) {
        (true, ..) => "pass",
        (_, true, _) => "fail",
        (_, _, true) => "temperror",
        _ => "none",
    };
    Judged {
        clause: format!("dmarc={word} header.from={domain} policy.dmarc={policy}"),
        summary: if failed {
            format!("dmarc=fail (p={policy})")
        } else {
            format!("dmarc={word}")
        },
        enforceable: failed && !temp,
    }
}

/// The header field, with one more result (`method=result ...`) after mail-auth's.
fn field(results: &AuthenticationResults<'_>, more: &str) -> Vec<u8> {
    use mail_auth::common::headers::HeaderWriter;
    let mut h = results.to_header();
    if !more.is_empty() {
        let h2 = h.trim_end_matches("\r\n").to_string();
        h = format!("{h2};\r\n\t{more}\r\n");
    }
    if !h.ends_with("\r\n") {
        h.push_str("\r\n");
    }
    h.into_bytes()
}

fn spf_word(spf: &mail_auth::SpfOutput) -> &'static str {
    use mail_auth::SpfResult::*;
    match spf.result() {
        Pass => "pass",
        Fail => "fail",
        SoftFail => "softfail",
        Neutral => "neutral",
        TempError => "temperror",
        PermError => "permerror",
        None => "none",
    }
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    }
}
