//! SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and MODSEQ
//! (RFC 7162 §3.1.5).
//!
//! Flag, number and UID criteria are answered from the view in memory; dates and sizes read
//! each message's attributes; header criteria read the header sections, and body and text
//! criteria the messages themselves.

use chrono::Datelike;
use mailroom_proto::imap::command::{Date, Flag, Search, SearchKey, SearchReturn};
use mailroom_proto::imap::mime::{field_contains, header_section, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use super::view::compress;
use crate::store::{flag, MailAttrs, MailMeta};

/// Messages read at a time: whole ones, and otherwise (header sections, attributes).
const CHUNK: usize = 256;
const HEADER_CHUNK: usize = 2048;

/// What evaluating a criterion needs beyond the view.
#[derive(Default)]
struct Needs {
    attrs: bool,
    text: bool,
    /// Some criterion reads the body (BODY, TEXT): the whole message is parsed, else only
    /// its header section.
    body: bool,
    modseq: bool,
}

fn needs(k: &SearchKey, n: &mut Needs) {
    match k {
        SearchKey::And(ks) => ks.iter().for_each(|k| needs(k, n)),
        SearchKey::Or(a, b) => {
            needs(a, n);
            needs(b, n);
        }
        SearchKey::Not(k) => needs(k, n),
        SearchKey::Before(_) | SearchKey::On(_) | SearchKey::Since(_) => n.attrs = true,
        SearchKey::Larger(_) | SearchKey::Smaller(_) => n.attrs = true,
        SearchKey::Header(..) => n.text = true,
        SearchKey::Body(_) | SearchKey::Text(_) => {
            n.text = true;
            n.body = true;
        }
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => n.text = true,
        SearchKey::ModSeq(_) => n.modseq = true,
        _ => {}
    }
}

/// One message, as the criteria see it.
struct Candidate<'a> {
    seq: u32,
    meta: &'a MailMeta,
    recent: bool,
    attrs: Option<&'a MailAttrs>,
    /// Its octets: the whole message, or its header section when no criterion reads more.
    raw: Option<&'a [u8]>,
    header_only: bool,
    /// Those octets parsed, when a criterion needs it.
    parsed: std::cell::OnceCell<Message<'a>>,
    largest_seq: u32,
    largest_uid: u32,
    saved: Option<&'a [u32]>,
}

impl<'a> Candidate<'a> {
    fn header(&self) -> Option<&'a [u8]> {
        self.raw.map(|raw| {
            if self.header_only {
                raw
            } else {
                header_section(raw)
            }
        })
    }

    fn msg(&self) -> Option<&Message<'a>> {
        let raw = self.raw?;
        Some(self.parsed.get_or_init(|| Message::parse(raw)))
    }
}

fn flag_set(c: &Candidate<'_>, f: &Flag) -> bool {
    let bit = |b| c.meta.flags & b != 0;
    match f {
        Flag::Seen => bit(flag::SEEN),
        Flag::Answered => bit(flag::ANSWERED),
        Flag::Flagged => bit(flag::FLAGGED),
        Flag::Deleted => bit(flag::DELETED),
        Flag::Draft => bit(flag::DRAFT),
        Flag::Recent => c.recent,
        Flag::Extension(_) => false,
        Flag::Keyword(k) => c.meta.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)),
    }
}

