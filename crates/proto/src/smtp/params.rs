//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 `Mail-parameters`, `Rcpt-parameters`).
//!
//! Parsing is split in two: [`split_params`] turns the text after the path into keyword/value pairs
//! (pure syntax), and [`MailParams::apply`] / [`RcptParams::apply`] give each known keyword its
//! meaning. Which keywords a session accepts is decided by mailroom's extension registry, so a
//! parameter whose extension is not registered is refused with `555 5.5.4` (RFC 5321 §4.1.1.11).

use std::fmt;

use thiserror::Error;

/// Maximum length of ENVID after decoding (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Maximum length of ORCPT's address after decoding (RFC 3461 §4.2).
pub const MAX_ORCPT: usize = 500;

/// What is wrong with a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParamError {
    /// Not `keyword[=value]` syntax.
    #[error("malformed parameter {0:?}")]
    Syntax(String),
    /// The keyword appeared twice.
    #[error("duplicate parameter {0}")]
    Duplicate(String),
    /// A known keyword with a value it does not accept.
    #[error("invalid value for {0}")]
    Value(String),
    /// A keyword that no registered extension defines.
    #[error("unsupported parameter {0}")]
    Unknown(String),
}

/// Splits `" KEY=value KEY2"` into `[("KEY", Some("value")), ("KEY2", None)]`, keywords upper-cased.
pub fn split_params(rest: &str) -> Result<Vec<(String, Option<String>)>, ParamError> {
    let mut out = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let key_ok = !k.is_empty()
            && k.as_bytes()[0].is_ascii_alphanumeric()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let val_ok =
            v.is_none_or(|v| !v.is_empty() && !v.contains('=') && !v.chars().any(char::is_control));
        if !key_ok || !val_ok {
            return Err(ParamError::Syntax(word.to_string()));
        }
        let k = k.to_ascii_uppercase();
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ParamError::Duplicate(k));
        }
        out.push((k, v.map(str::to_string)));
    }
    Ok(out)
}

/// BODY= (RFC 6152 8BITMIME; RFC 3030 BINARYMIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `7BIT`
    SevenBit,
    /// `8BITMIME`
    EightBitMime,
    /// `BINARYMIME` (requires BDAT)
    BinaryMime,
}

/// RET= (RFC 3461 §4.3): what a failure report carries of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    /// The whole message.
    Full,
    /// Only its headers.
    Hdrs,
}

impl fmt::Display for DsnRet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DsnRet::Full => "FULL",
            DsnRet::Hdrs => "HDRS",
        })
    }
}

/// NOTIFY= (RFC 3461 §4.1): when the sender wants a report for this recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// Report successful delivery.
    pub success: bool,
    /// Report failure.
    pub failure: bool,
    /// Report delays.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// The behaviour when NOTIFY is absent (RFC 3461 §4.1: FAILURE, and DELAY at the MTA's choice).
    pub const DEFAULT: Notify = Notify {
        success: false,
        failure: true,
        delay: true,
    };

    /// Parses the value of NOTIFY.
    pub fn parse(v: &str) -> Option<Notify> {
        if v.eq_ignore_ascii_case("NEVER") {
            return Some(Notify::NEVER);
        }
        let mut n = Notify::NEVER;
        for item in v.split(',') {
            let flag = match item.to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut n.success,
                "FAILURE" => &mut n.failure,
                "DELAY" => &mut n.delay,
                _ => return None,
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(n)
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.success {
            parts.push("SUCCESS");
        }
        if self.failure {
            parts.push("FAILURE");
        }
        if self.delay {
            parts.push("DELAY");
        }
        if parts.is_empty() {
            f.write_str("NEVER")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// ORCPT= (RFC 3461 §4.2): the original recipient as the first MTA saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrcptParam {
    /// The address type, e.g. `rfc822` or `utf-8`.
    pub addr_type: String,
    /// The decoded address.
    pub address: String,
}

impl OrcptParam {
    /// Parses `addr-type;xtext`.
    pub fn parse(v: &str) -> Option<OrcptParam> {
        let (t, x) = v.split_once(';')?;
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let address = if t.eq_ignore_ascii_case("utf-8") {
            // RFC 6533 §3: utf-8-addr-xtext; we accept xtext and raw UTF-8.
            xtext_decode(x).or_else(|| Some(x.to_string()))?
        } else {
            xtext_decode(x)?
        };
        if address.is_empty() || address.len() > MAX_ORCPT {
            return None;
        }
        Some(OrcptParam {
            addr_type: t.to_ascii_lowercase(),
            address,
        })
    }
}

impl fmt::Display for OrcptParam {
    /// The `addr-type;xtext` wire form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.addr_type, xtext_encode(&self.address))
    }
}

/// Parameters of one MAIL command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= declared message size (RFC 1870).
    pub size: Option<u64>,
    /// BODY= (RFC 6152).
    pub body: Option<Body>,
    /// SMTPUTF8 (RFC 6531 §3.4).
    pub smtputf8: bool,
    /// RET= (RFC 3461).
    pub ret: Option<DsnRet>,
    /// ENVID=, decoded (RFC 3461 §4.4).
    pub envid: Option<String>,
}

