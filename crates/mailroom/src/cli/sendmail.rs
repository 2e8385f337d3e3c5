//! `mailroom sendmail`: the interface every Unix program mails through (cron, smartd, mdadm,
//! `mail`, git's send-email, mutt), with Postfix's options. The binary behaves the same when it
//! is called as `sendmail`, `mailq` (= `-bp`) or `newaliases` (= `-bi`) through a link.
//!
//! The message is written into the maildrop ([`crate::receive::maildrop`]) and the server's
//! pickup takes it from there, so it works for every local user and whether or not the server
//! runs. Exit codes are those of `sysexits.h`, which programs act on: 64 usage, 65 bad input,
//! 67 an address that is none, 69 mail is not set up here, 75 try again later (the disk),
//! 77 not allowed.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use crate::receive::maildrop::{self, Drop};

/// sysexits.h.
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The command line is wrong.
    pub const USAGE: i32 = 64;
    /// The input is wrong.
    pub const DATAERR: i32 = 65;
    /// An address that is not one.
    pub const NOUSER: i32 = 67;
    /// Mail is not set up here.
    pub const UNAVAILABLE: i32 = 69;
    /// Try again later.
    pub const TEMPFAIL: i32 = 75;
    /// Not allowed.
    pub const NOPERM: i32 = 77;
}

/// Largest input read from a program (the server refuses what is over `smtp.max_message_size`
/// when it picks it up; this only keeps a runaway program from filling memory).
const MAX_INPUT: u64 = 1 << 30;

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Send the message on standard input (`-bm`, the default).
    #[default]
    Deliver,
    /// SMTP on standard input and output (`-bs`).
    Smtp,
    /// List the queue (`-bp`, `mailq`).
    Queue,
    /// Rebuild the aliases (`-bi`, `-I`, `newaliases`): nothing to do here.
    Aliases,
    /// Run the queue (`-q`): the server does, all the time.
    Flush,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// The mode.
    pub mode: Mode,
    /// `-f`/`-r`: the envelope sender.
    pub sender: Option<String>,
    /// `-F`: the sender's full name.
    pub full_name: Option<String>,
    /// `-t`: recipients from the message's To, Cc and Bcc (Bcc removed).
    pub extract: bool,
    /// A line of one `.` ends the input (cleared by `-i` and `-oi`).
    pub dot_ends: bool,
    /// `-v`: say what was done.
    pub verbose: bool,
    /// `-N`: DSN NOTIFY.
    pub notify: Option<String>,
    /// `-R`: DSN RET.
    pub ret: Option<String>,
    /// `-V`: DSN ENVID.
    pub envid: Option<String>,
    /// The recipients on the command line.
    pub recipients: Vec<String>,
}

/// Options that take a value, as Postfix's sendmail reads them (`getopt` string
/// `B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx`); `-q` takes one only when it is attached.
const WITH_VALUE: &[char] = &[
    'B', 'C', 'F', 'L', 'N', 'O', 'R', 'V', 'X', 'b', 'e', 'f', 'h', 'o', 'p', 'r',
];
const FLAGS: &[char] = &['G', 'I', 'U', 'c', 'i', 'm', 'n', 't', 'v', 'x', 'q'];

/// Reads the command line (without the program name), as `getopt` does: options first (flags
/// may be grouped, a value attached or the next word), then recipients; `--` ends options.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut inv = Invocation {
        dot_ends: true,
        ..Invocation::default()
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(opts) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            i -= 1;
            break;
        };
        for (at, c) in opts.char_indices() {
            let rest = opts.get(at + c.len_utf8()..).unwrap_or_default();
            if c == 'q' {
                inv.mode = Mode::Flush;
                break;
            }
            if WITH_VALUE.contains(&c) {
                let value = if rest.is_empty() {
                    let v = args
                        .get(i)
                        .ok_or_else(|| format!("option -{c} needs a value"))?;
                    i += 1;
                    v.clone()
                } else {
                    rest.to_string()
                };
                option(&mut inv, c, value)?;
                break;
            }
            if !FLAGS.contains(&c) {
                return Err(format!("unknown option -{c}"));
            }
            match c {
                'I' => inv.mode = Mode::Aliases,
                'i' => inv.dot_ends = false,
                't' => inv.extract = true,
                'v' => inv.verbose = true,
                // -G, -U, -c, -m, -n, -x: accepted and ignored, as Postfix does.
                _ => {}
            }
        }
    }
    inv.recipients = args.get(i..).unwrap_or_default().to_vec();
    Ok(inv)
}

