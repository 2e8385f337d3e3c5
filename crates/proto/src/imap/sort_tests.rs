use super::*;
use crate::imap::command::{SortCriterion, SortKey};

#[test]
fn base_subjects() {
    let table = [
        ("Hello", "hello", false),
        ("  Hello \t  world  ", "hello world", false),
        ("Re: Hello", "hello", true),
        ("RE: re: FWD: fw: hello (fwd) (FWD)", "hello", true),
        ("re:re:re:x", "x", true),
        ("[PATCH] Re: [list] fix it", "fix it", true),
        ("[list] fix it", "fix it", false),
        ("[fwd: Re: hi]", "hi", true),
        ("[Fwd: [fwd: Lunch]]", "lunch", true),
        ("Re [x]: y", "y", true),
        // A blob that would leave nothing is the subject.
        ("[blob]", "[blob]", false),
        ("Re: [blob]", "[blob]", true),
        ("Re:", "", true),
        ("", "", false),
        // Not leaders: no colon, or a longer word.
        ("Rex: foo", "rex: foo", false),
        ("Re foo", "re foo", false),
        ("Fwd: Grüße aus Köln", "grüße aus köln", true),
        ("[Ünïcode] Über", "über", false),
        // Unbalanced brackets are text.
        ("[open Re: x", "[open re: x", false),
        ("(fwd)", "", true),
    ];
    for (subject, base, reply) in table {
        assert_eq!(base_subject(subject), (casemap(base), reply), "{subject:?}");
    }
}

#[test]
fn keys_from_a_header() {
    let h = b"From: \"Zed Z.\" <zed@example.org>\r\nTo: undisclosed:;, Amy <AMY@Example.net>\r\n\
Cc: =?utf-8?q?=C3=89mile?= <emile@example.com>\r\nSubject: =?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=\r\n\
Date: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <m3@example.org>\r\n\
In-Reply-To: <m2@example.org> <other@example.org>\r\n\r\n";
    let k = HeaderKeys::of(h);
    assert_eq!(k.subject, "GRU\u{308}SSE");
    assert!(k.reply);
    assert_eq!(k.sent, Some(1_796_115_600));
    assert_eq!(k.from, "ZED");
    assert_eq!(k.display_from, "ZED Z.");
    // A field that starts with a group is keyed by the group's name.
    assert_eq!(k.to, "UNDISCLOSED");
    assert_eq!(k.display_to, "UNDISCLOSED");
    assert_eq!(k.cc, "EMILE");
    assert_eq!(k.message_id.as_deref(), Some("m3@example.org"));
    assert_eq!(k.references, ["m2@example.org"]);
    let k = HeaderKeys::of(b"References: <a@x> <b@x>\r\nIn-Reply-To: <c@x>\r\nDate: never\r\n\r\n");
    assert_eq!(k.references, ["a@x", "b@x"]);
    assert_eq!(k.sent, None);
    assert_eq!(HeaderKeys::of(b"not a header"), HeaderKeys::default());
    // Without a display name, the address is the display key.
    assert_eq!(
        HeaderKeys::of(b"From: bob@example.org\r\n\r\n").display_from,
        "BOB@EXAMPLE.ORG"
    );
    // Accented letters sort with their base letters: \u{c9}mile between Dave and Fred.
    let mut names = ["Fred", "\u{c9}mile", "dave", "_x"].map(casemap);
    names.sort();
    assert_eq!(names, ["DAVE", "E\u{301}MILE", "FRED", "_X"]);
}

fn item(seq: u32, subject: &str, sent: i64, id: &str, refs: &[&str]) -> Item {
    let (subject, reply) = base_subject(subject);
    Item {
        num: seq,
        seq,
        arrival: 1000 - i64::from(seq),
        size: u64::from(seq) * 10,
        keys: HeaderKeys {
            subject,
            reply,
            sent: Some(sent),
            message_id: (!id.is_empty()).then(|| id.to_string()),
            references: refs.iter().map(|r| r.to_string()).collect(),
            ..HeaderKeys::default()
        },
    }
}

fn order(items: &[Item], criteria: &[(bool, SortKey)]) -> Vec<u32> {
    let mut v = items.to_vec();
    let criteria: Vec<SortCriterion> = criteria
        .iter()
        .map(|&(reverse, key)| SortCriterion { reverse, key })
        .collect();
    sort(&mut v, &criteria);
    v.iter().map(|i| i.num).collect()
}