impl MailParams {
    /// Gives one known keyword its meaning. Unknown keywords are refused: the caller decides which
    /// keywords reach this function (the extension registry).
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), ParamError> {
        let bad = || ParamError::Value(key.to_string());
        match (key, value) {
            ("SIZE", Some(v)) => {
                if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                self.size = Some(v.parse().map_err(|_| bad())?);
            }
            ("BODY", Some(v)) => {
                self.body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    "BINARYMIME" => Body::BinaryMime,
                    _ => return Err(bad()),
                });
            }
            ("SMTPUTF8", None) => self.smtputf8 = true,
            ("RET", Some(v)) => {
                self.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => DsnRet::Full,
                    "HDRS" => DsnRet::Hdrs,
                    _ => return Err(bad()),
                });
            }
            ("ENVID", Some(v)) => {
                let d = xtext_decode(v).ok_or_else(bad)?;
                if d.len() > MAX_ENVID {
                    return Err(bad());
                }
                self.envid = Some(d);
            }
            ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID", _) => return Err(bad()),
            _ => return Err(ParamError::Unknown(key.to_string())),
        }
        Ok(())
    }
}

/// Parameters of one RCPT command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY= (RFC 3461 §4.1); `None` means the default.
    pub notify: Option<Notify>,
    /// ORCPT= (RFC 3461 §4.2).
    pub orcpt: Option<OrcptParam>,
}

impl RcptParams {
    /// Gives one known keyword its meaning.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), ParamError> {
        let bad = || ParamError::Value(key.to_string());
        match (key, value) {
            ("NOTIFY", Some(v)) => self.notify = Some(Notify::parse(v).ok_or_else(bad)?),
            ("ORCPT", Some(v)) => self.orcpt = Some(OrcptParam::parse(v).ok_or_else(bad)?),
            ("NOTIFY" | "ORCPT", None) => return Err(bad()),
            _ => return Err(ParamError::Unknown(key.to_string())),
        }
        Ok(())
    }
}

/// Decodes xtext (RFC 3461 §4): `+XX` is a hex-encoded octet; `+` and `=` must not appear bare.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            c if (33..=126).contains(&c) || c >= 0x80 => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes text as xtext (RFC 3461 §4).
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        assert_eq!(split_params("").unwrap(), vec![]);
        assert_eq!(
            split_params(" size=10  BODY=8BITMIME SMTPUTF8").unwrap(),
            vec![
                ("SIZE".into(), Some("10".into())),
                ("BODY".into(), Some("8BITMIME".into())),
                ("SMTPUTF8".into(), None)
            ]
        );
        assert!(matches!(
            split_params(" SIZE=1 size=2"),
            Err(ParamError::Duplicate(_))
        ));
        assert!(matches!(split_params(" =x"), Err(ParamError::Syntax(_))));
        assert!(matches!(split_params(" A=b=c"), Err(ParamError::Syntax(_))));
        assert!(matches!(split_params(" A="), Err(ParamError::Syntax(_))));
    }

    #[test]
    fn mail_param_table() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("SIZE", Some("1024"), true),
            ("SIZE", Some("-1"), false),
            ("SIZE", Some("123456789012345678901"), false),
            ("SIZE", None, false),
            ("BODY", Some("8bitmime"), true),
            ("BODY", Some("9BIT"), false),
            ("SMTPUTF8", None, true),
            ("SMTPUTF8", Some("x"), false),
            ("RET", Some("HDRS"), true),
            ("RET", Some("ALL"), false),
            ("ENVID", Some("abc+2Bdef"), true),
            ("ENVID", Some("abc+zz"), false),
        ];
        for (k, v, ok) in cases {
            let mut p = MailParams::default();
            assert_eq!(p.apply(k, *v).is_ok(), *ok, "{k} {v:?}");
        }
        let mut p = MailParams::default();
        p.apply("ENVID", Some("a+2Bb")).unwrap();
        assert_eq!(p.envid.as_deref(), Some("a+b"));
        assert!(matches!(p.apply("XFOO", None), Err(ParamError::Unknown(_))));
    }

    #[test]
    fn notify_and_orcpt() {
        assert_eq!(Notify::parse("NEVER"), Some(Notify::NEVER));
        assert_eq!(
            Notify::parse("success,FAILURE").unwrap().to_string(),
            "SUCCESS,FAILURE"
        );
        assert_eq!(Notify::parse("NEVER,SUCCESS"), None);
        assert_eq!(Notify::parse("SUCCESS,SUCCESS"), None);
        assert_eq!(Notify::parse(""), None);
        let o = OrcptParam::parse("rfc822;a+2Bb@example.com").unwrap();
        assert_eq!(o.address, "a+b@example.com");
        assert_eq!(o.to_string(), "rfc822;a+2Bb@example.com");
        assert!(OrcptParam::parse("rfc822").is_none());
        assert!(OrcptParam::parse(";x@y").is_none());
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["plain", "a+b=c", "sp ace", "ü"] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
    }
}
