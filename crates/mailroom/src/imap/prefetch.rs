//! Reading ahead for pipelined FETCH commands.
//!
//! A sync client (mbsync, offlineimap) fetches a folder one message per command, thousands of
//! `UID FETCH n (BODY.PEEK[])` sent at once without waiting for the answers. Each would cost
//! a round trip to the store's reader thread (two context switches, a read transaction): for
//! mbsync's first sync of 2,000 messages those were most of mailroom's time. When a FETCH
//! needs message texts, the commands already received behind it are looked at, and the texts
//! they will need are read in the same store call and kept until their command comes.
//!
//! Why it is safe: message text never changes (the store refuses it, schema 13), so a text
//! read ahead is the text its command would have read; a message expunged meanwhile is simply
//! not found by its command. Why it is bounded: only commands already in the input buffer are
//! looked at (what the client has asked for), at most [`MAX_AHEAD`] messages, each at most
//! [`MAX_TEXT`] octets and [`MAX_BYTES`] in all (sizes are read first), and what is kept is
//! dropped when the folder is closed.

use std::collections::HashMap;

use mailroom_proto::imap::command::{Body, FetchItem};
use mailroom_proto::imap::parse;
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;

/// Messages read ahead at most, over the commands waiting.
const MAX_AHEAD: usize = 64;
/// A message larger than this is not read ahead (its own command reads it).
const MAX_TEXT: u64 = 1 << 20;
/// Octets kept ahead at most.
const MAX_BYTES: u64 = 8 << 20;

/// Texts read ahead, by store ID.
#[derive(Default)]
pub(super) struct Ahead {
    texts: HashMap<i64, Vec<u8>>,
}

impl Ahead {
    /// Forgets everything (the folder is closed).
    pub fn clear(&mut self) {
        self.texts = HashMap::new();
    }
}

/// Does this FETCH need whole texts (not only header sections)?
pub(super) fn needs_body(items: &[FetchItem]) -> bool {
    items
        .iter()
        .any(|i| super::fetch::needs_text_item(i) && !super::fetch::header_item(i))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The texts of `ids` (as `mail_read_many` returns them), taking those read ahead, and
    /// reading ahead for the FETCH commands already received.
    pub(super) async fn read_texts(
        &mut self,
        user: i64,
        ids: Vec<i64>,
    ) -> Result<Vec<Option<Vec<u8>>>, crate::store::StoreError> {
        let mut out: Vec<Option<Option<Vec<u8>>>> = ids
            .iter()
            .map(|id| self.ahead.texts.remove(id).map(Some))
            .collect();
        let missing: Vec<i64> = ids
            .iter()
            .zip(&out)
            .filter(|(_, t)| t.is_none())
            .map(|(&id, _)| id)
            .collect();
        if missing.is_empty() {
            return Ok(out.into_iter().map(Option::flatten).collect());
        }
        let extra = self.ahead_candidates(&ids).await;
        let mut read_ids = missing.clone();
        read_ids.extend(&extra);
        let mut texts = self
            .ctx
            .store
            .mail_read_many(user, read_ids)
            .await?
            .into_iter();
        for slot in out.iter_mut().filter(|t| t.is_none()) {
            *slot = Some(texts.next().flatten());
        }
        for (id, text) in extra.into_iter().zip(texts) {
            if let Some(text) = text {
                self.ahead.texts.insert(id, text);
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    /// The store IDs of the messages that the FETCH commands waiting in the input buffer will
    /// need whole, within the bounds; none when the client is not pipelining.
    async fn ahead_candidates(&mut self, now: &[i64]) -> Vec<i64> {
        let Some(v) = self.selected.as_ref() else {
            return Vec::new();
        };
        let mut uids: Vec<u32> = Vec::new();
        let mut ids: Vec<i64> = Vec::new();
        let mut rest: &[u8] = &self.conn.rbuf;
        while uids.len() < MAX_AHEAD {
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let (line, after) = rest.split_at(end + 2);
            rest = after;
            // A literal follows: the command is not all here.
            if line.ends_with(b"}\r\n") {
                break;
            }
            let Ok(cmd) = parse::command(line) else {
                continue;
            };
            let Body::Fetch(f) = cmd.body else {
                continue;
            };
            if !needs_body(&f.items) {
                continue;
            }
            let Ok(found) = v.resolve(&f.set, f.uid, self.saved.as_deref()) else {
                continue;
            };
            for i in found.into_iter().take(MAX_AHEAD - uids.len()) {
                let m = &v.mail[i];
                if !now.contains(&m.id) && !self.ahead.texts.contains_key(&m.id) {
                    uids.push(m.uid);
                    ids.push(m.id);
                }
            }
        }
        if uids.is_empty() {
            return Vec::new();
        }
        let folder = v.folder.id;
        // The sizes first, so that a large message is not read ahead.
        let Ok(attrs) = self.ctx.store.mail_attrs(folder, uids.clone()).await else {
            return Vec::new();
        };
        let mut budget = MAX_BYTES.saturating_sub(
            self.ahead
                .texts
                .values()
                .map(|t| t.len() as u64)
                .sum::<u64>(),
        );
        let mut chosen = Vec::new();
        for (uid, id) in uids.into_iter().zip(ids) {
            let Ok(at) = attrs.binary_search_by_key(&uid, |a| a.meta.uid) else {
                continue;
            };
            let size = attrs[at].size;
            if size > MAX_TEXT || size > budget {
                continue;
            }
            budget -= size;
            chosen.push(id);
        }
        chosen
    }
}
