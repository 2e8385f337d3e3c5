//! SMTP replies: a basic code (RFC 5321 §4.2), an optional enhanced status code (RFC 3463, sent per
//! RFC 2034), and one or more lines of text.
//!
//! Transient versus permanent is a type ([`Class`]), and a reply's basic code and enhanced code must
//! agree on it: [`Reply::new`] refuses a mismatch, so a 4xx reply can never carry a 5.x.x code (the
//! maddy bug described in the project's style notes).

use std::fmt;

/// The class of an outcome: the first digit of both the basic and the enhanced code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 2xx / 2.x.x: the action succeeded.
    Success,
    /// 4xx / 4.x.x: failed now, may succeed if retried.
    Transient,
    /// 5xx / 5.x.x: failed for good; retrying the same thing will fail again.
    Permanent,
}

impl Class {
    /// The digit used in both codes.
    pub fn digit(self) -> u16 {
        match self {
            Class::Success => 2,
            Class::Transient => 4,
            Class::Permanent => 5,
        }
    }

    /// The class of a basic reply code (1xx and 3xx count as success: they are intermediate).
    pub fn of_code(code: u16) -> Class {
        match code / 100 {
            4 => Class::Transient,
            5 => Class::Permanent,
            _ => Class::Success,
        }
    }
}

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// Success, transient or permanent.
    pub class: Class,
    /// Subject: 0 other, 1 addressing, 2 mailbox, 3 mail system, 4 network/routing, 5 protocol,
    /// 6 content/media, 7 security/policy.
    pub subject: u16,
    /// Detail within the subject.
    pub detail: u16,
}

/// The enhanced status codes mailroom gives, by their RFC 3463 meaning: a typo is a compile
/// error, where a string parsed at run time became a silent 5.0.0 (issue 21).
impl Status {
    /// 2.0.0 Other or undefined status: success.
    pub const OK: Status = Status::new(Class::Success, 0, 0);
    /// 5.0.0 Other or undefined status.
    pub const UNDEFINED: Status = Status::new(Class::Permanent, 0, 0);
    /// 5.1.1 Bad destination mailbox address.
    pub const NO_SUCH_MAILBOX: Status = Status::new(Class::Permanent, 1, 1);
    /// 5.1.2 Bad destination system address (the domain does not exist).
    pub const NO_SUCH_SYSTEM: Status = Status::new(Class::Permanent, 1, 2);
    /// 5.1.10 Recipient address has null MX (RFC 7505).
    pub const NULL_MX: Status = Status::new(Class::Permanent, 1, 10);
    /// 4.2.0 Other or undefined mailbox status, transient.
    pub const MAILBOX_TEMPORARY: Status = Status::new(Class::Transient, 2, 0);
    /// 5.2.2 Mailbox full.
    pub const MAILBOX_FULL: Status = Status::new(Class::Permanent, 2, 2);
    /// 4.3.0 Other or undefined mail system status, transient.
    pub const SYSTEM_TEMPORARY: Status = Status::new(Class::Transient, 3, 0);
    /// 5.3.4 Message too big for system.
    pub const TOO_BIG_FOR_SYSTEM: Status = Status::new(Class::Permanent, 3, 4);
    /// 4.4.0 Other or undefined network or routing status, transient.
    pub const NETWORK_TEMPORARY: Status = Status::new(Class::Transient, 4, 0);
    /// 4.4.1 No answer from host.
    pub const NO_ANSWER: Status = Status::new(Class::Transient, 4, 1);
    /// 4.4.3 Directory server failure (DNS), transient.
    pub const DIRECTORY_FAILURE: Status = Status::new(Class::Transient, 4, 3);
    /// 4.4.4 Unable to route, transient.
    pub const CANNOT_ROUTE_YET: Status = Status::new(Class::Transient, 4, 4);
    /// 5.4.4 Unable to route.
    pub const CANNOT_ROUTE: Status = Status::new(Class::Permanent, 4, 4);
    /// 5.4.6 Routing loop detected.
    pub const ROUTING_LOOP: Status = Status::new(Class::Permanent, 4, 6);
    /// 5.4.7 Delivery time expired.
    pub const EXPIRED: Status = Status::new(Class::Permanent, 4, 7);
    /// 5.6.3 Conversion required but not supported.
    pub const CONVERSION_NOT_SUPPORTED: Status = Status::new(Class::Permanent, 6, 3);
    /// 5.6.7 Non-ASCII addresses not permitted for that sender/recipient (RFC 6531).
    pub const NON_ASCII_ADDRESS: Status = Status::new(Class::Permanent, 6, 7);

