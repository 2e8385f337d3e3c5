use super::*;

fn ok(input: &str) -> Body {
    match command(format!("{input}\r\n").as_bytes()) {
        Ok(c) => c.body,
        Err(e) => panic!("{input}: {e}"),
    }
}

fn bad(input: &str) -> String {
    match command(format!("{input}\r\n").as_bytes()) {
        Ok(c) => panic!("{input} parsed: {c:?}"),
        Err(e) => e.reason,
    }
}

fn set(ranges: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(a, b)| {
                let v = |n| {
                    if n == 0 {
                        SeqNum::Largest
                    } else {
                        SeqNum::Value(n)
                    }
                };
                (v(a), v(b))
            })
            .collect(),
    )
}

#[test]
fn simple_commands() {
    assert_eq!(ok("a1 capability"), Body::Capability);
    assert_eq!(ok("a1 NOOP"), Body::Noop);
    assert_eq!(
        ok("a LOGIN bob \"pa ss\""),
        Body::Login {
            user: b"bob".to_vec(),
            password: b"pa ss".to_vec()
        }
    );
    assert_eq!(
        ok("a LOGIN {3}\r\nbob {2+}\r\npw"),
        Body::Login {
            user: b"bob".to_vec(),
            password: b"pw".to_vec()
        }
    );
    assert_eq!(
        ok("a AUTHENTICATE PLAIN AGJvYgBwdw=="),
        Body::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"AGJvYgBwdw==".to_vec())
        }
    );
    assert_eq!(
        ok("a ENABLE QRESYNC condstore"),
        Body::Enable(vec!["QRESYNC".into(), "CONDSTORE".into()])
    );
    assert_eq!(ok("a ID NIL"), Body::Id(None));
    // RFC 4978 §3: the mechanism is an atom, case-insensitive.
    assert_eq!(ok("z COMPRESS deflate"), Body::Compress("DEFLATE".into()));
    assert_eq!(
        ok("a ID (\"name\" \"x\" \"v\" NIL)"),
        Body::Id(Some(vec![
            (b"name".to_vec(), Some(b"x".to_vec())),
            (b"v".to_vec(), None)
        ]))
    );
    assert_eq!(
        ok("a UID EXPUNGE 1:3,7"),
        Body::Expunge(Some(set(&[(1, 3), (7, 7)])))
    );
    assert_eq!(
        ok("a CREATE Archive (USE (\\Archive))"),
        Body::Create {
            mailbox: b"Archive".to_vec(),
            special_use: vec!["\\Archive".into()]
        }
    );
}

#[test]
fn select_with_qresync() {
    assert_eq!(
        ok("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))"),
        Body::Select {
            mailbox: b"INBOX".to_vec(),
            read_only: false,
            condstore: false,
            qresync: Some(Qresync {
                uid_validity: 67890007,
                modseq: 20050715194045000,
                known_uids: Some(set(&[(41, 41), (43, 211), (214, 541)])),
                seq_match: None,
            }),
        }
    );
    assert!(matches!(
        ok("a EXAMINE x (CONDSTORE)"),
        Body::Select {
            read_only: true,
            condstore: true,
            ..
        }
    ));
}

