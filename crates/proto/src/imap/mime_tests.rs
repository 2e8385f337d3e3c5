//! Tests of [`super`]: the answers for each kind of message, byte for byte.

use super::*;

/// The messages are written with LF; stored messages have CRLF.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn section(m: &Message<'_>, part: &[u32], text: Option<SectionText>) -> Option<String> {
    let s = Section {
        part: part.to_vec(),
        text,
    };
    m.section(&s)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("test answers are UTF-8")
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// RFC 3501 §7.4.2's example message.
const PLAIN: &str = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

Hello Joe, do you think we can meet at 3:30 tomorrow?
";

const ALTERNATIVE: &str = "From: a@example.com
To: b@example.com
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"XX\"

preamble
--XX
Content-Type: text/plain; charset=utf-8

plain body
--XX
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>html =3D body</p>
--XX--
epilogue
";

const MIXED: &str = "From: \"Joe Q. Public\" <john.q.public@example.com>
To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>
Cc: <boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>
Subject: mixed
Date: Thu, 13 Feb 1969 23:32:54 -0330
Message-ID: <m1@example.com>
In-Reply-To: <p0@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"outer\"

--outer
Content-Type: text/plain

See attached.
--outer
Content-Type: application/octet-stream; name=\"data.bin\"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename=\"data.bin\"
Content-ID: <c1@example.com>
Content-Description: some data
Content-Language: en

AAECAwQF/w==
--outer
Content-Type: message/rfc822

From: inner@example.com
Subject: inner message
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

inner plain
--inner
Content-Type: text/html

<b>inner</b>
--inner--

--outer--
";

/// RFC 5322 appendix A.1.3's groups.
const GROUPS: &str = "From: Pete <pete@silly.example>
To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;
Cc: Undisclosed recipients:;
Bcc: (Empty) :;
Reply-To: <>
Date: Thu, 13 Feb 1969 23:32:54 -0330
Subject: groups

Testing.
";

const ENCODED: &str = "From: =?utf-8?q?J=C3=B6rg?= <j@x.test>
Sender: jorg@x.test (J\\(o\\)rg)
To: <@r1.test,@r2.test:joe@x.test>, \"quoted local\"@x.test
Reply-To: (Pete) <pete@x.test>, <r@x.test> (Reply Name), <s@x.test (Inside)>
Subject: =?UTF-8?B?SMOpbGxv?=
 =?ISO-8859-1?Q?w=F6rld?=
Date: 1 Jan 99 00:00 GMT
X-Custom: Some   Value
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

caf=E9 cr=
=E8me
";

const HEADER_ONLY: &str = "Subject: only a header\nFrom: x@y.z";

const NO_HEADER: &str = "Just some text\nwith two lines\n";

fn all_messages() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        PLAIN,
        ALTERNATIVE,
        MIXED,
        GROUPS,
        ENCODED,
        HEADER_ONLY,
        NO_HEADER,
    ]
    .iter()
    .map(|m| crlf(m))
    .collect();
    v.extend([
        b"".to_vec(),
        b"\r\n".to_vec(),
        b"\r\nbody only".to_vec(),
        b"\x00\xff\xfe--\r\n\x80:\r\n\r\n(((\"".to_vec(),
        PLAIN.as_bytes().to_vec(),
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n--b".to_vec(),
    ]);
    v
}

