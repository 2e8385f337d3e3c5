//! Header facts and trace headers (pure functions).

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::ids::QueueId;

/// What ingest needs to know about a message's existing header section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// Number of `Received` fields.
    pub received: usize,
    /// The `Message-ID` (without angle brackets), if present and not empty.
    pub message_id: Option<String>,
    /// Whether it has a `Date` field.
    pub date: bool,
    /// Whether the text scanned held the whole header section (its empty line, or the end of
    /// the message): what is not found in it is known to be missing, and may be added.
    pub complete: bool,
}

/// Scans the header section (up to the first empty line) with the one header scanner
/// ([`mailroom_proto::header`]).
pub fn scan(text: &[u8]) -> HeaderFacts {
    let h = mailroom_proto::header::header(text);
    let mut facts = HeaderFacts {
        complete: h.complete,
        ..HeaderFacts::default()
    };
    for f in &h.fields {
        if f.is(text, "received") {
            facts.received += 1;
        } else if f.is(text, "message-id") && facts.message_id.is_none() {
            facts.message_id = clean_mid(&f.unfolded(text));
        } else if f.is(text, "date") {
            facts.date = true;
        }
    }
    facts
}

/// Who a message says wrote and sent it (RFC 5322 §3.6.2, §3.6.6): what the sender checks
/// read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Authors {
    /// The number of `From` fields (RFC 5322 §3.6 allows exactly one; a second one is how a
    /// sender hides a forged address from a check that reads only one).
    pub from_fields: usize,
    /// The mailboxes of the `From` fields, lower case. Empty when they name none (an empty
    /// group, an encoded word, a bare name): RFC 5322 §3.6.2 requires one.
    pub from: Vec<String>,
    /// The mailboxes of `Sender`, `Resent-From` and `Resent-Sender`, lower case, each with its
    /// field's name.
    pub others: Vec<(&'static str, String)>,
    /// The names shown with all of them (display names, group names), decoded: a name that
    /// holds an address is what a reader may take for the author.
    pub names: Vec<String>,
}

/// A mailbox's address as an author field gives it: `local@domain`, neither part empty, no
/// space or angle bracket (an encoded word or a bare name is no mailbox).
fn mailbox(a: &str) -> Option<String> {
    let (local, domain) = a.rsplit_once('@')?;
    let plain =
        |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "<>".contains(c));
    (plain(local) && plain(domain) && !a.starts_with("=?")).then(|| a.to_lowercase())
}

/// The author fields of a header section (see [`Authors`]).
pub fn authors(head: &[u8]) -> Authors {
    let mut out = Authors::default();
    let Some(msg) = mail_parser::MessageParser::new().parse_headers(head) else {
        return out;
    };
    for h in msg.headers() {
        let field = match h.name().to_ascii_lowercase().as_str() {
            "from" => "From",
            "sender" => "Sender",
            "resent-from" => "Resent-From",
            "resent-sender" => "Resent-Sender",
            _ => continue,
        };
        if field == "From" {
            out.from_fields += 1;
        }
        let Some(a) = h.value().as_address() else {
            continue;
        };
        if let Some(groups) = a.as_group() {
            out.names.extend(
                groups
                    .iter()
                    .filter_map(|g| g.name.as_deref().map(String::from)),
            );
        }
        for addr in a.iter() {
            out.names.extend(addr.name().map(String::from));
            let Some(m) = addr.address().and_then(mailbox) else {
                continue;
            };
            if field == "From" {
                out.from.push(m);
            } else {
                out.others.push((field, m));
            }
        }
    }
    out
}

/// The addresses that `text` (a display name) holds: words of the form `local@domain`, lower
/// case, with the punctuation around them left out.
pub fn addresses_in(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "<>\"'(),;:[]".contains(c))
        .filter_map(mailbox)
        .filter(|m| m.rsplit_once('@').is_some_and(|(_, d)| d.contains('.')))
        .collect()
}

/// The addresses of the `From` field(s) of a header section, lower case.
pub fn from_addresses(head: &[u8]) -> Vec<String> {
    authors(head).from
}

/// True when `text` holds its whole header section (the empty line that ends it).
pub fn has_whole_header(text: &[u8]) -> bool {
    text.starts_with(b"\r\n") || text.windows(4).any(|w| w == b"\r\n\r\n")
}

fn clean_mid(v: &str) -> Option<String> {
    let v = v.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.split('>').next().unwrap_or(v).trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// What a `Received` header says of the session it records.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// This server.
    pub host: &'a str,
    /// The `with` protocol (RFC 3848).
    pub protocol: &'a str,
    /// The TLS version and cipher, if under TLS.
    pub tls: Option<&'a str>,
    /// The queue ID.
    pub queue_id: &'a QueueId,
    /// The single recipient, if there is one.
    pub for_rcpt: Option<&'a str>,
}

