//! SORT and THREAD (RFC 5256) with SORT=DISPLAY (RFC 5957), without I/O: the sort keys of a
//! message read from its header section, the base subject (§2.1), the sort (§3), and the
//! ORDEREDSUBJECT and REFERENCES threading algorithms (§4) with their response syntax.
//!
//! Strings are compared after `i;unicode-casemap` (RFC 5051: title case, then NFKD), as
//! Dovecot does, so that `Émile` sorts with the `E`s; RFC 5256's `i;ascii-casemap` sorts ASCII
//! the same way but puts every accented letter after `z`. Header fields are read with
//! `mail_parser`: RFC 2047 encoded words, address lists with groups, and dates in every RFC
//! 5322 form, obsolete ones included. An address field that starts with a group is keyed by
//! the group's name, as its ENVELOPE entry is (the group marker's mailbox).

use std::collections::HashMap;

use mail_parser::{Address, MessageParser};
use unicode_normalization::UnicodeNormalization;

use super::command::{SortCriterion, SortKey};

/// What SORT and THREAD read of one message's header section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderKeys {
    /// The base subject (§2.1), case-mapped (as every string key here).
    pub subject: String,
    /// The subject was a reply or a forward (`Re:`, `Fwd:`, `(fwd)`, `[fwd: …]`): §4's
    /// REFERENCES step 5 prefers a thread's original over a reply.
    pub reply: bool,
    /// The Date: field, as seconds since 1970 in UTC; `None` when it is missing or unreadable
    /// (the sent date is then the arrival date, §2.2).
    pub sent: Option<i64>,
    /// The local part of the first From address (RFC 5256 §3 `addr-mailbox`), or the name
    /// of the group it starts with; empty when there is none.
    pub from: String,
    /// The same of the first To address.
    pub to: String,
    /// The same of the first Cc address.
    pub cc: String,
    /// RFC 5957's display name of the first From address: its display-name, else its
    /// addr-spec (or the group's name); empty when there is none.
    pub display_from: String,
    /// The same of the first To address.
    pub display_to: String,
    /// The Message-ID's msg-id, without its angle brackets.
    pub message_id: Option<String>,
    /// The References msg-ids in order; without References, the first msg-id of In-Reply-To
    /// (§4 REFERENCES, step 1).
    pub references: Vec<String>,
}

impl HeaderKeys {
    /// The keys of a message whose header section is `header`. Never fails: what cannot be
    /// read is missing.
    pub fn of(header: &[u8]) -> HeaderKeys {
        let Some(m) = MessageParser::new().parse_headers(header) else {
            return HeaderKeys::default();
        };
        let (subject, reply) = base_subject(m.subject().unwrap_or_default());
        let sent = m.date().filter(|d| d.is_valid()).map(|d| d.to_timestamp());
        let (from, display_from) = first(m.from());
        let (to, display_to) = first(m.to());
        let (cc, _) = first(m.cc());
        let ids = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
            v.as_text_list()
                .map(|l| l.iter().map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        };
        let mut references: Vec<String> = ids(m.references());
        if references.is_empty() {
            references = ids(m.in_reply_to()).into_iter().take(1).collect();
        }
        references.retain(|r| !r.is_empty());
        HeaderKeys {
            subject,
            reply,
            sent,
            from,
            to,
            cc,
            display_from,
            display_to,
            message_id: m
                .message_id()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            references,
        }
    }
}

/// The addr-mailbox and the RFC 5957 display name of an address field's first entry,
/// case-mapped: a group's name for both when the field starts with a group.
fn first(field: Option<&Address<'_>>) -> (String, String) {
    let addr = match field {
        None => return Default::default(),
        Some(Address::List(list)) => list.first(),
        Some(Address::Group(groups)) => match groups.first() {
            None => None,
            Some(g) => match g.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                Some(name) => return (casemap(name), casemap(name)),
                None => g.addresses.first(),
            },
        },
    };
    let Some(addr) = addr else {
        return Default::default();
    };
    let spec = addr.address().unwrap_or_default();
    let local = spec.rsplit_once('@').map_or(spec, |(local, _)| local);
    let display = addr
        .name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(spec);
    (casemap(local), casemap(display))
}

/// `i;unicode-casemap` (RFC 5051 §2): each character in title case (upper case, which is the
/// same but for a few digraphs), then the compatibility decomposition (NFKD), compared as
/// UTF-8 octets.
pub fn casemap(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).nfkd().collect()
}