#[test]
fn plain_message() {
    let raw = crlf(PLAIN);
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.envelope()),
        "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
         ((NIL NIL \"imap\" \"cac.washington.edu\")) \
         ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) \
         NIL NIL \"<B27397-0100000@cac.washington.edu>\")"
    );
    assert_eq!(
        text(m.body_structure(false)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1)"
    );
    assert_eq!(
        text(m.body_structure(true)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL)"
    );
    let body = "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    assert_eq!(section(&m, &[1], None).as_deref(), Some(body));
    assert_eq!(
        section(&m, &[], Some(SectionText::Text)).as_deref(),
        Some(body)
    );
    assert_eq!(section(&m, &[2], None), None);
    assert_eq!(section(&m, &[1, 1], None), None);
    assert_eq!(section(&m, &[0], None), None);
    assert_eq!(section(&m, &[1], Some(SectionText::Header)), None);
    assert_eq!(section(&m, &[], Some(SectionText::Mime)), None);
    let fields = SectionText::HeaderFields(names(&["subject", "FROM", "x-none"]));
    assert_eq!(
        section(&m, &[], Some(fields)).as_deref(),
        Some(
            "From: Terry Gray <gray@cac.washington.edu>\r\n\
             Subject: IMAP4rev1 WG mtg summary and minutes\r\n\r\n"
        )
    );
    let not = SectionText::HeaderFieldsNot(names(&["date", "from", "subject", "to", "cc"]));
    assert_eq!(
        section(&m, &[], Some(not)).as_deref(),
        Some(
            "Message-Id: <B27397-0100000@cac.washington.edu>\r\nMIME-Version: 1.0\r\n\
             Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
        )
    );
    assert_eq!(m.binary(&[1]), Ok(body.as_bytes().to_vec()));
    assert_eq!(m.binary_size(&[1]), Ok(55));
    assert_eq!(m.binary(&[2]), Err(BinaryError::NoSuchPart));
    assert_eq!(m.sent_date(), Some((1996, 7, 17)));
    assert!(m.header_contains("subject", "wg MTG"));
    assert!(m.header_contains("CC", "klensin@mit"));
    assert!(m.header_contains("cc", "John Klensin"));
    assert!(m.header_contains("Mime-Version", ""));
    assert!(!m.header_contains("bcc", ""));
    assert!(!m.header_contains("subject", "tomorrow"));
    assert!(m.body_contains("MEET AT 3:30"));
    assert!(!m.body_contains("Terry"));
    assert!(m.text_contains("Terry"));
    assert!(m.text_contains("tomorrow"));
    assert!(m.text_contains("message-id: <b27397"));
    assert!(!m.text_contains("yesterday"));
}

#[test]
fn multipart_alternative() {
    let raw = crlf(ALTERNATIVE);
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.body_structure(false)),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 10 0)\
         (\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 20 0) \
         \"ALTERNATIVE\")"
    );
    assert_eq!(
        text(m.body_structure(true)),
        "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)\
         (\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 20 0 NIL NIL NIL \
         NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)"
    );
    assert_eq!(
        text(m.envelope()),
        "(NIL \"alt\" ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) \
         ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"b\" \"example.com\")) NIL NIL NIL NIL)"
    );
    assert_eq!(section(&m, &[1], None).as_deref(), Some("plain body"));
    assert_eq!(
        section(&m, &[2], None).as_deref(),
        Some("<p>html =3D body</p>")
    );
    assert_eq!(
        section(&m, &[2], Some(SectionText::Mime)).as_deref(),
        Some("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
    );
    assert_eq!(
        section(&m, &[1], Some(SectionText::Mime)).as_deref(),
        Some("Content-Type: text/plain; charset=utf-8\r\n\r\n")
    );
    assert_eq!(section(&m, &[3], None), None);
    assert_eq!(m.binary(&[2]), Ok(b"<p>html = body</p>".to_vec()));
    assert_eq!(m.binary_size(&[2]), Ok(18));
    assert!(m.body_contains("html = body"));
    assert!(!m.body_contains("=3D"));
    assert!(m.body_contains("PLAIN BODY"));
    assert!(!m.body_contains("preamble"));
    assert!(!m.body_contains("epilogue"));
    assert_eq!(m.sent_date(), None);
}

