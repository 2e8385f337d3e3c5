//! The registry of ESMTP extensions: the one place that says what this server advertises in EHLO
//! and which MAIL/RCPT parameters and verbs it accepts.
//!
//! Each extension is a plug-in implementing [`Extension`]; the session asks the registry, never a
//! hard-coded list, so an extension that is not registered is neither advertised nor accepted
//! (its parameters get `555 5.5.4`, its verbs `502 5.5.1`). This is the seam the seed's failure
//! lives in: Exchange's verbs were registered plug-ins, and when their registrations were lost the
//! server still answered EHLO, only without them. `doctor` (to come) compares a live EHLO with
//! what a healthy server registers; later extensions (STARTTLS, AUTH, the organization's verbs)
//! register here the same way.

use crate::config::Config;

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
        r
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

    /// The EHLO lines after the greeting line, in registration order.
    pub fn ehlo_lines(&self, config: &Config) -> Vec<String> {
        self.extensions
            .iter()
            .map(|e| e.ehlo_line(config))
            .collect()
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
        assert_eq!(
            r.ehlo_lines(&cfg),
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
        let mut r = r;
        r.unregister("dsn");
        assert!(!r.mail_param("RET") && !r.rcpt_param("ORCPT") && !r.has("DSN"));
    }
}