#[test]
fn sort_orders_by_each_key_then_by_sequence() {
    let mut items = vec![
        item(1, "Beta", 300, "", &[]),
        item(2, "Re: alpha", 100, "", &[]),
        item(3, "Alpha", 200, "", &[]),
        item(4, "beta", 300, "", &[]),
    ];
    items[0].keys.from = "CAROL".into();
    items[1].keys.from = "AMY".into();
    items[3].keys.from = "AMY".into();
    use SortKey::*;
    assert_eq!(order(&items, &[(false, Subject)]), [2, 3, 1, 4]);
    assert_eq!(
        order(&items, &[(false, Subject), (true, Date)]),
        [3, 2, 1, 4]
    );
    assert_eq!(order(&items, &[(true, Subject)]), [1, 4, 2, 3]);
    assert_eq!(order(&items, &[(false, Date)]), [2, 3, 1, 4]);
    assert_eq!(order(&items, &[(false, Arrival)]), [4, 3, 2, 1]);
    assert_eq!(order(&items, &[(true, Size)]), [4, 3, 2, 1]);
    // No From sorts first (the empty string); ties by sequence number.
    assert_eq!(order(&items, &[(false, From)]), [3, 2, 4, 1]);
    assert_eq!(order(&items, &[(false, From), (true, Date)]), [3, 4, 2, 1]);
    // A message without a Date: sorts by its arrival.
    items[2].keys.sent = None;
    assert_eq!(order(&items, &[(false, Date)]), [2, 1, 4, 3]);
}

#[test]
fn thread_responses_nest_as_rfc_5256_writes_them() {
    let leaf = |n| Node::leaf(n);
    let node = |n: Option<u32>, children: Vec<Node>| Node { num: n, children };
    // RFC 5256 §4's example: (2)(3 6 (4 23)(44 7 96))
    let t = vec![
        leaf(2),
        node(
            Some(3),
            vec![node(
                Some(6),
                vec![
                    node(Some(4), vec![leaf(23)]),
                    node(Some(44), vec![node(Some(7), vec![leaf(96)])]),
                ],
            )],
        ),
    ];
    assert_eq!(encode(&t), "(2)(3 6 (4 23)(44 7 96))");
    assert_eq!(encode(&[node(None, vec![leaf(1), leaf(2)])]), "((1)(2))");
    assert_eq!(encode(&[]), "");
}

#[test]
fn ordered_subject_groups_by_base_subject_in_date_order() {
    let items = vec![
        item(1, "Lunch", 500, "", &[]),
        item(2, "Re: Dinner", 100, "", &[]),
        item(3, "Re: Lunch", 400, "", &[]),
        item(4, "Dinner", 200, "", &[]),
        item(5, "Fwd: lunch", 600, "", &[]),
        item(6, "Breakfast", 300, "", &[]),
    ];
    // Lunch's first message is 3 (sent 400), with 1 and 5 after it.
    assert_eq!(encode(&ordered_subject(&items)), "(2 4)(6)(3 (1)(5))");
}

#[test]
fn references_threads_by_references_then_subject() {
    // A chain, a message with two replies, and a reply whose parent never came.
    let items = vec![
        item(1, "Plan", 100, "a", &[]),
        item(2, "Re: Plan", 200, "b", &["a"]),
        item(3, "Re: Plan", 300, "c", &["a", "b"]),
        item(4, "Re: Plan", 250, "d", &["a"]),
        item(5, "Budget", 400, "e", &[]),
        item(6, "Re: Budget", 500, "f", &["e"]),
        item(7, "Re: Budget", 450, "g", &["e"]),
        item(8, "Re: Gone", 600, "h", &["missing"]),
        item(9, "Re: Gone", 650, "i", &["missing"]),
    ];
    assert_eq!(
        encode(&references(&items)),
        "(1 (2 3)(4))(5 (7)(6))((8)(9))"
    );
}

#[test]
fn references_gathers_roots_of_one_subject() {
    // Two originals with one subject go under a dummy; a reply without References goes
    // under the original.
    let items = vec![
        item(1, "Hello", 100, "a", &[]),
        item(2, "Hello", 200, "b", &[]),
        item(3, "Other", 300, "c", &[]),
        item(4, "Re: Other", 400, "d", &[]),
    ];
    assert_eq!(encode(&references(&items)), "((1)(2))(3 4)");
}

#[test]
fn references_survives_loops_duplicates_and_missing_ids() {
    // 1 and 2 refer to each other; 3 repeats 1's Message-ID; 4 and 5 have none.
    let items = vec![
        item(1, "A", 100, "a", &["b"]),
        item(2, "B", 200, "b", &["a"]),
        item(3, "C", 300, "a", &[]),
        item(4, "D", 400, "", &[]),
        item(5, "E", 500, "", &["a"]),
    ];
    let t = references(&items);
    let mut seen: Vec<u32> = Vec::new();
    fn walk(n: &Node, seen: &mut Vec<u32>) {
        seen.extend(n.num);
        n.children.iter().for_each(|c| walk(c, seen));
    }
    t.iter().for_each(|n| walk(n, &mut seen));
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4, 5], "every message once: {t:?}");
    // 1 went under 2 (its References), so 2 could not go under 1 (a loop).
    assert_eq!(encode(&t), "(2 1 5)(3)(4)");
}