#[test]
fn multipart_mixed_with_attachments() {
    let raw = crlf(MIXED);
    let m = Message::parse(&raw);
    let inner_env = "(NIL \"inner message\" ((NIL NIL \"inner\" \"example.com\")) \
                     ((NIL NIL \"inner\" \"example.com\")) ((NIL NIL \"inner\" \"example.com\")) \
                     NIL NIL NIL NIL NIL)";
    assert_eq!(
        text(m.body_structure(false)),
        format!(
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 0)\
             (\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"data.bin\") \"<c1@example.com>\" \
             \"some data\" \"BASE64\" 12)\
             (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 215 {inner_env} \
             ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 0)\
             (\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 0) \"ALTERNATIVE\") 13) \
             \"MIXED\")"
        )
    );
    assert_eq!(
        text(m.body_structure(true)),
        format!(
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 0 NIL NIL NIL NIL)\
             (\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"data.bin\") \"<c1@example.com>\" \
             \"some data\" \"BASE64\" 12 NIL (\"ATTACHMENT\" (\"FILENAME\" \"data.bin\")) \"en\" NIL)\
             (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 215 {inner_env} \
             ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL)\
             (\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 0 NIL NIL NIL NIL) \
             \"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL) 13 NIL NIL NIL NIL) \
             \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        text(m.envelope()),
        "(\"Thu, 13 Feb 1969 23:32:54 -0330\" \"mixed\" \
         ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) \
         ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) \
         ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) \
         ((\"Mary Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")\
         (\"Who?\" NIL \"one\" \"y.test\")) \
         ((NIL NIL \"boss\" \"nil.test\")(\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" \"example.net\")) \
         NIL \"<p0@example.com>\" \"<m1@example.com>\")"
    );
    let inner_header = "From: inner@example.com\r\nSubject: inner message\r\n\
                        Content-Type: multipart/alternative; boundary=inner\r\n\r\n";
    let inner_text = "--inner\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n--inner\r\n\
                      Content-Type: text/html\r\n\r\n<b>inner</b>\r\n--inner--\r\n";
    let inner = format!("{inner_header}{inner_text}");
    let cases: Vec<(&[u32], Option<SectionText>, Option<&str>)> = vec![
        (&[1], None, Some("See attached.")),
        (&[2], None, Some("AAECAwQF/w==")),
        (&[3], None, Some(&inner)),
        (&[3], Some(SectionText::Header), Some(inner_header)),
        (&[3], Some(SectionText::Text), Some(inner_text)),
        (
            &[3],
            Some(SectionText::Mime),
            Some("Content-Type: message/rfc822\r\n\r\n"),
        ),
        (
            &[3],
            Some(SectionText::HeaderFields(names(&["subject"]))),
            Some("Subject: inner message\r\n\r\n"),
        ),
        (&[3, 1], None, Some("inner plain")),
        (&[3, 2], None, Some("<b>inner</b>")),
        (
            &[3, 1],
            Some(SectionText::Mime),
            Some("Content-Type: text/plain\r\n\r\n"),
        ),
        (&[3, 3], None, None),
        (&[3, 1, 1], None, None),
        (&[4], None, None),
        (&[1, 1], None, None),
        (&[2], Some(SectionText::Header), None),
        (&[2], Some(SectionText::Text), None),
    ];
    for (part, spec, want) in cases {
        let got = section(&m, part, spec.clone());
        assert_eq!(got.as_deref(), want, "{part:?} {spec:?}");
    }
    assert_eq!(m.binary(&[2]), Ok(vec![0, 1, 2, 3, 4, 5, 255]));
    assert_eq!(m.binary_size(&[2]), Ok(7));
    assert_eq!(m.binary(&[3, 2]), Ok(b"<b>inner</b>".to_vec()));
    assert_eq!(m.binary(&[3]), Ok(inner.clone().into_bytes()));
    assert_eq!(m.binary(&[5]), Err(BinaryError::NoSuchPart));
    assert_eq!(m.sent_date(), Some((1969, 2, 13)));
    assert!(m.body_contains("inner plain"));
    assert!(m.body_contains("see attached"));
    assert!(!m.body_contains("AAECAwQF"));
    assert!(!m.body_contains("inner message"));
    assert!(m.header_contains("to", "mary smith"));
    assert!(m.header_contains("cc", "giant;"));
    assert!(!m.header_contains("subject", "inner"));
}

#[test]
fn groups_and_odd_addresses() {
    let raw = crlf(GROUPS);
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.envelope()),
        "(\"Thu, 13 Feb 1969 23:32:54 -0330\" \"groups\" \
         ((\"Pete\" NIL \"pete\" \"silly.example\")) ((\"Pete\" NIL \"pete\" \"silly.example\")) \
         ((NIL NIL \"\" \"\")) \
         ((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")(NIL NIL \"joe\" \"where.test\")\
         (\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NIL)) \
         ((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL)) \
         ((NIL NIL \"\" NIL)(NIL NIL NIL NIL)) NIL NIL)"
    );
    assert!(m.header_contains("to", "ed jones"));
    assert!(m.header_contains("to", "a group"));
}