/// An option with its value.
fn option(inv: &mut Invocation, c: char, value: String) -> Result<(), String> {
    match c {
        'b' => {
            inv.mode = match value.as_str() {
                "m" => Mode::Deliver,
                "s" => Mode::Smtp,
                "p" => Mode::Queue,
                "i" => Mode::Aliases,
                "d" => return Err("-bd: the daemon is `mailroom serve`".into()),
                other => {
                    return Err(format!(
                        "-b{other} is not supported (only -bm, -bs, -bp, -bi)"
                    ))
                }
            }
        }
        'f' | 'r' => inv.sender = Some(value),
        'F' => inv.full_name = Some(value),
        'N' => inv.notify = Some(value),
        'R' => inv.ret = Some(value),
        'V' => inv.envid = Some(value),
        // -oi (and -o i): dots do not end the input; every other -o is ignored, as Postfix
        // ignores -oem, -om, -oA…
        'o' if value == "i" => inv.dot_ends = false,
        // -B, -C, -L, -O, -X, -e, -h, -p and other -o: accepted and ignored.
        _ => {}
    }
    Ok(())
}

/// The input as a message: line ends made CRLF, up to a line of one `.` when `dot_ends`.
pub fn normalize(input: &[u8], dot_ends: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    for line in input.split_inclusive(|&b| b == b'\n') {
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if dot_ends && bare == b"." {
            break;
        }
        out.extend_from_slice(bare);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `-t`: the addresses of the To, Cc and Bcc fields (the Resent- ones when the message has any,
/// as RFC 5322 §3.6.6 resends go to them), and the message with its Bcc fields removed.
pub fn extract(text: &[u8]) -> (Vec<String>, Vec<u8>) {
    let h = mailroom_proto::header::header(text);
    let resent = h
        .fields
        .iter()
        .any(|f| f.is(text, "resent-to") || f.is(text, "resent-cc") || f.is(text, "resent-bcc"));
    let names: &[&str] = if resent {
        &["resent-to", "resent-cc", "resent-bcc"]
    } else {
        &["to", "cc", "bcc"]
    };
    let mut found = Vec::new();
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    for f in &h.fields {
        let Some(name) = names.iter().find(|n| f.is(text, n)) else {
            continue;
        };
        // One field on its own, parsed as a whole header section.
        let mut one = text.get(f.start..f.end).unwrap_or_default().to_vec();
        one.extend_from_slice(b"\r\n");
        if let Some(m) = mail_parser::MessageParser::default().parse_headers(&one[..]) {
            for hd in m.headers() {
                if let mail_parser::HeaderValue::Address(a) = &hd.value {
                    // (A bare local name, `To: root`, parses as a name without an address:
                    // for sendmail it is the address, completed with the origin later.)
                    found.extend(a.iter().filter_map(|x| match (x.address(), x.name()) {
                        (Some(a), _) => Some(a.to_string()),
                        (None, Some(n)) if !n.is_empty() && !n.contains(char::is_whitespace) => {
                            Some(n.to_string())
                        }
                        _ => None,
                    }));
                }
            }
        }
        if name.ends_with("bcc") {
            out.extend_from_slice(text.get(copied..f.start).unwrap_or_default());
            copied = f.end;
        }
    }
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
    (found, out)
}

/// Runs `sendmail` with `args` (without the program name) against the data directory `data`;
/// the exit status.
pub async fn run(data: &Path, args: &[String]) -> i32 {
    let inv = match parse(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sendmail: {e}");
            eprintln!("usage: sendmail [-t] [-i] [-f sender] [-F name] [-bs|-bp] [recipient ...]");
            return exit::USAGE;
        }
    };
    match inv.mode {
        Mode::Aliases => {
            eprintln!(
                "sendmail: mailroom keeps aliases in its directory (`mailroom alias`); there is \
                 nothing to rebuild"
            );
            exit::OK
        }
        Mode::Flush => {
            eprintln!(
                "sendmail: the server runs its queue by itself; `mailroom queue retry` attempts \
                 waiting mail now"
            );
            exit::OK
        }
        Mode::Queue => {
            if let Err(e) = super::become_owner(data) {
                eprintln!("mailq: {e:#}");
                return exit::NOPERM;
            }
            let show = super::QueueCommand::Show {
                select: super::QueueSelect {
                    target: None,
                    sender: None,
                    recipient: None,
                    domain: None,
                    older_than: None,
                },
                quarantined: false,
                json: false,
            };
            match super::queue::queue(data, show).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("mailq: {e:#}");
                    exit::UNAVAILABLE
                }
            }
        }
        Mode::Smtp => smtp(data, &inv),
        Mode::Deliver => {
            let mut input = Vec::new();
            if let Err(e) = std::io::stdin()
                .lock()
                .take(MAX_INPUT)
                .read_to_end(&mut input)
            {
                eprintln!("sendmail: cannot read the message: {e}");
                return exit::DATAERR;
            }
            deliver(data, &inv, &input)
        }
    }
}