fn date_of(d: chrono::DateTime<chrono::Utc>) -> Date {
    Date {
        year: d.year(),
        month: d.month(),
        day: d.day(),
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn matches(k: &SearchKey, c: &Candidate<'_>) -> bool {
    use SearchKey as K;
    match k {
        K::All => true,
        K::And(ks) => ks.iter().all(|k| matches(k, c)),
        K::Or(a, b) => matches(a, c) || matches(b, c),
        K::Not(k) => !matches(k, c),
        K::Sequence(set) => match set {
            mailroom_proto::imap::command::SequenceSet::Saved => {
                c.saved.is_some_and(|s| s.contains(&c.meta.uid))
            }
            _ => set.contains(c.seq, c.largest_seq),
        },
        K::Uid(set) => match set {
            mailroom_proto::imap::command::SequenceSet::Saved => {
                c.saved.is_some_and(|s| s.contains(&c.meta.uid))
            }
            _ => set.contains(c.meta.uid, c.largest_uid),
        },
        K::Flag(f) => flag_set(c, f),
        K::NotFlag(f) => !flag_set(c, f),
        K::New => c.recent && c.meta.flags & flag::SEEN == 0,
        K::Old => !c.recent,
        K::Header(name, v) => c
            .header()
            .is_some_and(|h| field_contains(h, name, &String::from_utf8_lossy(v).to_lowercase())),
        K::Body(v) => c.msg().is_some_and(|m| m.body_contains(&text(v))),
        K::Text(v) => c.msg().is_some_and(|m| m.text_contains(&text(v))),
        K::Before(d) => c.attrs.is_some_and(|a| date_of(a.internal_date) < *d),
        K::On(d) => c.attrs.is_some_and(|a| date_of(a.internal_date) == *d),
        K::Since(d) => c.attrs.is_some_and(|a| date_of(a.internal_date) >= *d),
        K::SentBefore(d) | K::SentOn(d) | K::SentSince(d) => {
            let Some((year, month, day)) = c.msg().and_then(|m| m.sent_date()) else {
                return false;
            };
            let sent = Date { year, month, day };
            match k {
                K::SentBefore(_) => sent < *d,
                K::SentOn(_) => sent == *d,
                _ => sent >= *d,
            }
        }
        K::Larger(n) => c.attrs.is_some_and(|a| a.size > *n),
        K::Smaller(n) => c.attrs.is_some_and(|a| a.size < *n),
        K::ModSeq(n) => c.meta.modseq >= *n,
    }
}

/// A message that matched: its sequence number, UID and mod-sequence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub seq: u32,
    pub uid: u32,
    pub modseq: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The messages of the selected folder that match `s`, in sequence order; `None` when the
    /// command has been answered already (an unknown charset, a store error).
    pub(super) async fn hits(&mut self, tag: &str, s: &Search) -> Option<Vec<Hit>> {
        if let Some(cs) = &s.charset {
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                self.tagged(
                    tag,
                    "NO",
                    "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset",
                );
                return None;
            }
        }
        self.sync(s.uid).await;
        let mut n = Needs::default();
        needs(&s.key, &mut n);
        if n.modseq {
            self.enabled.condstore = true;
        }
        let Some(v) = self.selected.as_ref() else {
            self.tagged(tag, "BAD", "No mailbox selected (SELECT or EXAMINE first)");
            return None;
        };
        let folder = v.folder.id;
        let user = self.user.as_ref().map_or(0, |u| u.id);
        let mail: Vec<(MailMeta, bool)> = (0..v.mail.len())
            .map(|i| (v.mail[i].clone(), v.recent(i) && !self.enabled.rev2))
            .collect();
        let (largest_seq, largest_uid) = (mail.len() as u32, v.last_uid());
        let saved = self.saved.clone();
        let mut hits: Vec<Hit> = Vec::new();
        let size = if n.body { CHUNK } else { HEADER_CHUNK };
        for (c, chunk) in mail.chunks(size).enumerate() {
            let attrs = if n.attrs {
                let uids = chunk.iter().map(|(m, _)| m.uid).collect();
                match self.ctx.store.mail_attrs(folder, uids).await {
                    Ok(a) => a,
                    Err(e) => {
                        self.temporary(tag, "search", &e);
                        return None;
                    }
                }
            } else {
                Vec::new()
            };
            // Criteria on header fields read only the header sections (see `mail_headers`).
            let read = if !n.text {
                Ok(Vec::new())
            } else if n.body {
                let ids = chunk.iter().map(|(m, _)| m.id).collect();
                self.ctx.store.mail_read_many(user, ids).await
            } else {
                let uids = chunk.iter().map(|(m, _)| m.uid).collect();
                self.ctx
                    .store
                    .mail_headers(folder, uids)
                    .await
                    .map(|mut h| {
                        chunk
                            .iter()
                            .map(|(m, _)| {
                                let at = h.binary_search_by_key(&m.uid, |x| x.0).ok()?;
                                Some(std::mem::take(&mut h[at].1))
                            })
                            .collect()
                    })
            };
            let texts = match read {
                Ok(t) => t,
                Err(e) => {
                    self.temporary(tag, "search", &e);
                    return None;
                }
            };
            for (j, (meta, recent)) in chunk.iter().enumerate() {
                let attr = attrs
                    .binary_search_by_key(&meta.uid, |a| a.meta.uid)
                    .ok()
                    .and_then(|at| attrs.get(at));
                let raw = texts.get(j).and_then(|t| t.as_deref());
                let cand = Candidate {
                    seq: (c * size + j + 1) as u32,
                    meta,
                    recent: *recent,
                    attrs: attr,
                    raw,
                    header_only: !n.body,
                    parsed: std::cell::OnceCell::new(),
                    largest_seq,
                    largest_uid,
                    saved: saved.as_deref(),
                };
                if matches(&s.key, &cand) {
                    hits.push(Hit {
                        seq: cand.seq,
                        uid: meta.uid,
                        modseq: meta.modseq,
                    });
                }
            }
        }
        Some(hits)
    }

    pub(super) async fn search(&mut self, tag: &str, s: Search) {
        let Some(hits) = self.hits(tag, &s).await else {
            return;
        };
        let mut n = Needs::default();
        needs(&s.key, &mut n);
        let nums: Vec<u32> = hits
            .iter()
            .map(|h| if s.uid { h.uid } else { h.seq })
            .collect();
        let top_modseq = hits.iter().map(|h| h.modseq).max();
        let returns = match (&s.returns, self.enabled.rev2) {
            (Some(r), _) => Some(if r.is_empty() {
                vec![SearchReturn::All]
            } else {
                r.clone()
            }),
            (None, true) => Some(vec![SearchReturn::All]),
            (None, false) => None,
        };
        match returns {
            None => {
                let list: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
                let modseq = match (n.modseq, top_modseq) {
                    (true, Some(m)) => format!(" (MODSEQ {m})"),
                    _ => String::new(),
                };
                let sep = if list.is_empty() { "" } else { " " };
                self.untagged(&format!("SEARCH{sep}{}{modseq}", list.join(" ")));
            }
            Some(r) => {
                if r.contains(&SearchReturn::Save) {
                    self.saved = Some(hits.iter().map(|h| h.uid).collect());
                }
                let mut out = format!("ESEARCH (TAG \"{tag}\")");
                if s.uid {
                    out.push_str(" UID");
                }
                let only_save = r.iter().all(|x| *x == SearchReturn::Save);
                if !only_save {
                    if r.contains(&SearchReturn::Min) {
                        if let Some(m) = nums.first() {
                            out.push_str(&format!(" MIN {m}"));
                        }
                    }
                    if r.contains(&SearchReturn::Max) {
                        if let Some(m) = nums.last() {
                            out.push_str(&format!(" MAX {m}"));
                        }
                    }
                    if r.contains(&SearchReturn::All) && !nums.is_empty() {
                        let mut sorted = nums.clone();
                        sorted.sort_unstable();
                        out.push_str(&format!(" ALL {}", compress(&sorted)));
                    }
                    if r.contains(&SearchReturn::Count) {
                        out.push_str(&format!(" COUNT {}", nums.len()));
                    }
                    if let (true, Some(m)) = (n.modseq, top_modseq) {
                        out.push_str(&format!(" MODSEQ {m}"));
                    }
                    self.untagged(&out);
                }
            }
        }
        let verb = if s.uid { "UID SEARCH" } else { "SEARCH" };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }
}