#[test]
fn encoded_words_and_search_decoding() {
    let raw = crlf(ENCODED);
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.envelope()),
        "(\"1 Jan 99 00:00 GMT\" \"=?UTF-8?B?SMOpbGxv?= =?ISO-8859-1?Q?w=F6rld?=\" \
         ((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.test\")) ((\"J(o)rg\" NIL \"jorg\" \"x.test\")) \
         ((\"Pete\" NIL \"pete\" \"x.test\")(\"Reply Name\" NIL \"r\" \"x.test\")\
         (\"Inside\" NIL \"s\" \"x.test\")) \
         ((NIL \"@r1.test,@r2.test\" \"joe\" \"x.test\")(NIL NIL \"\\\"quoted local\\\"\" \"x.test\")) \
         NIL NIL NIL NIL)"
    );
    assert_eq!(m.sent_date(), Some((1999, 1, 1)));
    assert!(m.header_contains("subject", "HÉLLO"));
    assert!(m.header_contains("subject", "héllowörld"));
    assert!(!m.header_contains("subject", "SMOpbGxv"));
    assert!(m.header_contains("from", "jörg"));
    assert!(m.header_contains("from", "j@x.test"));
    assert!(m.header_contains("x-custom", "some   value"));
    assert!(m.text_contains("wörld"));
    assert!(m.body_contains("café crème"));
    assert!(!m.body_contains("caf=E9"));
    assert_eq!(m.binary(&[1]), Ok(b"caf\xe9 cr\xe8me\r\n".to_vec()));
    assert_eq!(
        text(m.body_structure(false)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 19 2)"
    );
}

#[test]
fn no_header_garbage_and_header_only() {
    let raw = crlf(NO_HEADER);
    let m = Message::parse(&raw);
    let nil_envelope = "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
    assert_eq!(text(m.envelope()), nil_envelope);
    assert_eq!(
        text(m.body_structure(false)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 32 2)"
    );
    assert_eq!(
        section(&m, &[], Some(SectionText::Header)).as_deref(),
        Some("")
    );
    assert_eq!(
        section(&m, &[], Some(SectionText::HeaderFields(names(&["from"])))).as_deref(),
        Some("\r\n")
    );
    assert_eq!(
        section(&m, &[1], None).as_deref(),
        Some("Just some text\r\nwith two lines\r\n")
    );
    assert!(m.body_contains("two lines"));

    let garbage = b"\x00\xff\xfe--\r\n\x80:\r\n\r\n(((\"";
    let m = Message::parse(garbage);
    assert_eq!(text(m.envelope()), nil_envelope);
    assert_eq!(
        text(m.body_structure(true)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 17 3 NIL NIL NIL NIL)"
    );
    assert_eq!(m.binary(&[1]), Ok(garbage.to_vec()));
    assert!(m.body_contains("((("));

    let raw = crlf(HEADER_ONLY);
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.envelope()),
        "(NIL \"only a header\" ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) \
         ((NIL NIL \"x\" \"y.z\")) NIL NIL NIL NIL NIL)"
    );
    assert_eq!(
        text(m.body_structure(false)),
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)"
    );
    assert_eq!(
        section(&m, &[], Some(SectionText::Text)).as_deref(),
        Some("")
    );
    assert_eq!(
        section(&m, &[], Some(SectionText::HeaderFields(names(&["from"])))).as_deref(),
        Some("From: x@y.z\r\n\r\n")
    );
    assert!(!m.body_contains("header"));
    assert!(m.text_contains("header"));

    // A blank first line: an empty header, then the body.
    let m = Message::parse(b"\r\nbody only");
    assert_eq!(
        section(&m, &[], Some(SectionText::Header)).as_deref(),
        Some("\r\n")
    );
    assert_eq!(section(&m, &[1], None).as_deref(), Some("body only"));
}