/// Sends one message (the input as read) as `inv` asks.
fn deliver(data: &Path, inv: &Invocation, input: &[u8]) -> i32 {
    let mut text = normalize(input, inv.dot_ends);
    let mut recipients = inv.recipients.clone();
    if inv.extract {
        let (found, without_bcc) = extract(&text);
        recipients.extend(found);
        text = without_bcc;
    }
    if recipients.is_empty() {
        eprintln!(
            "sendmail: no recipients (give them as arguments, or -t to take them from the \
             message's To, Cc and Bcc)"
        );
        return exit::USAGE;
    }
    let drop = Drop {
        maildrop: 1,
        sender: inv.sender.clone(),
        full_name: inv.full_name.clone(),
        recipients,
        notify: inv.notify.clone(),
        ret: inv.ret.clone(),
        envid: inv.envid.clone(),
    };
    match submit(data, &drop, &text) {
        Ok(name) => {
            if inv.verbose {
                eprintln!("sendmail: queued in the maildrop as {name}");
            }
            exit::OK
        }
        Err((code, e)) => {
            eprintln!("sendmail: {e}");
            code
        }
    }
}

/// Checks a drop's addresses and writes it; the file's name, or an exit status and why.
fn submit(data: &Path, drop: &Drop, text: &[u8]) -> Result<String, (i32, String)> {
    use mailroom_proto::smtp::address::Mailbox;
    // (Bare names are completed by the server with its origin; any domain checks the syntax.)
    let check = |a: &str| Mailbox::parse(&crate::receive::pickup::qualify(a, "origin.invalid"));
    for r in &drop.recipients {
        if check(r).is_err() {
            return Err((exit::NOUSER, format!("{r:?} is not an address")));
        }
    }
    if let Some(n) = &drop.notify {
        if mailroom_proto::smtp::params::Notify::parse(&n.to_ascii_uppercase()).is_none() {
            return Err((
                exit::USAGE,
                format!("-N {n:?}: never, or success, delay and failure"),
            ));
        }
    }
    if let Some(r) = &drop.ret {
        if !r.eq_ignore_ascii_case("full") && !r.eq_ignore_ascii_case("hdrs") {
            return Err((exit::USAGE, format!("-R {r:?}: full or hdrs")));
        }
    }
    if let Some(v) = &drop.envid {
        // RFC 3461 §4.4: at most 100 characters, printable ASCII.
        if v.len() > 100 || !v.bytes().all(|b| (33..=126).contains(&b)) {
            return Err((
                exit::USAGE,
                format!("-V {v:?}: up to 100 printable ASCII characters"),
            ));
        }
    }
    if let Some(s) = drop.sender.as_deref().map(str::trim) {
        let s = s.trim_start_matches('<').trim_end_matches('>');
        if !s.is_empty() && check(s).is_err() {
            return Err((exit::USAGE, format!("-f {s:?} is not an address")));
        }
    }
    let dir = data.join(maildrop::DIR);
    match maildrop::write(&dir, &drop.encode(text)) {
        Ok(path) => Ok(path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => (
                exit::UNAVAILABLE,
                format!(
                    "there is no maildrop at {} (is mailroom set up? `mailroom serve` makes it; \
                     MAILROOM_DATA names another data directory)",
                    dir.display()
                ),
            ),
            std::io::ErrorKind::PermissionDenied => (
                exit::NOPERM,
                format!("may not write into {}: {e}", dir.display()),
            ),
            _ => (
                exit::TEMPFAIL,
                format!("cannot write into {}: {e}", dir.display()),
            ),
        }),
    }
}

