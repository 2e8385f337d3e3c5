//! SMTP command lines (RFC 5321 §4.1.1), parsed into [`Command`].
//!
//! A command line arrives without its CRLF. The verb is case-insensitive; `MAIL FROM:` and
//! `RCPT TO:` tolerate a space after the colon (widely sent, harmless). ESMTP parameters are split
//! here but given meaning by the session's extension registry.

use thiserror::Error;

use super::address::{
    parse_forward_path, parse_reverse_path, AddressError, ForwardPath, ReversePath,
};
use super::params::{split_params, ParamError};

/// Raw ESMTP parameters: upper-cased keyword and optional value.
pub type RawParams = Vec<(String, Option<String>)>;

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]` (§4.1.1.2).
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// ESMTP parameters.
        params: RawParams,
    },
    /// `RCPT TO:<path> [params]` (§4.1.1.3).
    Rcpt {
        /// The forward path.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RawParams,
    },
    /// `DATA` (§4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Exact number of octets that follow the command line.
        size: u64,
        /// Whether this is the final chunk.
        last: bool,
    },
    /// `RSET` (§4.1.1.5).
    Rset,
    /// `VRFY string` (§4.1.1.6).
    Vrfy(String),
    /// `EXPN string` (§4.1.1.7).
    Expn(String),
    /// `HELP [string]` (§4.1.1.8).
    Help(Option<String>),
    /// `NOOP [string]` (§4.1.1.9).
    Noop,
    /// `QUIT` (§4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth(String),
    /// `X-ORG-AUTH ...`: organization authentication (see [`super::org`]).
    OrgAuth(String),
    /// `X-LINKSTATE ...`: the organization's link state (see [`super::org`]).
    LinkState(String),
    /// `X-ORG-META data`: the next transaction's organization metadata (see [`super::org`]).
    OrgMeta(String),
    /// `X-ORG-TRACK ...`: tracking events asked for by another server (see [`super::org`]).
    OrgTrack(String),
    /// `X-ORG-MOVE ...`: a mailbox moving to this server (see [`super::org`]).
    OrgMove(String),
    /// A verb that is recognised but belongs to no extension mailroom implements (TURN, ETRN, …).
    Unimplemented(String),
}

impl Command {
    /// The verb, upper case (for logs and the error counter).
    pub fn verb(&self) -> &str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth(_) => "AUTH",
            Command::OrgAuth(_) => "X-ORG-AUTH",
            Command::LinkState(_) => "X-LINKSTATE",
            Command::OrgMeta(_) => "X-ORG-META",
            Command::OrgTrack(_) => "X-ORG-TRACK",
            Command::OrgMove(_) => "X-ORG-MOVE",
            Command::Unimplemented(v) => v,
        }
    }
}

/// Why a command line could not be parsed. Each variant maps to one reply in the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// An unknown verb (`500 5.5.2`).
    #[error("command unrecognized")]
    Unrecognized,
    /// A known verb with wrong arguments (`501 5.5.4`); the text is the expected syntax.
    #[error("syntax: {0}")]
    Syntax(&'static str),
    /// A malformed sender address (`501 5.1.7`).
    #[error("bad sender address: {0}")]
    Sender(AddressError),
    /// A malformed recipient address (`501 5.1.3`).
    #[error("bad recipient address: {0}")]
    Recipient(AddressError),
    /// Malformed parameters (`501 5.5.4`).
    #[error("{0}")]
    Param(ParamError),
    /// The line is not UTF-8 (`500 5.5.2`).
    #[error("command line is not valid UTF-8")]
    Encoding,
}

/// Verbs that exist in the SMTP world but that mailroom does not implement: `502 5.5.1`.
const UNIMPLEMENTED: &[&str] = &[
    "TURN",
    "ATRN",
    "ETRN",
    "SEND",
    "SOML",
    "SAML",
    "XEXCH50",
    "X-EXPS",
    "X-LINK2STATE",
    "BURL",
];

/// Parses one command line (without the trailing CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Encoding)?;
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let verb_uc = verb.to_ascii_uppercase();
    let no_arg = |c: Command, syntax: &'static str| {
        if arg.trim().is_empty() {
            Ok(c)
        } else {
            Err(CommandError::Syntax(syntax))
        }
    };
    match verb_uc.as_str() {
        "EHLO" | "HELO" => {
            let name = arg.trim();
            if name.is_empty() || name.contains(' ') && verb_uc == "EHLO" {
                return Err(CommandError::Syntax(if verb_uc == "EHLO" {
                    "EHLO hostname"
                } else {
                    "HELO hostname"
                }));
            }
            Ok(if verb_uc == "EHLO" {
                Command::Ehlo(name.to_string())
            } else {
                Command::Helo(name.to_string())
            })
        }
        "MAIL" => {
            let rest =
                strip_prefix_ci(arg, "FROM:").ok_or(CommandError::Syntax("MAIL FROM:<address>"))?;
            let (from, rest) = parse_reverse_path(rest).map_err(CommandError::Sender)?;
            let params = split_params(rest).map_err(CommandError::Param)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let rest =
                strip_prefix_ci(arg, "TO:").ok_or(CommandError::Syntax("RCPT TO:<address>"))?;
            let (to, rest) = parse_forward_path(rest).map_err(CommandError::Recipient)?;
            let params = split_params(rest).map_err(CommandError::Param)?;
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_arg(Command::Data, "DATA"),
        "BDAT" => {
            let mut words = arg.split(' ').filter(|w| !w.is_empty());
            let syntax = CommandError::Syntax("BDAT size [LAST]");
            let size = words.next().ok_or(syntax.clone())?;
            if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax);
            }
            let size: u64 = size.parse().map_err(|_| syntax.clone())?;
            let last = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(syntax),
            };
            if words.next().is_some() {
                return Err(syntax);
            }
            Ok(Command::Bdat { size, last })
        }
        "RSET" => no_arg(Command::Rset, "RSET"),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_arg(Command::Quit, "QUIT"),
        "VRFY" if !arg.trim().is_empty() => Ok(Command::Vrfy(arg.trim().to_string())),
        "VRFY" => Err(CommandError::Syntax("VRFY address")),
        "EXPN" if !arg.trim().is_empty() => Ok(Command::Expn(arg.trim().to_string())),
        "EXPN" => Err(CommandError::Syntax("EXPN list")),
        "HELP" => Ok(Command::Help(
            Some(arg.trim().to_string()).filter(|s| !s.is_empty()),
        )),
        "STARTTLS" => no_arg(Command::StartTls, "STARTTLS"),
        "AUTH" if !arg.trim().is_empty() => Ok(Command::Auth(arg.trim().to_string())),
        "AUTH" => Err(CommandError::Syntax("AUTH mechanism [initial-response]")),
        // The organization's verbs: their arguments are checked where the session knows whether
        // they apply (after org authentication), by super::org.
        "X-ORG-AUTH" => Ok(Command::OrgAuth(arg.to_string())),
        "X-LINKSTATE" => Ok(Command::LinkState(arg.to_string())),
        "X-ORG-META" => Ok(Command::OrgMeta(arg.to_string())),
        "X-ORG-TRACK" => Ok(Command::OrgTrack(arg.to_string())),
        "X-ORG-MOVE" => Ok(Command::OrgMove(arg.to_string())),
        v if UNIMPLEMENTED.contains(&v) => Ok(Command::Unimplemented(v.to_string())),
        _ => Err(CommandError::Unrecognized),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::Mailbox;

    #[test]
    fn parse_table() {
        let mb = |s: &str| Mailbox::parse(s).unwrap();
        let ok: Vec<(&str, Command)> = vec![
            ("EHLO client.test", Command::Ehlo("client.test".into())),
            ("ehlo [127.0.0.1]", Command::Ehlo("[127.0.0.1]".into())),
            ("HELO x", Command::Helo("x".into())),
            (
                "MAIL FROM:<a@b.test>",
                Command::Mail {
                    from: ReversePath::Mailbox(mb("a@b.test")),
                    params: vec![],
                },
            ),
            (
                "mail from: <> SIZE=100",
                Command::Mail {
                    from: ReversePath::Null,
                    params: vec![("SIZE".into(), Some("100".into()))],
                },
            ),
            ("DATA", Command::Data),
            (
                "BDAT 0 LAST",
                Command::Bdat {
                    size: 0,
                    last: true,
                },
            ),
            (
                "bdat 1000",
                Command::Bdat {
                    size: 1000,
                    last: false,
                },
            ),
            ("RSET", Command::Rset),
            ("NOOP anything", Command::Noop),
            ("QUIT", Command::Quit),
            ("VRFY root", Command::Vrfy("root".into())),
            ("HELP", Command::Help(None)),
            ("HELP MAIL", Command::Help(Some("MAIL".into()))),
            ("ETRN example.com", Command::Unimplemented("ETRN".into())),
            ("STARTTLS", Command::StartTls),
        ];
        for (line, want) in ok {
            assert_eq!(parse(line.as_bytes()).as_ref(), Ok(&want), "{line}");
        }
        let bad: Vec<(&[u8], CommandError)> = vec![
            (b"FOO", CommandError::Unrecognized),
            (b"", CommandError::Unrecognized),
            (b"EHLO", CommandError::Syntax("EHLO hostname")),
            (
                b"MAIL <a@b.test>",
                CommandError::Syntax("MAIL FROM:<address>"),
            ),
            (
                b"MAIL FROM:<a@b",
                CommandError::Sender(AddressError::Brackets),
            ),
            (
                b"RCPT TO:<>",
                CommandError::Recipient(AddressError::NoDomain),
            ),
            (
                b"RCPT TO:<a@b.test> =x",
                CommandError::Param(ParamError::Syntax("=x".into())),
            ),
            (b"DATA now", CommandError::Syntax("DATA")),
            (b"BDAT", CommandError::Syntax("BDAT size [LAST]")),
            (b"BDAT -1", CommandError::Syntax("BDAT size [LAST]")),
            (b"BDAT 10 FIRST", CommandError::Syntax("BDAT size [LAST]")),
            (b"BDAT 10 LAST x", CommandError::Syntax("BDAT size [LAST]")),
            (b"MAIL FROM:<\xff@b>", CommandError::Encoding),
        ];
        for (line, want) in bad {
            assert_eq!(parse(line), Err(want), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn rcpt_keeps_params_and_route() {
        let c =
            parse(b"RCPT TO:<@relay.test:u@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@x.test")
                .unwrap();
        let Command::Rcpt {
            to: ForwardPath::Path(p),
            params,
        } = c
        else {
            panic!()
        };
        assert_eq!(p.mailbox.to_string(), "u@x.test");
        assert_eq!(p.source_route.len(), 1);
        assert_eq!(params.len(), 2);
    }
}