#[test]
fn folded_fields_keep_their_octets() {
    let raw = crlf(
        "Subject: a long\n  subject\nX-A: 1\nx-a: 2\nFrom: a@b.c\n (Comment)\nContinuing junk\n\nb\n",
    );
    let m = Message::parse(&raw);
    assert!(text(m.envelope())
        .starts_with("(NIL \"a long  subject\" ((\"Comment\" NIL \"a\" \"b.c\"))"));
    let fields = SectionText::HeaderFields(names(&["x-a", "Subject"]));
    assert_eq!(
        section(&m, &[], Some(fields)).as_deref(),
        Some("Subject: a long\r\n  subject\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    );
    let not = SectionText::HeaderFieldsNot(names(&["x-a", "subject"]));
    assert_eq!(
        section(&m, &[], Some(not)).as_deref(),
        Some("From: a@b.c\r\n (Comment)\r\nContinuing junk\r\n\r\n")
    );
    assert!(m.header_contains("subject", "long subject"));
    assert!(m.header_contains("x-a", "2"));
    assert!(!m.header_contains("continuing junk", ""));
}

#[test]
fn structure_details() {
    // RFC 2231 continuations, a disposition without parameters, languages, location, MD5.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=\"b\" (comment)\n\n--b\n\
         Content-Type: application/pdf; name*0*=utf-8''%E2%82%AC; name*1*=%20rates.pdf;\n \
         X=\"a\\\"b\"\n\
         Content-Disposition: inline\nContent-Language: en, fr\nContent-Location: http://x.test/a\n\
         Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n\
         --b\nContent-Type: (c) text/plain; (c) charset=\"utf-8\"; format=flowed\n\nno newline\n--b--",
    );
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.body_structure(true)),
        "((\"APPLICATION\" \"PDF\" (\"NAME*\" \"utf-8''%E2%82%AC%20rates.pdf\" \"X\" \"a\\\"b\") NIL NIL \
         \"X-UUENCODE\" 5 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"INLINE\" NIL) (\"en\" \"fr\") \
         \"http://x.test/a\")\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\" \"FORMAT\" \"flowed\") NIL NIL \"7BIT\" 10 0 \
         NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"
    );
    assert_eq!(
        m.binary(&[1]),
        Err(BinaryError::UnknownEncoding("x-uuencode".into()))
    );
    assert_eq!(
        m.binary_size(&[1]),
        Err(BinaryError::UnknownEncoding("x-uuencode".into()))
    );
    assert_eq!(m.binary(&[2]), Ok(b"no newline".to_vec()));

    // A multipart without a boundary, or whose boundary never appears, has no parts.
    let empty = "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0";
    for (raw, params) in [
        (&b"Content-Type: multipart/mixed\r\n\r\nbody\r\n"[..], "NIL"),
        (
            b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n",
            "(\"BOUNDARY\" \"zz\")",
        ),
    ] {
        let m = Message::parse(raw);
        assert_eq!(
            text(m.body_structure(false)),
            format!("({empty}) \"MIXED\")")
        );
        assert_eq!(
            text(m.body_structure(true)),
            format!("({empty} NIL NIL NIL NIL) \"MIXED\" {params} NIL NIL NIL)")
        );
        assert_eq!(section(&m, &[1], None), None);
        assert!(m.body_contains("body"));
    }

    // multipart/digest: parts without Content-Type are message/rfc822 (RFC 2046 §5.1.5); a
    // last part without a close delimiter runs to the end; an 8-bit subject is a literal.
    let raw = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: caf\u{e9}\n\nhi\n\
         --d\nContent-Type: text/plain\n\nlast\n",
    );
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.body_structure(false)),
        "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 20 \
         (NIL {5}\r\ncaf\u{e9} NIL NIL NIL NIL NIL NIL NIL NIL) \
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 0) 2)\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1) \"DIGEST\")"
    );
    assert_eq!(section(&m, &[1, 1], None).as_deref(), Some("hi"));
    assert_eq!(section(&m, &[2], None).as_deref(), Some("last\r\n"));
    assert_eq!(
        section(&m, &[1], Some(SectionText::Header)).as_deref(),
        Some("Subject: caf\u{e9}\r\n\r\n")
    );

    // An encoded message/rfc822 cannot be parsed: it is a leaf.
    let raw = crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQpoaQ==\n");
    let m = Message::parse(&raw);
    assert_eq!(
        text(m.body_structure(false)),
        "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\" 26)"
    );
    assert_eq!(m.binary(&[1]), Ok(b"Subject: x\r\n\r\nhi".to_vec()));
    assert_eq!(section(&m, &[1], Some(SectionText::Header)), None);
}