/// A `Received` header (RFC 5321 §4.4): `from HELO ([IP]) by HOST (mailroom) with PROTO
/// [(TLS facts)] id QID [for <RCPT>]; DATE`. The `for` clause is given only for a single
/// recipient, so that one recipient's copy does not reveal the others.
pub fn received(t: &Trace<'_>, now: DateTime<Utc>) -> Vec<u8> {
    let Trace {
        helo,
        ip,
        host,
        protocol,
        tls,
        queue_id,
        for_rcpt,
    } = *t;
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()\\".contains(*c))
        .take(255)
        .collect();
    let literal = match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    let mut h =
        format!("Received: from {helo} ({literal})\r\n\tby {host} (mailroom) with {protocol}");
    if let Some(tls) = tls {
        h.push_str(&format!("\r\n\t({tls})"));
    }
    h.push_str(&format!(" id {queue_id}"));
    if let Some(r) = for_rcpt {
        h.push_str(&format!("\r\n\tfor <{r}>"));
    }
    h.push_str(&format!(
        "; {}\r\n",
        now.format("%a, %d %b %Y %H:%M:%S +0000")
    ));
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_table() {
        let cases: &[(&[u8], usize, Option<&str>)] = &[
            (b"Subject: x\r\n\r\nReceived: not a header\r\n", 0, None),
            (
                b"Received: a\r\nreceived: b\r\n\tcontinued\r\nSubject: x\r\n\r\n",
                2,
                None,
            ),
            (b"Message-ID: <abc@host>\r\n\r\n", 0, Some("abc@host")),
            (
                b"Message-Id:\r\n <folded@host>\r\nX: y\r\n\r\n",
                0,
                Some("folded@host"),
            ),
            (b"Message-ID: <>\r\n\r\n", 0, None),
            (b"Message-ID: <last@host>", 0, Some("last@host")),
            (b"Subject: no blank line", 0, None),
            (b"\r\nMessage-ID: <in-body@host>\r\n", 0, None),
        ];
        for (text, received, mid) in cases {
            let f = scan(text);
            assert_eq!(f.received, *received, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(
                f.message_id.as_deref(),
                *mid,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn date_and_whole_header() {
        let f = scan(b"DATE: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody");
        assert!(f.date && f.complete);
        let f = scan(b"Subject: x\r\n\r\nDate: in the body\r\n");
        assert!(!f.date && f.complete);
        let f = scan(b"Subject: a header longer than what was read");
        assert!(!f.date && !f.complete, "no empty line: not known whole");
    }

    #[test]
    fn received_header_shape() {
        let q: QueueId = "01JD3Q5ZC8A9F2KQ".parse().unwrap();
        let now = DateTime::from_timestamp(0, 0).unwrap();
        let mut t = Trace {
            helo: "client (evil)",
            ip: "192.0.2.1".parse().unwrap(),
            host: "mx.test",
            protocol: "ESMTP",
            tls: None,
            queue_id: &q,
            for_rcpt: Some("a@b.test"),
        };
        assert_eq!(
            String::from_utf8(received(&t, now)).unwrap(),
            "Received: from clientevil ([192.0.2.1])\r\n\tby mx.test (mailroom) with ESMTP id 01JD3Q5ZC8A9F2KQ\r\n\tfor <a@b.test>; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        t.protocol = "ESMTPSA";
        t.tls = Some("TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384");
        t.for_rcpt = None;
        assert_eq!(
            String::from_utf8(received(&t, now)).unwrap(),
            "Received: from clientevil ([192.0.2.1])\r\n\tby mx.test (mailroom) with ESMTPSA\r\n\t(TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384) id 01JD3Q5ZC8A9F2KQ; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    /// Issue 21: author fields that name no mailbox, and names that carry an address.
    #[test]
    fn authors_table() {
        let a = authors(b"From: \"alice@example.test\" :;\r\n\r\n");
        assert_eq!(
            (a.from_fields, a.from.len()),
            (1, 0),
            "an empty group: {a:?}"
        );
        assert_eq!(addresses_in(&a.names.join(" ")), ["alice@example.test"]);
        let a = authors(b"From: =?utf-8?q?alice=40example=2Etest?=\r\n\r\n");
        assert_eq!(
            (a.from_fields, a.from.len()),
            (1, 0),
            "an encoded word: {a:?}"
        );
        let a = authors(b"From: \"Bob <bob@example.test>\":;\r\n\r\n");
        assert!(a.from.is_empty());
        assert_eq!(addresses_in(&a.names.join(" ")), ["bob@example.test"]);
        let a = authors(
            b"From: \"Bob (bob@example.test)\" <alice@example.test>\r\nSender: carol@example.test\r\n\
              Resent-From: Dave <dave@example.test>\r\n\r\n",
        );
        assert_eq!(a.from, ["alice@example.test"]);
        assert_eq!(
            a.others,
            [
                ("Sender", "carol@example.test".to_string()),
                ("Resent-From", "dave@example.test".to_string())
            ]
        );
        assert_eq!(addresses_in(&a.names.join(" ")), ["bob@example.test"]);
        assert_eq!(addresses_in("Alice Example"), Vec::<String>::new());
        assert_eq!(
            addresses_in("mail me at x@localhost"),
            Vec::<String>::new(),
            "no dot"
        );
        assert_eq!(authors(b"From: Alice\r\n\r\n").from.len(), 0, "a bare name");
    }

    #[test]
    fn from_addresses_table() {
        let cases: &[(&[u8], &[&str])] = &[
            (
                b"From: Alice <Alice@Example.com>\r\n\r\n",
                &["alice@example.com"],
            ),
            (
                b"From: a@x.test, \"B\" <b@y.test>\r\nTo: c@z.test\r\n\r\n",
                &["a@x.test", "b@y.test"],
            ),
            (b"Subject: none\r\n\r\nFrom: body@x.test\r\n", &[]),
            (
                b"From: =?utf-8?q?Eve?= <eve@x.test>\r\n\r\n",
                &["eve@x.test"],
            ),
        ];
        for (head, want) in cases {
            assert_eq!(
                from_addresses(head),
                *want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