/// `-bs`: SMTP on standard input and output, each message into the maildrop. For local
/// programs only (they are who can run this), so bare names are taken as addresses, as
/// Postfix's local submission takes them.
fn smtp(data: &Path, inv: &Invocation) -> i32 {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: &str| {
        let _ = write!(out, "{line}\r\n").and_then(|()| out.flush());
    };
    say(&mut out, "220 localhost ESMTP mailroom (sendmail -bs)");
    let mut sender: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.by_ref().take(4096).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return exit::OK,
            Ok(_) => {}
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default();
        match verb {
            "EHLO" => say(
                &mut out,
                "250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING",
            ),
            "HELO" => say(&mut out, "250 localhost"),
            "NOOP" => say(&mut out, "250 2.0.0 OK"),
            "RSET" => {
                sender = None;
                rcpts.clear();
                say(&mut out, "250 2.0.0 OK");
            }
            "QUIT" => {
                say(&mut out, "221 2.0.0 Bye");
                return exit::OK;
            }
            "MAIL" if upper.starts_with("MAIL FROM:") => match path(&cmd) {
                Some(p) => {
                    sender = Some(p);
                    rcpts.clear();
                    say(&mut out, "250 2.1.0 OK");
                }
                None => say(&mut out, "501 5.1.7 Syntax: MAIL FROM:<address>"),
            },
            "RCPT" if upper.starts_with("RCPT TO:") => match (&sender, path(&cmd)) {
                (None, _) => say(&mut out, "503 5.5.1 Need MAIL before RCPT"),
                (_, Some(p)) if !p.is_empty() => {
                    rcpts.push(p);
                    say(&mut out, "250 2.1.5 OK");
                }
                _ => say(&mut out, "501 5.1.3 Syntax: RCPT TO:<address>"),
            },
            "DATA" if rcpts.is_empty() => say(&mut out, "503 5.5.1 Need RCPT before DATA"),
            "DATA" => {
                say(&mut out, "354 End data with <CR><LF>.<CR><LF>");
                let mut text = Vec::new();
                let mut ended = false;
                let mut l = Vec::new();
                loop {
                    l.clear();
                    match input.by_ref().take(MAX_INPUT).read_until(b'\n', &mut l) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let bare = l
                        .strip_suffix(b"\n")
                        .map(|x| x.strip_suffix(b"\r").unwrap_or(x))
                        .unwrap_or(&l);
                    if bare == b"." {
                        ended = true;
                        break;
                    }
                    // RFC 5321 §4.5.2: a leading dot was doubled.
                    text.extend_from_slice(bare.strip_prefix(b".").unwrap_or(bare));
                    text.extend_from_slice(b"\r\n");
                }
                if !ended {
                    return exit::DATAERR;
                }
                let drop = Drop {
                    maildrop: 1,
                    sender: sender.take(),
                    full_name: inv.full_name.clone(),
                    recipients: std::mem::take(&mut rcpts),
                    ..Drop::default()
                };
                match submit(data, &drop, &text) {
                    Ok(name) => say(
                        &mut out,
                        &format!("250 2.0.0 OK: in the maildrop as {name}"),
                    ),
                    Err((exit::NOUSER | exit::USAGE, e)) => {
                        say(&mut out, &format!("550 5.1.3 {e}"))
                    }
                    Err((_, e)) => say(&mut out, &format!("451 4.3.0 {e}")),
                }
            }
            _ => say(&mut out, "502 5.5.2 Command not implemented"),
        }
    }
}

/// The address in `MAIL FROM:<…>` or `RCPT TO:<…>` (parameters after it ignored).
fn path(cmd: &str) -> Option<String> {
    let (_, arg) = cmd.split_once(':')?;
    let arg = arg.trim_start();
    let p = match arg.strip_prefix('<') {
        Some(rest) => rest.split_once('>')?.0,
        None => arg.split(' ').next()?,
    };
    Some(p.trim().to_string())
}

