//! Envelope addresses (RFC 5321 §4.1.2), with the UTF-8 forms of RFC 6531 §3.3.
//!
//! The parser is strict about what RFC 5321 forbids, with one deliberate tolerance: a local part
//! that contains `@` outside quotes (`user@other@local`) is parsed, not refused, so that the relay
//! policy can recognise it as a routing trick and answer `554 5.7.1` rather than a syntax error.
//! [`Mailbox::has_routing_syntax`] tells the policy whether a local part tries to route (`%`, `!`
//! or `@`); source routes (`@a,@b:user@c`) are parsed and kept apart in [`Path::source_route`],
//! to be ignored as RFC 5321 §3.6.1 and Appendix C recommend.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Maximum length of a local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Maximum length of a domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Maximum length of a path including the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The path is not enclosed in `<` `>` or has text after the closing bracket.
    #[error("address must be enclosed in <>")]
    Brackets,
    /// No `@` between local part and domain.
    #[error("address has no domain")]
    NoDomain,
    /// The local part is empty or contains a character not allowed there.
    #[error("invalid local part")]
    LocalPart,
    /// The domain is not a valid host name or address literal.
    #[error("invalid domain")]
    Domain,
    /// A length limit of RFC 5321 §4.5.3.1 is exceeded.
    #[error("address too long")]
    TooLong,
    /// A malformed source route.
    #[error("invalid source route")]
    SourceRoute,
}

/// A domain: a host name (lower-cased; may contain U-labels) or an address literal such as
/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain or address literal (RFC 5321 §4.1.2 `Domain / address-literal`).
    pub fn parse(s: &str) -> Result<Domain, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Domain);
        }
        if s.len() > MAX_DOMAIN {
            return Err(AddressError::TooLong);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddressError::Domain)?;
            if let Some(v6) = inner
                .strip_prefix("IPv6:")
                .or_else(|| inner.strip_prefix("ipv6:"))
            {
                v6.parse::<Ipv6Addr>().map_err(|_| AddressError::Domain)?;
                return Ok(Domain(format!("[IPv6:{}]", v6.to_ascii_lowercase())));
            }
            inner
                .parse::<Ipv4Addr>()
                .map_err(|_| AddressError::Domain)?;
            return Ok(Domain(format!("[{inner}]")));
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(AddressError::Domain);
            }
            let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii();
            if !label.chars().all(ok_char) || label.starts_with('-') || label.ends_with('-') {
                return Err(AddressError::Domain);
            }
        }
        Ok(Domain(s.to_lowercase()))
    }

    /// The domain as text (lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when this is an address literal.
    pub fn is_literal(&self) -> bool {
        self.0.starts_with('[')
    }

    /// True when any label is not ASCII (needs SMTPUTF8 to be sent, RFC 6531).
    pub fn is_utf8(&self) -> bool {
        !self.0.is_ascii()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox `local@domain`. The local part is stored unquoted, case preserved (RFC 5321 §2.4: the
/// local part may be case-sensitive; mailroom's own directory compares it case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    /// The local part, without quotes or quoting backslashes.
    pub local: String,
    /// The domain.
    pub domain: Domain,
}

impl Mailbox {
    /// Parses `local@domain` (no brackets).
    pub fn parse(s: &str) -> Result<Mailbox, AddressError> {
        let (local, rest) = split_local(s)?;
        let domain = Domain::parse(rest)?;
        Ok(Mailbox { local, domain })
    }

    /// True when the local part carries routing syntax: `%` (the "percent hack"), `!` (UUCP bang
    /// paths) or `@` (a quoted or doubled address). Such addresses are classic relay tricks and are
    /// never relayed (RFC 5321 §3.6.1 leaves them to local policy; mailroom refuses them).
    pub fn has_routing_syntax(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }

    /// True when the address needs SMTPUTF8 (RFC 6531 §3.3).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || self.domain.is_utf8()
    }

    /// The lower-cased `local@domain` used for directory lookups.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain.as_str())
    }
}

impl fmt::Display for Mailbox {
    /// Writes the address in SMTP form, quoting the local part when it is not a dot-string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            write!(f, "{}@{}", self.local, self.domain)
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        }
    }
}

/// A forward path: the mailbox, and any source route that preceded it (to be ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The destination mailbox.
    pub mailbox: Mailbox,
    /// The domains of an obsolete source route `@a,@b:` (RFC 5321 Appendix C), in order.
    pub source_route: Vec<Domain>,
}