#[test]
fn list_forms() {
    let Body::List(l) = ok("a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" %/*) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))") else {
        panic!()
    };
    assert_eq!(l.select, vec!["SUBSCRIBED", "RECURSIVEMATCH"]);
    assert_eq!(l.patterns, vec![b"INBOX".to_vec(), b"%/*".to_vec()]);
    assert_eq!(l.returns, vec!["CHILDREN", "STATUS"]);
    assert_eq!(
        l.return_status,
        vec![StatusItem::Messages, StatusItem::Unseen]
    );
    let Body::List(l) = ok("a LIST \"\" *") else {
        panic!()
    };
    assert_eq!(l.patterns, vec![b"*".to_vec()]);
    assert!(bad("a LIST (RECURSIVEMATCH) \"\" *").contains("RECURSIVEMATCH"));
}

#[test]
fn append_forms() {
    let Body::Append { mailbox, messages } =
        ok("a APPEND Sent (\\Seen $Forwarded) \" 7-Feb-1994 21:52:25 -0800\" {5+}\r\nhello ~{2}\r\n\0x")
    else {
        panic!()
    };
    assert_eq!(mailbox, b"Sent");
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].flags,
        vec![Flag::Seen, Flag::Keyword("$Forwarded".into())]
    );
    let d = messages[0].date.unwrap();
    assert_eq!(
        (
            d.date.day,
            d.date.month,
            d.date.year,
            d.hour,
            d.zone_minutes
        ),
        (7, 2, 1994, 21, -480)
    );
    assert_eq!(messages[0].data, b"hello");
    assert!(messages[1].binary);
    assert_eq!(messages[1].data, b"\0x");
    assert!(bad("a APPEND x {3}\r\na\0b").contains("NUL"));
    assert!(bad("a APPEND x").contains("literal"));
}

#[test]
fn fetch_forms() {
    let Body::Fetch(f) = ok("a UID FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From \"To\")]<0.100> BINARY[2] RFC822.SIZE) (CHANGEDSINCE 12345 VANISHED)") else {
        panic!()
    };
    assert!(f.uid && f.vanished);
    assert_eq!(f.changed_since, Some(12345));
    assert_eq!(f.set, set(&[(1, 0)]));
    assert_eq!(f.items[0], FetchItem::Flags);
    assert_eq!(
        f.items[1],
        FetchItem::Section {
            section: Section {
                part: vec![1, 2],
                text: Some(SectionText::HeaderFields(vec!["From".into(), "To".into()]))
            },
            partial: Some((0, 100)),
            peek: true
        }
    );
    assert_eq!(
        f.items[2],
        FetchItem::Binary {
            part: vec![2],
            partial: None,
            peek: false
        }
    );
    let Body::Fetch(f) = ok("a FETCH 2 ALL") else {
        panic!()
    };
    assert_eq!(f.items.len(), 4);
    let Body::Fetch(f) = ok("a FETCH 2 (BODY BODY[] BODY[TEXT] BODY[3.MIME])") else {
        panic!()
    };
    assert_eq!(f.items[0], FetchItem::Body);
    assert_eq!(
        f.items[1],
        FetchItem::Section {
            section: Section::default(),
            partial: None,
            peek: false
        }
    );
    assert!(bad("a FETCH 1 (BODY[MIME])").contains("part number"));
    assert!(bad("a FETCH 1 (BODY[1.])").contains("'.'"));
    assert!(bad("a FETCH 0 FLAGS").contains("0 is not"));
    assert!(bad("a FETCH 1 (FLAGS CHEESE)").contains("unknown FETCH item"));
    assert!(bad("a FETCH 1 FLAGS (VANISHED)").contains("VANISHED"));
}

#[test]
fn store_forms() {
    let Body::Store(s) = ok("a UID STORE 1,3 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Deleted foo)")
    else {
        panic!()
    };
    assert_eq!(s.mode, StoreMode::Add);
    assert!(s.silent && s.uid);
    assert_eq!(s.unchanged_since, Some(7));
    assert_eq!(s.flags, vec![Flag::Deleted, Flag::Keyword("foo".into())]);
    let Body::Store(s) = ok("a STORE 1 -FLAGS \\Seen \\Flagged") else {
        panic!()
    };
    assert_eq!(s.mode, StoreMode::Remove);
    assert_eq!(s.flags, vec![Flag::Seen, Flag::Flagged]);
    assert!(bad("a STORE 1 +LABELS (x)").contains("FLAGS"));
}

#[test]
fn search_forms() {
    let Body::Search(s) = ok("a UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM bob (SINCE 1-Feb-1994 NOT SEEN) 2:4 HEADER X-Spam yes MODSEQ 5") else {
        panic!()
    };
    assert!(s.uid);
    assert_eq!(s.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        s.returns,
        Some(vec![SearchReturn::Min, SearchReturn::Count])
    );
    let SearchKey::And(keys) = s.key else {
        panic!()
    };
    assert_eq!(keys.len(), 4);
    assert_eq!(
        keys[0],
        SearchKey::Or(
            Box::new(SearchKey::Header("From".into(), b"bob".to_vec())),
            Box::new(SearchKey::And(vec![
                SearchKey::Since(Date {
                    year: 1994,
                    month: 2,
                    day: 1
                }),
                SearchKey::Not(Box::new(SearchKey::Flag(Flag::Seen))),
            ]))
        )
    );
    assert_eq!(keys[1], SearchKey::Sequence(set(&[(2, 4)])));
    assert_eq!(keys[2], SearchKey::Header("X-Spam".into(), b"yes".to_vec()));
    assert_eq!(keys[3], SearchKey::ModSeq(5));
    assert!(bad("a SEARCH SINCE 30-Feb-2020").contains("invalid date"));
    assert!(bad("a SEARCH FISH").contains("unknown search criterion"));
    let deep = format!("a SEARCH {}ALL", "NOT ".repeat(MAX_DEPTH + 1));
    assert!(bad(&deep).contains("nested"));
    let deep = format!(
        "a SEARCH {}ALL{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(bad(&deep).contains("nested"));
}

#[test]
fn sort_and_thread_forms() {
    // RFC 5256 §3's examples.
    let Body::Sort { criteria, search } = ok("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994") else {
        panic!()
    };
    assert_eq!(
        criteria,
        [SortCriterion {
            reverse: false,
            key: SortKey::Subject
        }]
    );
    assert!(!search.uid);
    assert_eq!(search.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        search.key,
        SearchKey::Since(Date {
            year: 1994,
            month: 2,
            day: 1
        })
    );
    let Body::Sort { criteria, search } =
        ok("A285 UID SORT (REVERSE date displayFROM) US-ASCII SUBJECT \"afternoon\" ALL")
    else {
        panic!()
    };
    assert!(search.uid);
    assert_eq!(
        criteria,
        [
            SortCriterion {
                reverse: true,
                key: SortKey::Date
            },
            SortCriterion {
                reverse: false,
                key: SortKey::DisplayFrom
            }
        ]
    );
    assert!(matches!(search.key, SearchKey::And(ref k) if k.len() == 2));
    let Body::Thread { algorithm, search } =
        ok("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000")
    else {
        panic!()
    };
    assert_eq!(algorithm, ThreadAlgorithm::OrderedSubject);
    assert!(!search.uid);
    let Body::Thread { algorithm, search } =
        ok("A284 UID THREAD references US-ASCII TEXT \"gewp\"")
    else {
        panic!()
    };
    assert_eq!(algorithm, ThreadAlgorithm::References);
    assert!(search.uid);
    assert!(!bad("a SORT () UTF-8 ALL").is_empty());
    assert!(bad("a SORT (REVERSE) UTF-8 ALL").contains("REVERSE"));
    assert!(bad("a SORT (REVERSE REVERSE DATE) UTF-8 ALL").contains("REVERSE"));
    assert!(bad("a SORT (COLOUR) UTF-8 ALL").contains("unknown SORT criterion COLOUR"));
    // The charset is not optional.
    assert!(!bad("a SORT (DATE) ALL").is_empty());
    assert!(bad("a THREAD REFS UTF-8 ALL").contains("unknown THREAD algorithm REFS"));
}

#[test]
fn errors_carry_the_tag() {
    let e = command(b"x1 FROB\r\n").unwrap_err();
    assert_eq!(e.tag.as_deref(), Some("x1"));
    assert!(e.reason.contains("unknown command FROB"));
    let e = command(b"\r\n").unwrap_err();
    assert_eq!(e.tag, None);
    let e = command(b"a+b NOOP\r\n").unwrap_err();
    assert_eq!(e.tag, None);
    assert!(bad("a NOOP extra").contains("unexpected text"));
    assert!(bad("a LOGIN \"unterminated").contains("unterminated"));
    assert!(bad("a LOGIN {10}\r\nshort").contains("shorter"));
    assert!(!bad("a COMPRESS").is_empty());
    assert_eq!(tag_of(b"t7 APPEND x {99999}\r\n").as_deref(), Some("t7"));
}

#[test]
fn dates() {
    assert_eq!(
        parse_date("1-Jan-2000"),
        Some(Date {
            year: 2000,
            month: 1,
            day: 1
        })
    );
    assert_eq!(parse_date("29-feb-2000").map(|d| d.day), Some(29));
    assert_eq!(parse_date("29-Feb-1900"), None);
    assert_eq!(parse_date("1-Foo-2000"), None);
    assert!(parse_date_time("17-Jul-1996 02:44:25 -0700").is_some());
    assert!(parse_date_time("17-Jul-1996 24:44:25 -0700").is_none());
    assert!(parse_date_time("17-Jul-1996 02:44:25 0700").is_none());
}

#[test]
fn sequence_sets() {
    let s = set(&[(5, 3), (9, 0)]);
    assert!(s.contains(4, 20) && s.contains(15, 20) && !s.contains(6, 20));
    assert_eq!(s.resolved(7), vec![(3, 5), (7, 9)]);
}
