//! The registry of ESMTP extensions: the one place that says what this server advertises in EHLO
//! and which MAIL/RCPT parameters and verbs it accepts.
//!
//! Each extension is a plug-in implementing [`Extension`]; the session asks the registry, never a
//! hard-coded list, so an extension that is not registered is neither advertised nor accepted
//! (its parameters get `555 5.5.4`, its verbs `502 5.5.1`). This is the seam the seed's failure
//! lives in: Exchange's verbs were registered plug-ins, and when their registrations were lost the
//! server still answered EHLO, only without them. `doctor` (to come) compares a live EHLO with
//! what a healthy server registers; later extensions (STARTTLS, AUTH) register here the same
//! way, as the organization's verbs (`X-ORG-AUTH`, `X-LINKSTATE`, `X-ORG-META`) do: each says
//! in [`Extension::offered`] where it applies (inside an organization; after org
//! authentication), and a registered verb that does not apply yet is refused with `530 5.7.0`,
//! not `502`.

use crate::config::Config;

/// What decides whether an extension applies to a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// This server is a member of an organization.
    pub in_org: bool,
    /// The client proved that it is a server of the organization (`X-ORG-AUTH`).
    pub org_authenticated: bool,
    /// This listener may start TLS (a usable certificate, and STARTTLS wanted here).
    pub tls_available: bool,
    /// The session is under TLS.
    pub tls: bool,
    /// The session is on a submission listener (RFC 6409).
    pub submission: bool,
}

/// One ESMTP extension.
pub trait Extension: Send + Sync {
    /// The EHLO keyword (RFC 5321 §4.1.1.1), upper case.
    fn keyword(&self) -> &'static str;
    /// The full EHLO line, keyword and parameters.
    fn ehlo_line(&self, _config: &Config) -> String {
        self.keyword().to_string()
    }
    /// MAIL parameters this extension defines.
    fn mail_params(&self) -> &'static [&'static str] {
        &[]
    }
    /// RCPT parameters this extension defines.
    fn rcpt_params(&self) -> &'static [&'static str] {
        &[]
    }
    /// Verbs this extension adds.
    fn verbs(&self) -> &'static [&'static str] {
        &[]
    }
    /// The RFC that defines it, for documentation and `doctor`.
    fn rfc(&self) -> &'static str;
    /// True when it is advertised and accepted in a session with these facts.
    fn offered(&self, _facts: Facts) -> bool {
        true
    }
}

macro_rules! extension {
    ($name:ident, $kw:literal, $rfc:literal, mail = [$($m:literal),*], rcpt = [$($r:literal),*], verbs = [$($v:literal),*]) => {
        #[doc = concat!("The ", $kw, " extension (", $rfc, ").")]
        #[derive(Debug, Default)]
        pub struct $name;
        impl Extension for $name {
            fn keyword(&self) -> &'static str { $kw }
            fn mail_params(&self) -> &'static [&'static str] { &[$($m),*] }
            fn rcpt_params(&self) -> &'static [&'static str] { &[$($r),*] }
            fn verbs(&self) -> &'static [&'static str] { &[$($v),*] }
            fn rfc(&self) -> &'static str { $rfc }
        }
    };
}

extension!(
    Pipelining,
    "PIPELINING",
    "RFC 2920",
    mail = [],
    rcpt = [],
    verbs = []
);
extension!(
    EightBitMime,
    "8BITMIME",
    "RFC 6152",
    mail = ["BODY"],
    rcpt = [],
    verbs = []
);
extension!(
    SmtpUtf8,
    "SMTPUTF8",
    "RFC 6531",
    mail = ["SMTPUTF8"],
    rcpt = [],
    verbs = []
);
extension!(
    EnhancedStatusCodes,
    "ENHANCEDSTATUSCODES",
    "RFC 2034",
    mail = [],
    rcpt = [],
    verbs = []
);
extension!(
    Dsn,
    "DSN",
    "RFC 3461",
    mail = ["RET", "ENVID"],
    rcpt = ["NOTIFY", "ORCPT"],
    verbs = []
);
extension!(
    Chunking,
    "CHUNKING",
    "RFC 3030",
    mail = [],
    rcpt = [],
    verbs = ["BDAT"]
);

/// STARTTLS (RFC 3207): offered while the session is in clear and a certificate is usable.
#[derive(Debug, Default)]
pub struct StartTls;

impl Extension for StartTls {
    fn keyword(&self) -> &'static str {
        "STARTTLS"
    }
    fn verbs(&self) -> &'static [&'static str] {
        &["STARTTLS"]
    }
    fn rfc(&self) -> &'static str {
        "RFC 3207"
    }
    fn offered(&self, facts: Facts) -> bool {
        facts.tls_available && !facts.tls
    }
}

/// AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN: offered on submission listeners, under TLS
/// only, so that no password crosses the network in clear.
#[derive(Debug, Default)]
pub struct Auth;

