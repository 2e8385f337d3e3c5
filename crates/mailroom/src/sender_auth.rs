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
//! with IMAP). A message larger than `sender_auth.max_verify_size` is not checked for DKIM, and
//! DMARC is then not enforced on it, since a signature that was not checked cannot fail.

use std::net::IpAddr;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};
use mailroom_proto::smtp::Reply;

use crate::config::{Config, DmarcAction, SenderAuthConfig};

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
        let parsed = if too_large {
            None
        } else {
            AuthenticatedMessage::parse(raw)
        };
        let Some(msg) = parsed else {
            results = results.with_spf_mailfrom_result(&spf, ip, mail_from, helo);
            let why = if too_large {
                "dkim=neutral (message too large to check);\r\n\tdmarc=none"
            } else {
                "dkim=permerror (the header section does not parse);\r\n\tdmarc=none"
            };
            summary.push(why.replace(";\r\n\t", " "));
            return Verdict {
                header: field(&results, why),
                summary: summary.join(" "),
                refusal: None,
                quarantine: false,
            };
        };
        let dkim = self.auth.verify_dkim(&msg).await;
        let arc = self.auth.verify_arc(&msg).await;
        let from_domain = msg
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| helo.to_string());
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&msg, &dkim, &mail_from_domain, &spf))
            .await;
        let header_from = msg.from.first().map(String::as_str).unwrap_or("");
        if !dkim.is_empty() {
            results = results.with_dkim_results(&dkim, header_from);
        }
        results = results
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            .with_arc_result(&arc, ip);
        let dkim_word = if dkim.is_empty() {
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
        // With a record found, DMARC passes on an aligned SPF or DKIM pass and fails otherwise
        // (RFC 7489 §6.6.2); without one it does not apply; a DNS failure is a temperror.
        let passed =
            *dmarc.spf_result() == DmarcResult::Pass || *dmarc.dkim_result() == DmarcResult::Pass;
        let failed = dmarc.dmarc_record().is_some() && !passed;
        let temp = [dmarc.spf_result(), dmarc.dkim_result()]
            .iter()
            .any(|r| matches!(r, DmarcResult::TempError(_)));
        let word = match (passed, failed, temp) {
            (true, ..) => "pass",
            (_, true, _) => "fail",
            (_, _, true) => "temperror",
            _ => "none",
        };
        let policy = policy_word(dmarc.policy());
        let mut dmarc_clause = if dmarc.domain().is_empty() {
            "dmarc=none".to_string()
        } else {
            format!(
                "dmarc={word} header.from={} policy.dmarc={policy}",
                dmarc.domain()
            )
        };
        if dkim.is_empty() {
            dmarc_clause = format!("dkim=none (no signature);\r\n\t{dmarc_clause}");
        }
        summary.push(if failed {
            format!("dmarc=fail (p={policy})")
        } else {
            format!("dmarc={word}")
        });
        // A DNS failure never makes a refusal for good: the check may pass next time.
        let enforce = self.config.dmarc_policy == DmarcAction::Enforce && failed && !temp;
        let refusal = (enforce && dmarc.policy() == Policy::Reject).then(|| {
            Reply::code(
                550,
                "5.7.1",
                format!(
                    "Message refused: it fails the DMARC check of {} (p=reject): neither SPF \
                     nor DKIM confirms that it comes from that domain",
                    if from_domain.is_empty() {
                        dmarc.domain()
                    } else {
                        &from_domain
                    }
                ),
            )
        });
        Verdict {
            header: field(&results, &dmarc_clause),
            summary: summary.join(" "),
            refusal,
            quarantine: enforce && dmarc.policy() == Policy::Quarantine,
        }
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