    /// Builds a status code.
    pub const fn new(class: Class, subject: u16, detail: u16) -> Status {
        Status {
            class,
            subject,
            detail,
        }
    }

    /// Parses `X.Y.Z` (RFC 3463 §2: class 2, 4 or 5; subject and detail up to three digits).
    pub fn parse(s: &str) -> Option<Status> {
        let mut it = s.split('.');
        let class = match it.next()? {
            "2" => Class::Success,
            "4" => Class::Transient,
            "5" => Class::Permanent,
            _ => return None,
        };
        let num = |p: Option<&str>| -> Option<u16> {
            let p = p?;
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let subject = num(it.next())?;
        let detail = num(it.next())?;
        if it.next().is_some() {
            return None;
        }
        Some(Status::new(class, subject, detail))
    }

    /// The same subject and detail in another class (e.g. a permanent failure reported as a delay).
    pub fn with_class(self, class: Class) -> Status {
        Status { class, ..self }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class.digit(), self.subject, self.detail)
    }
}

/// A complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Status>,
    lines: Vec<String>,
}

impl Reply {
    /// A reply with an enhanced status code. Panics if the two codes disagree on the class: that is
    /// a programming error, never a peer's doing.
    pub fn new(code: u16, status: Status, text: impl Into<String>) -> Reply {
        assert!(
            (200..600).contains(&code),
            "SMTP reply code {code} out of range"
        );
        if code / 100 != 3 && code / 100 != 1 {
            assert_eq!(
                Class::of_code(code),
                status.class,
                "reply {code} carries enhanced status {status}"
            );
        }
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, 354, and replies before EHLO where
    /// RFC 2034 does not apply).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        assert!(
            (200..600).contains(&code),
            "SMTP reply code {code} out of range"
        );
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    /// Shorthand: `Reply::code(550, "5.1.1", "text")`. Panics on a malformed literal status.
    pub fn code(code: u16, status: &str, text: impl Into<String>) -> Reply {
        let st = Status::parse(status).unwrap_or_else(|| panic!("bad status literal {status}"));
        Reply::new(code, st, text)
    }

    /// A multi-line reply from several lines.
    pub fn lines(code: u16, lines: Vec<String>) -> Reply {
        assert!(!lines.is_empty());
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// The basic three-digit code.
    pub fn code_num(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// The text lines, without codes.
    pub fn text_lines(&self) -> &[String] {
        &self.lines
    }

    /// The class of this reply.
    pub fn class(&self) -> Class {
        Class::of_code(self.code)
    }

    /// True for 4xx and 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form. Every line carries the enhanced code (RFC 2034 §3); CR and LF inside
    /// text are replaced so that a reply can never inject a line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_with(out, true)
    }

    /// Appends the wire form, with or without the enhanced status code: RFC 2034 sends codes only
    /// once the client has seen ENHANCEDSTATUSCODES in an EHLO reply.
    pub fn write_with(&self, out: &mut Vec<u8>, enhanced: bool) {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let (Some(st), true) = (self.status, enhanced) {
                out.extend_from_slice(format!("{st} ").as_bytes());
            }
            for &b in line.as_bytes() {
                out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a string (for logs, transcripts and tests).
    pub fn to_wire_string(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_wire_string();
        f.write_str(s.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parse_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("5.1.1", Some("5.1.1")),
            ("4.4.7", Some("4.4.7")),
            ("2.0.0", Some("2.0.0")),
            ("5.1.10", Some("5.1.10")),
            ("3.1.1", None),
            ("5.1", None),
            ("5.1.1.1", None),
            ("5..1", None),
            ("5.1000.1", None),
            ("x.1.1", None),
        ];
        for (input, want) in cases {
            let got = Status::parse(input).map(|s| s.to_string());
            assert_eq!(got.as_deref(), *want, "input {input}");
        }
    }

    #[test]
    fn wire_form_single_and_multi() {
        let r = Reply::code(550, "5.1.1", "No such user");
        assert_eq!(r.to_wire_string(), "550 5.1.1 No such user\r\n");
        let r = Reply::lines(250, vec!["host".into(), "SIZE 10".into(), "DSN".into()]);
        assert_eq!(r.to_wire_string(), "250-host\r\n250-SIZE 10\r\n250 DSN\r\n");
        let r = Reply::plain(354, "go\r\nMAIL FROM:<x>");
        assert_eq!(r.to_wire_string(), "354 go  MAIL FROM:<x>\r\n");
    }

    #[test]
    #[should_panic]
    fn mismatched_class_is_refused() {
        let _ = Reply::code(450, "5.2.2", "mailbox full");
    }
}