/// The base subject of a subject (RFC 5256 §2.1), case-mapped, and whether it was a reply or
/// a forward (a `Re:`/`Fw:`/`Fwd:` leader, a `(fwd)` trailer or a `[fwd: …]` wrapper was
/// removed). The subject is already decoded (step 1's RFC 2047 part).
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) White space: tabs and folding to a space, runs of spaces to one.
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) Trailers: "(fwd)" and white space, again and again.
        loop {
            let trimmed = s.trim_end_matches(' ');
            if trimmed.len() != s.len() {
                s.truncate(trimmed.len());
                continue;
            }
            let cut = s.len().saturating_sub(5);
            match s.get(cut..) {
                Some(t) if t.eq_ignore_ascii_case("(fwd)") => {
                    s.truncate(cut);
                    reply = true;
                }
                _ => break,
            }
        }
        // (3)-(5) Leaders ("Re:", "[blob] Fwd:", white space) and blobs, until none is left.
        loop {
            let before = s.len();
            while let Some((rest, refwd)) = leader(&s) {
                s = rest.to_string();
                reply |= refwd;
            }
            if let Some(rest) = blob(&s) {
                if !rest.is_empty() {
                    s = rest.to_string();
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd: …]" around the whole: take it off and begin again.
        let inner = s
            .len()
            .checked_sub(1)
            .filter(|&end| end >= 5)
            .and_then(|end| {
                let head = s.get(..5)?;
                (head.eq_ignore_ascii_case("[fwd:") && s.ends_with(']')).then(|| s.get(5..end))?
            });
        match inner {
            Some(inner) => {
                s = inner.to_string();
                reply = true;
            }
            None => break,
        }
    }
    (casemap(&s), reply)
}

/// Step (3): one `subj-leader` at the start of `s`: a space, or `*subj-blob subj-refwd` where
/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`. What is after it, and whether
/// it was a `subj-refwd`.
fn leader(s: &str) -> Option<(&str, bool)> {
    if let Some(rest) = s.strip_prefix(' ') {
        return Some((rest, false));
    }
    let mut rest = s;
    while let Some(r) = blob(rest) {
        rest = r;
    }
    let word = ["re", "fwd", "fw"].into_iter().find(|w| {
        rest.get(..w.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(w))
    })?;
    rest = rest.get(word.len()..)?.trim_start_matches(' ');
    if let Some(r) = blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':').map(|r| (r, true))
}

/// A `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `s`: what is after it.
fn blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    rest.get(end..)?
        .strip_prefix(']')
        .map(|r| r.trim_start_matches(' '))
}

/// One message as SORT and THREAD see it.
#[derive(Debug, Clone)]
pub struct Item {
    /// What the response names it by: its sequence number, or its UID for `UID SORT`.
    pub num: u32,
    /// Its sequence number: the order of last resort (§2.2, §3).
    pub seq: u32,
    /// INTERNALDATE, seconds since 1970.
    pub arrival: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// What its header says.
    pub keys: HeaderKeys,
}

impl Item {
    /// The sent date (§2.2): the Date: field, else the arrival date.
    pub fn sent(&self) -> i64 {
        self.keys.sent.unwrap_or(self.arrival)
    }
}