/// What `sendmail`, `mailq` or `newaliases` (the program's name, through a link) runs: the
/// arguments as `mailroom sendmail` takes them.
pub fn link_args(program: &str, args: &[String]) -> Option<Vec<String>> {
    let mut out = match program {
        "sendmail" => Vec::new(),
        "mailq" => vec!["-bp".to_string()],
        "newaliases" => vec!["-bi".to_string()],
        _ => return None,
    };
    out.extend_from_slice(args);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn command_lines_read_as_postfix_reads_them() {
        let base = Invocation {
            dot_ends: true,
            ..Invocation::default()
        };
        let cases: Vec<(&str, Invocation)> = vec![
            ("root", Invocation { recipients: args("root"), ..base.clone() }),
            ("-t -i", Invocation { extract: true, dot_ends: false, ..base.clone() }),
            ("-oi -t", Invocation { extract: true, dot_ends: false, ..base.clone() }),
            ("-ti", Invocation { extract: true, dot_ends: false, ..base.clone() }),
            ("-o i a@b", Invocation { dot_ends: false, recipients: args("a@b"), ..base.clone() }),
            ("-oem -oi -- -weird@x", Invocation { dot_ends: false, recipients: args("-weird@x"), ..base.clone() }),
            ("-f bounce@x.test -F Cron a", Invocation { sender: Some("bounce@x.test".into()), full_name: Some("Cron".into()), recipients: args("a"), ..base.clone() }),
            ("-fbounce@x.test a", Invocation { sender: Some("bounce@x.test".into()), recipients: args("a"), ..base.clone() }),
            ("-r <> a", Invocation { sender: Some("<>".into()), recipients: args("a"), ..base.clone() }),
            ("-tif s@x", Invocation { extract: true, dot_ends: false, sender: Some("s@x".into()), ..base.clone() }),
            ("-bs", Invocation { mode: Mode::Smtp, ..base.clone() }),
            ("-bp", Invocation { mode: Mode::Queue, ..base.clone() }),
            ("-bi", Invocation { mode: Mode::Aliases, ..base.clone() }),
            ("-I", Invocation { mode: Mode::Aliases, ..base.clone() }),
            ("-q", Invocation { mode: Mode::Flush, ..base.clone() }),
            ("-q30m", Invocation { mode: Mode::Flush, ..base.clone() }),
            ("-N success,failure -R hdrs -V id1 a", Invocation { notify: Some("success,failure".into()), ret: Some("hdrs".into()), envid: Some("id1".into()), recipients: args("a"), ..base.clone() }),
            ("-v -G -U -n -m -x -c -B 8BITMIME -C /etc/x -L l -h 5 -X log -O o=1 -e m -p esmtp a", Invocation { verbose: true, recipients: args("a"), ..base.clone() }),
            ("a -t", Invocation { recipients: args("a -t"), ..base.clone() }),
        ];
        for (line, want) in cases {
            assert_eq!(parse(&args(line)), Ok(want), "{line}");
        }
        for bad in ["-k", "-f", "-bd", "-bv", "-Z a"] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_lines_end_in_crlf_and_a_lone_dot_ends_them_unless_told_otherwise() {
        let cases: &[(&[u8], bool, &[u8])] = &[
            (b"a\nb\n", true, b"a\r\nb\r\n"),
            (b"a\r\nb", true, b"a\r\nb\r\n"),
            (b"a\n.\nb\n", true, b"a\r\n"),
            (b"a\n.\nb\n", false, b"a\r\n.\r\nb\r\n"),
            (b"a\n..\n", true, b"a\r\n..\r\n"),
            (b"", true, b""),
        ];
        for (input, dots, want) in cases {
            assert_eq!(normalize(input, *dots), *want, "{input:?}");
        }
    }

    #[test]
    fn dash_t_takes_to_cc_and_bcc_and_removes_bcc() {
        let text = b"From: me\r\nTo: root, Ann <ann@x.test>,\r\n  bob@y.test\r\nCc: \"Grp\": c@x.test, d@x.test;\r\nBcc: hidden@x.test\r\nSubject: hi\r\nbcc: also@x.test\r\n\r\nTo: not@header.test\r\n";
        let (found, out) = extract(text);
        assert_eq!(
            found,
            [
                "root",
                "ann@x.test",
                "bob@y.test",
                "c@x.test",
                "d@x.test",
                "hidden@x.test",
                "also@x.test"
            ]
        );
        assert_eq!(
            out,
            b"From: me\r\nTo: root, Ann <ann@x.test>,\r\n  bob@y.test\r\nCc: \"Grp\": c@x.test, d@x.test;\r\nSubject: hi\r\n\r\nTo: not@header.test\r\n"
        );
        let resent = b"To: old@x.test\r\nResent-To: new@x.test\r\nResent-Bcc: rb@x.test\r\n\r\n";
        let (found, out) = extract(resent);
        assert_eq!(found, ["new@x.test", "rb@x.test"]);
        assert_eq!(out, b"To: old@x.test\r\nResent-To: new@x.test\r\n\r\n");
    }

    #[test]
    fn smtp_paths_are_read_with_or_without_brackets() {
        assert_eq!(path("MAIL FROM:<a@b> SIZE=5").as_deref(), Some("a@b"));
        assert_eq!(path("MAIL FROM:<>").as_deref(), Some(""));
        assert_eq!(path("RCPT TO: root").as_deref(), Some("root"));
        assert_eq!(path("RCPT TO:<root"), None);
    }

    #[test]
    fn links_run_as_their_names_say() {
        assert_eq!(link_args("mailq", &[]), Some(args("-bp")));
        assert_eq!(link_args("newaliases", &[]), Some(args("-bi")));
        assert_eq!(link_args("sendmail", &args("-t")), Some(args("-t")));
        assert_eq!(link_args("mailroom", &[]), None);
    }
}