/// A reverse path: a mailbox, or the null path `<>` used by delivery reports (RFC 5321 §4.5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: notifications never get notifications back.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// The mailbox, if not null.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// A recipient as given to RCPT: a path, or the bare `<Postmaster>` that every server must accept
/// for itself (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain.
    Postmaster,
    /// A full path.
    Path(Path),
}

/// Parses the argument of `MAIL FROM:` up to (not including) its parameters. Returns the path and
/// the rest of the line (the parameters). Accepts `<>`, `<path>`, and a bare address without
/// brackets (sent by some broken clients; unambiguous because parameters follow a space).
pub fn parse_reverse_path(arg: &str) -> Result<(ReversePath, &str), AddressError> {
    let (inner, rest) = bracketed(arg)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    let path = parse_path_inner(inner)?;
    Ok((ReversePath::Mailbox(path.mailbox), rest))
}

/// Parses the argument of `RCPT TO:` up to its parameters (RFC 5321 §4.1.1.3).
pub fn parse_forward_path(arg: &str) -> Result<(ForwardPath, &str), AddressError> {
    let (inner, rest) = bracketed(arg)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok((ForwardPath::Postmaster, rest));
    }
    if inner.is_empty() {
        return Err(AddressError::NoDomain);
    }
    Ok((ForwardPath::Path(parse_path_inner(inner)?), rest))
}

/// Splits `<...> params` into the bracketed text and the rest; a quoted `>` does not close.
fn bracketed(arg: &str) -> Result<(&str, &str), AddressError> {
    let arg = arg.trim_start_matches(' ');
    let Some(body) = arg.strip_prefix('<') else {
        // Bare address: up to the first space.
        let (address, rest) = arg.split_at(arg.find(' ').unwrap_or(arg.len()));
        if address.contains(['<', '>']) {
            return Err(AddressError::Brackets);
        }
        return Ok((address, rest));
    };
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                if i + 2 > MAX_PATH {
                    return Err(AddressError::TooLong);
                }
                let (inside, rest) = body.split_at(i);
                let rest = rest.strip_prefix('>').unwrap_or(rest);
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(AddressError::Brackets);
                }
                return Ok((inside, rest));
            }
            _ => {}
        }
    }
    Err(AddressError::Brackets)
}

fn parse_path_inner(inner: &str) -> Result<Path, AddressError> {
    let mut source_route = Vec::new();
    let mut mbox = inner;
    if inner.starts_with('@') {
        let (route, rest) = inner.split_once(':').ok_or(AddressError::SourceRoute)?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or(AddressError::SourceRoute)?;
            source_route.push(Domain::parse(d).map_err(|_| AddressError::SourceRoute)?);
        }
        mbox = rest;
    }
    Ok(Path {
        mailbox: Mailbox::parse(mbox)?,
        source_route,
    })
}

/// Splits a mailbox into its unquoted local part and the domain text after the final `@`.
fn split_local(s: &str) -> Result<(String, &str), AddressError> {
    if let Some(q) = s.strip_prefix('"') {
        // Quoted-string (RFC 5321 §4.1.2 QcontentSMTP).
        let mut local = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, n) = chars.next().ok_or(AddressError::LocalPart)?;
                    if n.is_ascii() && !(' '..='~').contains(&n) {
                        return Err(AddressError::LocalPart);
                    }
                    local.push(n);
                }
                '"' => {
                    let after = q.split_at(i).1.strip_prefix('"').unwrap_or_default();
                    let domain = after.strip_prefix('@').ok_or(AddressError::NoDomain)?;
                    check_local_len(&local)?;
                    return Ok((local, domain));
                }
                c if c.is_ascii() && !(' '..='~').contains(&c) => {
                    return Err(AddressError::LocalPart)
                }
                c => local.push(c),
            }
        }
        return Err(AddressError::LocalPart);
    }
    let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoDomain)?;
    if local.is_empty() {
        return Err(AddressError::LocalPart);
    }
    // Tolerate '@' here (see module docs); every other character must be atext or '.'.
    if !local.chars().all(|c| is_atext(c) || c == '.' || c == '@') {
        return Err(AddressError::LocalPart);
    }
    check_local_len(local)?;
    Ok((local.to_string(), domain))
}