/// Sorts `items` by `criteria` (RFC 5256 §3), each `REVERSE` turning its own key around;
/// messages equal on every key keep the order of their sequence numbers.
pub fn sort(items: &mut [Item], criteria: &[SortCriterion]) {
    items.sort_by(|a, b| {
        for c in criteria {
            let o = match c.key {
                SortKey::Arrival => a.arrival.cmp(&b.arrival),
                SortKey::Cc => a.keys.cc.cmp(&b.keys.cc),
                SortKey::Date => a.sent().cmp(&b.sent()),
                SortKey::From => a.keys.from.cmp(&b.keys.from),
                SortKey::Size => a.size.cmp(&b.size),
                SortKey::Subject => a.keys.subject.cmp(&b.keys.subject),
                SortKey::To => a.keys.to.cmp(&b.keys.to),
                SortKey::DisplayFrom => a.keys.display_from.cmp(&b.keys.display_from),
                SortKey::DisplayTo => a.keys.display_to.cmp(&b.keys.display_to),
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// A node of a thread: a message (`num`), or a dummy standing for a message that is not
/// there (`None`), and its replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The message's number, as in [`Item::num`]; `None` for a dummy.
    pub num: Option<u32>,
    /// Its children, in order.
    pub children: Vec<Node>,
}

impl Node {
    fn leaf(num: u32) -> Node {
        Node {
            num: Some(num),
            children: Vec::new(),
        }
    }
}

/// THREAD=ORDEREDSUBJECT (§4): messages with the same base subject form a thread, in sent
/// date order, the first the parent of the others; threads in order of their first message.
pub fn ordered_subject(items: &[Item]) -> Vec<Node> {
    let mut order: Vec<&Item> = items.iter().collect();
    order.sort_by(|a, b| {
        (a.keys.subject.as_str(), a.sent(), a.seq).cmp(&(b.keys.subject.as_str(), b.sent(), b.seq))
    });
    let mut threads: Vec<(i64, u32, Node)> = Vec::new();
    let mut i = 0;
    while let Some(first) = order.get(i) {
        let mut j = i + 1;
        let mut node = Node::leaf(first.num);
        while let Some(next) = order
            .get(j)
            .filter(|m| m.keys.subject == first.keys.subject)
        {
            node.children.push(Node::leaf(next.num));
            j += 1;
        }
        threads.push((first.sent(), first.seq, node));
        i = j;
    }
    threads.sort_by_key(|t| (t.0, t.1));
    threads.into_iter().map(|t| t.2).collect()
}

/// A container of §4 REFERENCES: a message (an index into the items) or a dummy.
#[derive(Debug, Default)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Threader<'a> {
    items: &'a [Item],
    c: Vec<Container>,
}

impl Threader<'_> {
    fn new_container(&mut self, msg: Option<usize>) -> usize {
        self.c.push(Container {
            msg,
            ..Container::default()
        });
        self.c.len() - 1
    }

    /// Would making `child` a child of `parent` close a loop?
    fn loops(&self, parent: usize, child: usize) -> bool {
        let mut at = Some(parent);
        while let Some(p) = at {
            if p == child {
                return true;
            }
            at = self.c.get(p).and_then(|c| c.parent);
        }
        false
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    /// The message a container sorts and is named by: its own, or its first child's.
    fn first_msg(&self, at: usize) -> Option<usize> {
        let c = &self.c[at];
        c.msg
            .or_else(|| c.children.first().and_then(|&k| self.first_msg(k)))
    }

    fn date_key(&self, at: usize) -> (i64, u32) {
        self.first_msg(at)
            .and_then(|m| self.items.get(m))
            .map_or((i64::MAX, u32::MAX), |m| (m.sent(), m.seq))
    }

    fn sort_siblings(&self, list: &mut [usize]) {
        list.sort_by_key(|&x| self.date_key(x));
    }

    /// Step 3: dummies without children go; a dummy's children take its place, except at the
    /// top where a dummy with several children stays (to hold them together).
    fn prune(&mut self, list: Vec<usize>, top: bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(list.len());
        for at in list {
            let kids = std::mem::take(&mut self.c[at].children);
            let kids = self.prune(kids, false);
            if self.c[at].msg.is_none() && (kids.is_empty() || !top || kids.len() == 1) {
                for &k in &kids {
                    self.c[k].parent = self.c[at].parent;
                }
                out.extend(kids);
                continue;
            }
            for &k in &kids {
                self.c[k].parent = Some(at);
            }
            self.c[at].children = kids;
            out.push(at);
        }
        out
    }

    /// Step 6: every set of siblings in sent date order, the deepest first.
    fn sort_tree(&mut self, at: usize) {
        let mut kids = std::mem::take(&mut self.c[at].children);
        for &k in &kids {
            self.sort_tree(k);
        }
        self.sort_siblings(&mut kids);
        self.c[at].children = kids;
    }

    fn node(&self, at: usize) -> Node {
        let c = &self.c[at];
        Node {
            num: c.msg.and_then(|m| self.items.get(m)).map(|m| m.num),
            children: c.children.iter().map(|&k| self.node(k)).collect(),
        }
    }
}

/// THREAD=REFERENCES (§4): threads from References (or In-Reply-To), then threads whose
/// roots share a base subject gathered, siblings in sent date order.
pub fn references(items: &[Item]) -> Vec<Node> {
    let mut t = Threader {
        items,
        c: Vec::with_capacity(items.len() * 2),
    };
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    // The order of sequence numbers: a duplicate Message-ID is the first message's (step 1A).
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].seq);
    let mut own: Vec<usize> = vec![0; items.len()];
    for &i in &order {
        let id = items[i].keys.message_id.as_deref();
        let at = match id.and_then(|id| by_id.get(id).copied()) {
            Some(at) if t.c[at].msg.is_none() => {
                t.c[at].msg = Some(i);
                at
            }
            // No Message-ID, or another message's: a container of its own.
            _ => {
                let at = t.new_container(Some(i));
                if let Some(id) = id {
                    by_id.entry(id).or_insert(at);
                }
                at
            }
        };
        own[i] = at;
        // Step 1A: the references linked parent to child, where no link exists yet.
        let mut prev: Option<usize> = None;
        let mut refs: Vec<usize> = Vec::new();
        for r in &items[i].keys.references {
            let rc = match by_id.get(r.as_str()) {
                Some(&rc) => rc,
                None => {
                    let rc = t.new_container(None);
                    by_id.insert(r.as_str(), rc);
                    rc
                }
            };
            if let Some(p) = prev {
                if p != rc && t.c[rc].parent.is_none() && !t.loops(p, rc) {
                    t.link(p, rc);
                }
            }
            prev = Some(rc);
            refs.push(rc);
        }
        // Step 1B: the message's parent is its last reference, whatever it was before.
        t.unlink(at);
        if let Some(&last) = refs.last() {
            if !t.loops(last, at) {
                t.link(last, at);
            }
        }
    }
    // Step 2: the roots.
    let roots: Vec<usize> = (0..t.c.len())
        .filter(|&x| t.c[x].parent.is_none())
        .collect();
    // Step 3.
    let mut roots = t.prune(roots, true);
    for &r in &roots {
        t.c[r].parent = None;
    }
    // Step 4: a dummy's children first, so that its first child dates it.
    for &r in &roots {
        if t.c[r].msg.is_none() {
            let mut kids = std::mem::take(&mut t.c[r].children);
            t.sort_siblings(&mut kids);
            t.c[r].children = kids;
        }
    }
    t.sort_siblings(&mut roots);
    // Step 5: roots with the same base subject gathered.
    let subject_of = |t: &Threader<'_>, at: usize| -> Option<String> {
        let m = t.first_msg(at)?;
        let s = &t.items.get(m)?.keys.subject;
        (!s.is_empty()).then(|| s.clone())
    };
    let reply_of = |t: &Threader<'_>, at: usize| t.c[at].msg.is_some_and(|m| t.items[m].keys.reply);
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let Some(subject) = subject_of(&t, r) else {
            continue;
        };
        match table.get(&subject) {
            None => {
                table.insert(subject, r);
            }
            Some(&old) => {
                let replace = t.c[old].msg.is_some()
                    && (t.c[r].msg.is_none() || reply_of(&t, old) && !reply_of(&t, r));
                if replace {
                    table.insert(subject, r);
                }
            }
        }
    }
    let mut gone = vec![false; t.c.len()];
    let mut replaced: HashMap<usize, usize> = HashMap::new();
    for &r in &roots.clone() {
        let Some(subject) = subject_of(&t, r) else {
            continue;
        };
        let Some(&held) = table.get(&subject) else {
            continue;
        };
        // (A root already put under a new dummy with another is not merged again.)
        if held == r || t.c[r].parent.is_some() {
            continue;
        }
        let (held_dummy, r_dummy) = (t.c[held].msg.is_none(), t.c[r].msg.is_none());
        if held_dummy && r_dummy {
            let kids = std::mem::take(&mut t.c[r].children);
            for k in kids {
                t.c[k].parent = None;
                t.link(held, k);
            }
            gone[r] = true;
        } else if held_dummy || (reply_of(&t, r) && !reply_of(&t, held)) {
            t.link(held, r);
            gone[r] = true;
        } else {
            let d = t.new_container(None);
            gone.push(false);
            t.link(d, held);
            t.link(d, r);
            gone[r] = true;
            replaced.insert(held, d);
            table.insert(subject, d);
        }
    }
    let mut out: Vec<usize> = Vec::with_capacity(roots.len());
    for r in roots {
        if gone[r] {
            continue;
        }
        let mut at = r;
        while let Some(&d) = replaced.get(&at) {
            at = d;
        }
        out.push(at);
    }
    // Step 6.
    for &r in &out {
        t.sort_tree(r);
    }
    t.sort_siblings(&mut out);
    out.into_iter().map(|r| t.node(r)).collect()
}

/// The THREAD response's threads (§5 `thread-list`): `(1 2 3)` for a chain, `(1 (2)(3))`
/// for a message with two replies, `((1)(2))` for two messages under a dummy.
pub fn encode(threads: &[Node]) -> String {
    let mut out = String::new();
    for t in threads {
        out.push('(');
        write_chain(t, &mut out);
        out.push(')');
    }
    out
}

fn write_chain(node: &Node, out: &mut String) {
    let mut at = node;
    let mut wrote = false;
    loop {
        if let Some(n) = at.num {
            if wrote {
                out.push(' ');
            }
            out.push_str(&n.to_string());
            wrote = true;
        }
        match at.children.as_slice() {
            [] => return,
            // (A dummy with one child is pruned away: only a message has a single child.)
            [only] => at = only,
            kids => {
                if wrote {
                    out.push(' ');
                }
                for k in kids {
                    out.push('(');
                    write_chain(k, out);
                    out.push(')');
                }
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "sort_tests.rs"]
mod tests;