#[test]
fn top_level_message_rfc822() {
    let raw = crlf("Subject: outer\nContent-Type: message/rfc822\n\nSubject: inner\n\nhello\n");
    let m = Message::parse(&raw);
    assert_eq!(
        section(&m, &[1], None).as_deref(),
        Some("Subject: inner\r\n\r\nhello\r\n")
    );
    assert_eq!(
        section(&m, &[1], Some(SectionText::Header)).as_deref(),
        Some("Subject: inner\r\n\r\n")
    );
    assert_eq!(section(&m, &[1, 1], None).as_deref(), Some("hello\r\n"));
    assert_eq!(section(&m, &[1, 2], None), None);
    assert_eq!(
        text(m.body_structure(false)),
        "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 25 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) \
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 7 1) 3)"
    );
}

#[test]
fn decoders() {
    let b64: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"TQ==", b"M"),
        (b"TWE=", b"Ma"),
        (b"TWFu", b"Man"),
        (b"TW\r\nFu\r\n", b"Man"),
        (b"TWE", b"Ma"),
        (b"TQ==TWE=", b"MMa"),
        (b"T", b""),
        (b"*TW!Fu", b"Man"),
    ];
    for (input, want) in b64 {
        assert_eq!(
            &base64_decode(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let qp: &[(&[u8], &[u8])] = &[
        (b"a=3Db", b"a=b"),
        (b"soft=\r\nbreak", b"softbreak"),
        (b"soft= \r\nbreak", b"softbreak"),
        (b"trailing   \r\nx", b"trailing\r\nx"),
        (b"bad=ZZ=4", b"bad=ZZ=4"),
        (b"lower=e9", b"lower\xe9"),
        (b"lf\nonly=\nx", b"lf\nonlyx"),
        (b"end=", b"end"),
    ];
    for (input, want) in qp {
        assert_eq!(
            &qp_decode(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(lines(b""), 0);
    assert_eq!(lines(b"a"), 0);
    assert_eq!(lines(b"a\r\n"), 1);
    assert_eq!(lines(b"a\r\nb"), 1);
    assert_eq!(lines(b"\r\n\r\n"), 2);
}

#[test]
fn dates() {
    type Ymd = Option<(i32, u32, u32)>;
    let cases: &[(&str, Ymd)] = &[
        ("Mon, 31 Dec 2001 23:59:00 -1200", Some((2001, 12, 31))),
        ("1 jan 2000 00:00 +1400", Some((2000, 1, 1))),
        ("Fri,  3 Mar 49 10:00 EST", Some((2049, 3, 3))),
        ("3 Mar 101 10:00", Some((2001, 3, 3))),
        ("Tue, 32 Jan 2001", None),
        ("garbage", None),
        ("", None),
        ("1 Foo 2001", None),
        ("1 Jan 1", None),
    ];
    for (date, want) in cases {
        let raw = format!("Date: {date}\r\n\r\n");
        assert_eq!(Message::parse(raw.as_bytes()).sent_date(), *want, "{date}");
    }
}

#[test]
fn whole_and_header_plus_text_are_the_message() {
    for raw in all_messages() {
        let m = Message::parse(&raw);
        let whole = m.section(&Section::default());
        assert_eq!(whole.as_deref(), Some(&raw[..]));
        let header = m.section(&Section {
            part: vec![],
            text: Some(SectionText::Header),
        });
        let body = m.section(&Section {
            part: vec![],
            text: Some(SectionText::Text),
        });
        let joined = [header.unwrap_or_default(), body.unwrap_or_default()].concat();
        assert_eq!(joined, raw, "{:?}", String::from_utf8_lossy(&raw));
        assert_eq!(m.binary(&[]).as_deref(), Ok(&raw[..]));
    }
}

/// A small deterministic generator of malformed messages: pieces of MIME, shuffled.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: multipart/digest; boundary=\"a\"\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*0*=x; filename*1=y\r\n",
        b"To: a:b@c,<d@e>;(x\r\n",
        b"From: \"\\",
        b"\r\n",
        b"\n",
        b"--a\r\n",
        b"--a--\r\n",
        b"=",
        b"=4",
        b"(",
        b")",
        b"<",
        b"\"",
        b" ",
        b"\xff",
        b"x",
        b"Subject: =?utf-8?b?",
        b"Date: 1 Jan 2000\r\n",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::new();
    for _ in 0..n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(PIECES[(state >> 33) as usize % PIECES.len()]);
    }
    out
}

/// Whether a response item is one parenthesized list, its strings and literals skipped.
fn balanced(b: &[u8]) -> bool {
    let (mut depth, mut i) = (0i64, 0);
    while let Some(&c) = b.get(i) {
        i += 1;
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'"' => {
                while let Some(&q) = b.get(i) {
                    i += if q == b'\\' { 2 } else { 1 };
                    if q == b'"' {
                        break;
                    }
                }
            }
            b'{' => {
                let digits: Vec<u8> = b[i..]
                    .iter()
                    .copied()
                    .take_while(u8::is_ascii_digit)
                    .collect();
                let n: usize = String::from_utf8_lossy(&digits).parse().unwrap_or(0);
                i += digits.len() + 3 + n;
            }
            _ => {}
        }
        if depth < 0 || (depth == 0 && i < b.len()) {
            return false;
        }
    }
    depth == 0 && b.first() == Some(&b'(')
}

#[test]
fn malformed_messages_get_answers() {
    for seed in 0..1500 {
        let raw = noise(seed, (seed % 60) as usize);
        let m = Message::parse(&raw);
        let _ = (
            m.envelope(),
            m.body_structure(false),
            m.body_structure(true),
            m.sent_date(),
        );
        let _ = (
            m.header_contains("to", "b"),
            m.body_contains("x"),
            m.text_contains("\u{e9}"),
        );
        for part in [&[][..], &[1], &[1, 1], &[2], &[1, 2, 1], &[u32::MAX]] {
            for text in [
                None,
                Some(SectionText::Header),
                Some(SectionText::Text),
                Some(SectionText::Mime),
                Some(SectionText::HeaderFields(names(&["to"]))),
                Some(SectionText::HeaderFieldsNot(names(&["to"]))),
            ] {
                let _ = m.section(&Section {
                    part: part.to_vec(),
                    text,
                });
            }
            let size = m.binary_size(part);
            assert_eq!(size, m.binary(part).map(|b| b.len() as u64));
        }
        let header = m.section(&Section {
            part: vec![],
            text: Some(SectionText::Header),
        });
        let body = m.section(&Section {
            part: vec![],
            text: Some(SectionText::Text),
        });
        assert_eq!(
            [header.unwrap_or_default(), body.unwrap_or_default()].concat(),
            raw
        );
        for b in [
            m.envelope(),
            m.body_structure(false),
            m.body_structure(true),
        ] {
            assert!(balanced(&b), "{:?}", String::from_utf8_lossy(&b));
        }
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut raw = Vec::new();
    for _ in 0..5000 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: deep\r\n\r\nbottom\r\n");
    let m = Message::parse(&raw);
    let structure = m.body_structure(true);
    assert_eq!(
        structure.windows(8).filter(|w| w == b"\"RFC822\"").count(),
        MAX_DEPTH + 1
    );
    assert!(balanced(&structure));
    let mut raw = Vec::new();
    for i in 0..5000 {
        let level = format!("Content-Type: multipart/mixed; boundary=x{i}\r\n\r\n--x{i}\r\n");
        raw.extend_from_slice(level.as_bytes());
    }
    let m = Message::parse(&raw);
    let structure = m.body_structure(false);
    assert!(
        structure.starts_with(&[b'('; MAX_DEPTH + 1]),
        "{structure:?}"
    );
    assert!(balanced(&structure));
    let path = vec![1; 40];
    assert_eq!(
        m.section(&Section {
            part: path,
            text: None
        }),
        None
    );
}

#[test]
fn many_parts_are_bounded() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
    for _ in 0..3 * MAX_PARTS {
        raw.extend_from_slice(b"--p\r\n\r\nx\r\n");
    }
    raw.extend_from_slice(b"--p--\r\n");
    let m = Message::parse(&raw);
    let n = MAX_PARTS as u32;
    assert_eq!(
        m.section(&Section {
            part: vec![n - 2],
            text: None
        }),
        Some(b"x".to_vec())
    );
    let last = m
        .section(&Section {
            part: vec![n],
            text: None,
        })
        .unwrap_or_default();
    assert!(
        last.len() > 2 * MAX_PARTS && last.ends_with(b"--p--\r\n"),
        "{}",
        last.len()
    );
    assert_eq!(
        m.section(&Section {
            part: vec![n + 1],
            text: None
        }),
        None
    );
}

/// The fast path of header decoding gives what `mail_parser` gives, for every value it takes.
#[test]
fn plain_text_is_what_mail_parser_decodes() {
    use proptest::prelude::*;
    let decode = |v: &str| {
        let raw = format!("Subject:{v}\r\n\r\n");
        let m = Message::parse(raw.as_bytes());
        let h = m.header(&m.root);
        let value = m.slice(h[0].value..h[0].end).to_vec();
        let slow = parsed_text(&value);
        (plain_text(&value), slow)
    };
    for v in [
        " a  b ",
        "a\r\n  b",
        "a \r\n b",
        "a\r\n\tb",
        "a\t\tb",
        " \t A",
        "\"Q  x\" (c  d)",
    ] {
        let (fast, slow) = decode(v);
        assert_eq!(fast.as_deref(), Some(slow.as_str()), "{v:?}");
    }
    assert_eq!(decode("=?utf-8?q?x?=").0, None);
    assert_eq!(decode("caf\u{e9}").0, None);
    assert_eq!(decode("a\rb").0, None);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 5000,
        failure_persistence: None,
        ..Default::default()
    });
    let value = "[ -~\t\r\x01]{0,20}(\r\n[ \t][ -~\t]{0,10}){0,3}[ \t]{0,2}";
    runner
        .run(&value, |v| {
            if let (Some(fast), slow) = decode(&v) {
                prop_assert_eq!(fast, slow, "{:?}", v);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn header_sections_whole_and_from_the_start() {
    assert_eq!(header_section(b"A: b\r\n\r\nbody\r\n"), b"A: b\r\n\r\n");
    assert_eq!(header_section(b"A: b\r\nC: d\r\n"), b"A: b\r\nC: d\r\n");
    assert_eq!(header_section(b"\r\nbody"), b"\r\n");
    assert_eq!(header_section(b"A: b\n\nbody"), b"A: b\n\n");
    assert_eq!(header_section(b"not a field\r\n\r\n"), b"");
    assert_eq!(header_section(b""), b"");
}

/// `field_contains` finds the fields that `fields` finds.
#[test]
fn field_contains_is_what_the_field_list_gives() {
    use proptest::prelude::*;
    let reference = |h: &[u8], name: &str, needle: &str| {
        fields(h, 0..h.len())
            .iter()
            .filter(|f| f.is(h, name))
            .any(|f| {
                let v = h.get(f.value..f.end).unwrap_or_default();
                plain_text(v)
                    .unwrap_or_else(|| parsed_text(v))
                    .contains(needle)
            })
    };
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 5000,
        failure_persistence: None,
        ..Default::default()
    });
    let line = "(([Ss]ubject|X-a|To|subject:x) ?:|[ \t]|)[ -~\t]{0,12}(\r\n|\n)";
    let header = proptest::collection::vec(line, 0..6).prop_map(|l| l.concat());
    let name = "(Subject|SUBJECT|To|X-a|subject:x| |)";
    let needle = "(|a|x|sub| |e)";
    runner
        .run(&(header, name, needle), |(h, name, needle)| {
            let h = header_section(h.as_bytes());
            prop_assert_eq!(
                field_contains(h, &name, &needle),
                reference(h, &name, &needle),
                "{:?} {:?} {:?}",
                String::from_utf8_lossy(h),
                name,
                needle
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The header block of a content, behind the fields a copy adds, gives the copy's header
/// section, as the whole content does.
#[test]
fn header_blocks_stand_in_for_the_content() {
    use proptest::prelude::*;
    assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
    assert_eq!(header_block(b"not a field\n\nbody"), b"not a field\n\n");
    assert_eq!(header_block(b"\r\nbody"), b"\r\n");
    assert_eq!(header_block(b"A: b"), b"A: b");
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 3000,
        failure_persistence: None,
        ..Default::default()
    });
    let line = "(A: b|x| c|)(\r\n|\n|\r)";
    let text = proptest::collection::vec(line, 0..6).prop_map(|l| l.concat());
    let fields = "(|Return-Path: <a@b>\r\n|Delivered-To: x\r\nReceived: y\r\n)";
    runner
        .run(&(fields, text), |(f, c)| {
            let whole = [f.as_bytes(), c.as_bytes()].concat();
            let block = [f.as_bytes(), header_block(c.as_bytes())].concat();
            prop_assert_eq!(header_section(&block), header_section(&whole));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