fn check_local_len(local: &str) -> Result<(), AddressError> {
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::TooLong);
    }
    Ok(())
}

/// RFC 5322 atext, extended with non-ASCII characters (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// True when `s` is a valid RFC 5321 Dot-string (needs no quoting).
pub fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<(String, bool, Vec<String>), AddressError> {
        let (p, rest) = parse_forward_path(s)?;
        assert!(rest.is_empty(), "rest {rest:?}");
        Ok(match p {
            ForwardPath::Postmaster => ("postmaster".into(), false, vec![]),
            ForwardPath::Path(p) => (
                p.mailbox.to_string(),
                p.mailbox.has_routing_syntax(),
                p.source_route.iter().map(|d| d.to_string()).collect(),
            ),
        })
    }

    #[test]
    fn forward_path_table() {
        let ok: &[(&str, &str, bool, &[&str])] = &[
            ("<user@example.com>", "user@example.com", false, &[]),
            ("<User@EXAMPLE.com>", "User@example.com", false, &[]),
            ("user@example.com", "user@example.com", false, &[]),
            (
                "<\"john doe\"@example.com>",
                "\"john doe\"@example.com",
                false,
                &[],
            ),
            (
                "<user%other@local.test>",
                "user%other@local.test",
                true,
                &[],
            ),
            (
                "<\"user@other\"@local.test>",
                "\"user@other\"@local.test",
                true,
                &[],
            ),
            (
                "<user@other@local.test>",
                "\"user@other\"@local.test",
                true,
                &[],
            ),
            (
                "<other!user@local.test>",
                "other!user@local.test",
                true,
                &[],
            ),
            (
                "<@local.test:user@other.test>",
                "user@other.test",
                false,
                &["local.test"],
            ),
            (
                "<@a.test,@b.test:u@c.test>",
                "u@c.test",
                false,
                &["a.test", "b.test"],
            ),
            ("<u@[192.0.2.1]>", "u@[192.0.2.1]", false, &[]),
            ("<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]", false, &[]),
            ("<用户@例子.测试>", "用户@例子.测试", false, &[]),
            ("<Postmaster>", "postmaster", false, &[]),
        ];
        for (input, want, trick, route) in ok {
            let (got, t, r) = fwd(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got, want, "{input}");
            assert_eq!(t, *trick, "{input}");
            assert_eq!(r, route.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        let bad: &[(&str, AddressError)] = &[
            ("<>", AddressError::NoDomain),
            ("<user>", AddressError::NoDomain),
            ("<user@>", AddressError::Domain),
            ("<@example.com>", AddressError::SourceRoute),
            ("<user@exa mple.com>", AddressError::Domain),
            ("<user@-bad.com>", AddressError::Domain),
            ("<user@bad..com>", AddressError::Domain),
            ("<user@example.com", AddressError::Brackets),
            ("<user@example.com>x", AddressError::Brackets),
            ("<us(er@example.com>", AddressError::LocalPart),
            ("<u@[300.1.1.1]>", AddressError::Domain),
            ("<\"unterminated@example.com>", AddressError::Brackets),
        ];
        for (input, want) in bad {
            assert_eq!(fwd(input).unwrap_err(), *want, "{input}");
        }
        let long = format!("<{}@example.com>", "a".repeat(65));
        assert_eq!(fwd(&long).unwrap_err(), AddressError::TooLong);
    }

    #[test]
    fn reverse_path_and_params() {
        let (p, rest) = parse_reverse_path("<> SIZE=10").unwrap();
        assert_eq!(p, ReversePath::Null);
        assert_eq!(rest, " SIZE=10");
        let (p, rest) = parse_reverse_path("<a@b.c> BODY=8BITMIME").unwrap();
        assert_eq!(p.to_string(), "a@b.c");
        assert_eq!(rest, " BODY=8BITMIME");
        let (p, _) = parse_reverse_path(" <a@b.c>").unwrap();
        assert_eq!(p.mailbox().unwrap().key(), "a@b.c");
    }

    #[test]
    fn quoting_round_trip() {
        let m = Mailbox::parse("\"a\\\"b c\"@x.test").unwrap();
        assert_eq!(m.local, "a\"b c");
        assert_eq!(m.to_string(), "\"a\\\"b c\"@x.test");
        assert_eq!(Mailbox::parse(&m.to_string()).unwrap(), m);
    }
}