impl Extension for Auth {
    fn keyword(&self) -> &'static str {
        "AUTH"
    }
    fn ehlo_line(&self, _config: &Config) -> String {
        "AUTH SCRAM-SHA-256 PLAIN LOGIN".into()
    }
    fn verbs(&self) -> &'static [&'static str] {
        &["AUTH"]
    }
    fn rfc(&self) -> &'static str {
        "RFC 4954"
    }
    fn offered(&self, facts: Facts) -> bool {
        facts.submission && facts.tls
    }
}

/// SIZE (RFC 1870): advertises the configured limit.
#[derive(Debug, Default)]
pub struct Size;

impl Extension for Size {
    fn keyword(&self) -> &'static str {
        "SIZE"
    }
    fn ehlo_line(&self, config: &Config) -> String {
        format!("SIZE {}", config.smtp.max_message_size)
    }
    fn mail_params(&self) -> &'static [&'static str] {
        &["SIZE"]
    }
    fn rfc(&self) -> &'static str {
        "RFC 1870"
    }
}

/// An organization verb: `X-ORG-AUTH` inside an organization, the others after org
/// authentication (see [`crate::org`]).
#[derive(Debug)]
pub struct OrgVerb {
    keyword: &'static str,
    needs_auth: bool,
}

impl OrgVerb {
    /// `X-ORG-AUTH`: servers of the organization prove membership to each other.
    pub const AUTH: OrgVerb = OrgVerb {
        keyword: "X-ORG-AUTH",
        needs_auth: false,
    };
    /// `X-LINKSTATE`: the directory and link-state table, in chunks.
    pub const LINKSTATE: OrgVerb = OrgVerb {
        keyword: "X-LINKSTATE",
        needs_auth: true,
    };
    /// `X-ORG-META`: a message's organization metadata, and shadow discharges.
    pub const META: OrgVerb = OrgVerb {
        keyword: "X-ORG-META",
        needs_auth: true,
    };
    /// `X-ORG-TRACK`: tracking events for another server's `track --org`.
    pub const TRACK: OrgVerb = OrgVerb {
        keyword: "X-ORG-TRACK",
        needs_auth: true,
    };
    /// `X-ORG-MOVE`: a mailbox moving here (`mailroom user move`).
    pub const MOVE: OrgVerb = OrgVerb {
        keyword: "X-ORG-MOVE",
        needs_auth: true,
    };
}

impl Extension for OrgVerb {
    fn keyword(&self) -> &'static str {
        self.keyword
    }
    fn verbs(&self) -> &'static [&'static str] {
        match self.keyword {
            "X-ORG-AUTH" => &["X-ORG-AUTH"],
            "X-LINKSTATE" => &["X-LINKSTATE"],
            "X-ORG-TRACK" => &["X-ORG-TRACK"],
            "X-ORG-MOVE" => &["X-ORG-MOVE"],
            _ => &["X-ORG-META"],
        }
    }
    fn rfc(&self) -> &'static str {
        "mailroom organization (docs/organization.md)"
    }
    fn offered(&self, facts: Facts) -> bool {
        facts.in_org && (!self.needs_auth || facts.org_authenticated)
    }
}

/// The set of registered extensions.
pub struct Registry {
    extensions: Vec<Box<dyn Extension>>,
}

impl Registry {
    /// An empty registry (a server with no extensions speaks plain RFC 5321).
    pub fn empty() -> Registry {
        Registry {
            extensions: Vec::new(),
        }
    }

    /// The registry of a standard mailroom server.
    pub fn standard() -> Registry {
        let mut r = Registry::empty();
        r.register(Box::new(Size));
        r.register(Box::new(Pipelining));
        r.register(Box::new(EightBitMime));
        r.register(Box::new(SmtpUtf8));
        r.register(Box::new(EnhancedStatusCodes));
        r.register(Box::new(Dsn));
        r.register(Box::new(Chunking));
        r.register(Box::new(StartTls));
        r.register(Box::new(Auth));
        r.register(Box::new(OrgVerb::AUTH));
        r.register(Box::new(OrgVerb::LINKSTATE));
        r.register(Box::new(OrgVerb::META));
        r.register(Box::new(OrgVerb::TRACK));
        r.register(Box::new(OrgVerb::MOVE));
        r
    }

    /// The extensions registered in the config store (`smtp.extensions`, less
    /// `smtp.disabled_extensions`): a keyword missing there is neither advertised nor accepted.
    pub fn configured(config: &Config) -> Registry {
        let registered = config.registered_extensions();
        let mut r = Registry::standard();
        r.extensions
            .retain(|e| registered.iter().any(|k| k == e.keyword()));
        r
    }

