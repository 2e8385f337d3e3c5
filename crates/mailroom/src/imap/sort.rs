//! SORT and THREAD (RFC 5256, SORT=DISPLAY RFC 5957): the messages SEARCH finds, with what
//! their header sections and attributes say, handed to the pure algorithms of
//! [`mailroom_proto::imap::sort`].
//!
//! Only header sections are read (as for SEARCH on header fields), a few thousand messages
//! at a time: sorting a folder of 100,000 messages reads their headers, not their bodies.

use mailroom_proto::imap::command::{Search, SearchKey, SortCriterion, ThreadAlgorithm};
use mailroom_proto::imap::sort::{self, HeaderKeys, Item};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;

/// Messages whose header sections and attributes are read at a time.
const CHUNK: usize = 2048;

/// Does the search use MODSEQ (RFC 7162 §3.1.5: SORT then reports the highest one)?
fn uses_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The matching messages with their sort keys; `None` when the command has been answered.
    async fn sort_items(&mut self, tag: &str, s: &Search) -> Option<(Vec<Item>, Option<u64>)> {
        let hits = self.hits(tag, s).await?;
        let folder = self.selected.as_ref()?.folder.id;
        let top_modseq = hits.iter().map(|h| h.modseq).max();
        let mut items = Vec::with_capacity(hits.len());
        for chunk in hits.chunks(CHUNK) {
            let uids: Vec<u32> = chunk.iter().map(|h| h.uid).collect();
            let read = async {
                let attrs = self.ctx.store.mail_attrs(folder, uids.clone()).await?;
                let headers = self.ctx.store.mail_headers(folder, uids).await?;
                Ok::<_, crate::store::StoreError>((attrs, headers))
            };
            let (attrs, headers) = match read.await {
                Ok(r) => r,
                Err(e) => {
                    self.temporary(tag, "sort", &e);
                    return None;
                }
            };
            for h in chunk {
                // (A message expunged by another session meanwhile sorts with empty keys.)
                let attr = attrs
                    .binary_search_by_key(&h.uid, |a| a.meta.uid)
                    .ok()
                    .and_then(|at| attrs.get(at));
                let header = headers
                    .binary_search_by_key(&h.uid, |x| x.0)
                    .ok()
                    .and_then(|at| headers.get(at));
                items.push(Item {
                    num: if s.uid { h.uid } else { h.seq },
                    seq: h.seq,
                    arrival: attr.map_or(0, |a| a.internal_date.timestamp()),
                    size: attr.map_or(0, |a| a.size),
                    keys: header.map(|x| HeaderKeys::of(&x.1)).unwrap_or_default(),
                });
            }
        }
        let modseq = top_modseq.filter(|_| uses_modseq(&s.key));
        Some((items, modseq))
    }

    /// SORT (RFC 5256 §3): `* SORT` with the numbers in order, and `(MODSEQ n)` when the
    /// search used MODSEQ (RFC 7162 §3.1.5).
    pub(super) async fn sort(&mut self, tag: &str, criteria: Vec<SortCriterion>, s: Search) {
        let Some((mut items, modseq)) = self.sort_items(tag, &s).await else {
            return;
        };
        sort::sort(&mut items, &criteria);
        let mut line = String::from("SORT");
        for i in &items {
            line.push(' ');
            line.push_str(&i.num.to_string());
        }
        if let (Some(m), false) = (modseq, items.is_empty()) {
            line.push_str(&format!(" (MODSEQ {m})"));
        }
        self.untagged(&line);
        let verb = if s.uid { "UID SORT" } else { "SORT" };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }

    /// THREAD (RFC 5256 §4): `* THREAD` with the threads.
    pub(super) async fn thread(&mut self, tag: &str, algorithm: ThreadAlgorithm, s: Search) {
        let Some((items, _)) = self.sort_items(tag, &s).await else {
            return;
        };
        let threads = match algorithm {
            ThreadAlgorithm::OrderedSubject => sort::ordered_subject(&items),
            ThreadAlgorithm::References => sort::references(&items),
        };
        let list = sort::encode(&threads);
        let sep = if list.is_empty() { "" } else { " " };
        self.untagged(&format!("THREAD{sep}{list}"));
        let verb = if s.uid { "UID THREAD" } else { "THREAD" };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }
}