    /// The registered keywords, in EHLO order.
    pub fn keywords(&self) -> Vec<&'static str> {
        self.extensions.iter().map(|e| e.keyword()).collect()
    }

    /// The keywords EHLO advertises in a session with these facts, in EHLO order.
    pub fn offered_keywords(&self, facts: Facts) -> Vec<&'static str> {
        self.extensions
            .iter()
            .filter(|e| e.offered(facts))
            .map(|e| e.keyword())
            .collect()
    }

    /// Registers an extension; a second registration of the same keyword replaces the first.
    pub fn register(&mut self, ext: Box<dyn Extension>) {
        self.extensions.retain(|e| e.keyword() != ext.keyword());
        self.extensions.push(ext);
    }

    /// Removes an extension (used by tests and by `doctor`'s own checks).
    pub fn unregister(&mut self, keyword: &str) {
        self.extensions
            .retain(|e| !e.keyword().eq_ignore_ascii_case(keyword));
    }

    /// True when the keyword is registered.
    pub fn has(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.keyword().eq_ignore_ascii_case(keyword))
    }

    /// The EHLO lines after the greeting line, in registration order, of the extensions that
    /// apply.
    pub fn ehlo_lines(&self, config: &Config, facts: Facts) -> Vec<String> {
        self.extensions
            .iter()
            .filter(|e| e.offered(facts))
            .map(|e| e.ehlo_line(config))
            .collect()
    }

    /// Whether a verb may be used now: `None` when no registered extension adds it,
    /// `Some(false)` when one does but it does not apply yet.
    pub fn verb_offered(&self, verb: &str, facts: Facts) -> Option<bool> {
        self.extensions
            .iter()
            .find(|e| e.verbs().contains(&verb))
            .map(|e| e.offered(facts))
    }

    /// True when some registered extension defines this MAIL parameter.
    pub fn mail_param(&self, key: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.mail_params().contains(&key))
    }

    /// True when some registered extension defines this RCPT parameter.
    pub fn rcpt_param(&self, key: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.rcpt_params().contains(&key))
    }

    /// True when some registered extension adds this verb.
    pub fn verb(&self, verb: &str) -> bool {
        self.extensions.iter().any(|e| e.verbs().contains(&verb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_registry() {
        let cfg = Config::new("example.com", "mx.example.com");
        let r = Registry::standard();
        let org = Facts {
            in_org: true,
            ..Facts::default()
        };
        assert_eq!(
            r.ehlo_lines(&cfg, org)[7..],
            ["X-ORG-AUTH"],
            "inside an organization, before authentication"
        );
        let authed = Facts {
            org_authenticated: true,
            ..org
        };
        assert_eq!(
            r.ehlo_lines(&cfg, authed)[7..],
            [
                "X-ORG-AUTH",
                "X-LINKSTATE",
                "X-ORG-META",
                "X-ORG-TRACK",
                "X-ORG-MOVE"
            ]
        );
        assert_eq!(r.verb_offered("X-LINKSTATE", org), Some(false));
        assert_eq!(r.verb_offered("X-LINKSTATE", authed), Some(true));
        assert_eq!(r.verb_offered("TURN", authed), None);
        assert_eq!(
            r.ehlo_lines(&cfg, Facts::default()),
            vec![
                "SIZE 26214400",
                "PIPELINING",
                "8BITMIME",
                "SMTPUTF8",
                "ENHANCEDSTATUSCODES",
                "DSN",
                "CHUNKING"
            ]
        );
        assert!(r.mail_param("RET") && r.rcpt_param("NOTIFY") && r.verb("BDAT"));
        // STARTTLS while in clear where a certificate is usable; AUTH on submission, under TLS.
        let clear = Facts {
            tls_available: true,
            submission: true,
            ..Facts::default()
        };
        let under_tls = Facts { tls: true, ..clear };
        assert_eq!(r.ehlo_lines(&cfg, clear)[7..], ["STARTTLS"]);
        assert_eq!(
            r.ehlo_lines(&cfg, under_tls)[7..],
            ["AUTH SCRAM-SHA-256 PLAIN LOGIN"]
        );
        assert_eq!(r.verb_offered("AUTH", clear), Some(false));
        let mx = Facts {
            submission: false,
            ..under_tls
        };
        assert_eq!(
            r.verb_offered("AUTH", mx),
            Some(false),
            "not on the MX listener"
        );
        assert_eq!(
            r.keywords(),
            crate::config::STANDARD_EXTENSIONS,
            "the config store's standard registrations are the standard registry"
        );
        let mut cfg = cfg;
        cfg.smtp.extensions = Some(vec!["size".into(), "X-ORG-AUTH".into(), "DSN".into()]);
        cfg.smtp.disabled_extensions = vec!["dsn".into()];
        assert_eq!(
            Registry::configured(&cfg).keywords(),
            ["SIZE", "X-ORG-AUTH"]
        );
        cfg.smtp.extensions = None;
        assert_eq!(Registry::configured(&cfg).keywords().len(), 13);
        let mut r = r;
        r.unregister("dsn");
        assert!(!r.mail_param("RET") && !r.rcpt_param("ORCPT") && !r.has("DSN"));
    }
}
