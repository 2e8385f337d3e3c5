//! The commands that change messages: STORE (RFC 9051 §6.4.6, RFC 7162 UNCHANGEDSINCE), COPY
//! and MOVE (RFC 6851) with COPYUID, EXPUNGE and UID EXPUNGE (RFC 4315), APPEND with
//! APPENDUID and MULTIAPPEND (RFC 3502).

use mailroom_proto::imap::command::{
    AppendMessage, DateTime, Flag, MailboxName, SequenceSet, Store, StoreMode,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use super::view::{compress, flags_text};
use crate::model::Content;
use crate::store::spool::Received;
use crate::store::{flag, FlagOp, NewMail, StoreError};

/// System flags as bits and keywords, from a flag list; `Err` for a flag no message may carry.
fn split_flags(flags: &[Flag]) -> Result<(u8, Vec<String>), String> {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => bits |= flag::SEEN,
            Flag::Answered => bits |= flag::ANSWERED,
            Flag::Flagged => bits |= flag::FLAGGED,
            Flag::Deleted => bits |= flag::DELETED,
            Flag::Draft => bits |= flag::DRAFT,
            // \Recent is the server's to set (RFC 3501 §2.3.2): ignored.
            Flag::Recent => {}
            Flag::Extension(name) => return Err(format!("Invalid system flag \\{name}")),
            Flag::Keyword(k) => keywords.push(k.clone()),
        }
    }
    Ok((bits, keywords))
}

fn to_utc(d: DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let date = chrono::NaiveDate::from_ymd_opt(d.date.year, d.date.month, d.date.day)?;
    let naive = date.and_hms_opt(d.hour, d.minute, d.second.min(59))?;
    let utc = naive - chrono::Duration::minutes(i64::from(d.zone_minutes));
    Some(chrono::DateTime::from_naive_utc_and_offset(
        utc,
        chrono::Utc,
    ))
}

/// Messages a STORE changes in one transaction of the store.
const STORE_CHUNK: usize = 2000;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Ends STORE, APPEND, COPY or MOVE that the store refused: `TRYCREATE` for a folder that
    /// is not there (RFC 9051 §6.3.12, §6.4.7), `OVERQUOTA` past the quota (RFC 9208 §4.3),
    /// `LIMIT` past the keyword bounds (RFC 5530), and otherwise a temporary failure.
    fn refused(&mut self, tag: &str, what: &str, e: StoreError) {
        match e {
            StoreError::NotFound(_) => self.tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist"),
            StoreError::OverQuota(why) => self.tagged(tag, "NO", &format!("[OVERQUOTA] {why}")),
            StoreError::Limit(why) => self.tagged(tag, "NO", &format!("[LIMIT] {why}")),
            e => self.temporary(tag, what, &e),
        }
    }

    pub(super) async fn store(&mut self, tag: &str, s: Store) {
        self.sync(s.uid).await;
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        if v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] The mailbox is read-only (EXAMINE)");
            return;
        }
        let saved = self.saved.clone();
        let indices = match v.resolve(&s.set, s.uid, saved.as_deref()) {
            Ok(i) => i,
            Err(why) => {
                self.tagged(tag, "BAD", &why);
                return;
            }
        };
        let (bits, keywords) = match split_flags(&s.flags) {
            Ok(f) => f,
            Err(why) => {
                self.tagged(tag, "BAD", &why);
                return;
            }
        };
        if s.unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let uids: Vec<u32> = indices.iter().map(|&i| v.mail[i].uid).collect();
        let folder = v.folder.id;
        let op = match s.mode {
            StoreMode::Replace => FlagOp::Replace,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        // In chunks, each its own transaction: a change to many messages never holds the
        // store's writer (and with it every delivery) for long. (STORE need not be atomic
        // across messages: each message's change is, RFC 9051 §6.4.6.)
        let mut stored = crate::store::Stored::default();
        for chunk in uids.chunks(STORE_CHUNK) {
            match self
                .ctx
                .store
                .mail_store(
                    folder,
                    chunk.to_vec(),
                    op,
                    bits,
                    keywords.clone(),
                    s.unchanged_since,
                )
                .await
            {
                Ok(st) => {
                    stored.changed.extend(st.changed);
                    stored.modified.extend(st.modified);
                }
                Err(e) => return self.refused(tag, "store", e),
            }
        }
        self.announce_keywords(stored.changed.iter().flat_map(|m| &m.keywords));
        let condstore = self.enabled.condstore;
        let rev2 = self.enabled.rev2;
        let mut lines = Vec::new();
        let Some(v) = self.selected.as_mut() else {
            return;
        };
        for m in &stored.changed {
            if let Some(i) = v.index_of(m.uid) {
                v.mail[i] = m.clone();
            }
        }
        for &uid in &uids {
            let Some(i) = v.index_of(uid) else { continue };
            if stored.modified.contains(&uid) {
                continue;
            }
            let changed = stored.changed.iter().any(|m| m.uid == uid);
            // .SILENT leaves out the reply for the change itself, but with CONDSTORE the new
            // mod-sequence is always reported, alone (RFC 7162 §3.1.3's example).
            if s.silent && !(condstore && changed) {
                continue;
            }
            let m = &v.mail[i];
            let mut items = Vec::new();
            if s.uid {
                items.push(format!("UID {}", m.uid));
            }
            if !s.silent {
                items.push(format!("FLAGS {}", flags_text(m, v.recent(i) && !rev2)));
            }
            if condstore {
                items.push(format!("MODSEQ ({})", m.modseq));
            }
            let mut line = format!("{} FETCH ({}", i + 1, items.join(" "));
            line.push(')');
            lines.push(line);
        }
        v.modseq = v
            .modseq
            .max(stored.changed.iter().map(|m| m.modseq).max().unwrap_or(0));
        let modified: Vec<u32> = stored
            .modified
            .iter()
            .filter_map(|&u| {
                let i = v.index_of(u)?;
                Some(if s.uid { u } else { i as u32 + 1 })
            })
            .collect();
        for l in lines {
            self.untagged(&l);
        }
        let verb = if s.uid { "UID STORE" } else { "STORE" };
        if modified.is_empty() {
            self.tagged(tag, "OK", &format!("{verb} completed"));
        } else {
            let mut m = modified;
            m.sort_unstable();
            self.tagged(
                tag,
                "OK",
                &format!("[MODIFIED {}] Conditional STORE failed", compress(&m)),
            );
        }
    }

    pub(super) async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        raw: &MailboxName,
        move_: bool,
    ) {
        self.sync(uid).await;
        let verb = match (uid, move_) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        if move_ && v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] The mailbox is read-only (EXAMINE)");
            return;
        }
        let saved = self.saved.clone();
        let indices = match v.resolve(set, uid, saved.as_deref()) {
            Ok(i) => i,
            Err(why) => {
                self.tagged(tag, "BAD", &why);
                return;
            }
        };
        let uids: Vec<u32> = indices.iter().map(|&i| v.mail[i].uid).collect();
        let folder = v.folder.id;
        let to = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => {
                self.tagged(tag, "NO", &why);
                return;
            }
        };
        let user = self.user.as_ref().map_or(0, |u| u.id);
        if uids.is_empty() {
            self.tagged(tag, "OK", &format!("{verb} completed (no messages)"));
            return;
        }
        let copied = match self
            .ctx
            .store
            .mail_copy(user, folder, uids, to, move_)
            .await
        {
            Ok(c) => c,
            Err(e) => return self.refused(tag, "copy", e),
        };
        let code = if copied.uids.is_empty() {
            String::new()
        } else {
            let src: Vec<String> = copied.uids.iter().map(|p| p.0.to_string()).collect();
            let dst: Vec<String> = copied.uids.iter().map(|p| p.1.to_string()).collect();
            format!(
                "[COPYUID {} {} {}] ",
                copied.uid_validity,
                src.join(","),
                dst.join(",")
            )
        };
        if move_ {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
            self.untagged(&format!("OK {code}Moved"));
            self.dirty = true;
            self.sync(true).await;
            self.tagged(tag, "OK", &format!("{verb} completed"));
        } else {
            self.dirty = true;
            self.sync(uid).await;
            self.tagged(tag, "OK", &format!("{code}{verb} completed"));
        }
    }

    pub(super) async fn expunge(&mut self, tag: &str, uids: Option<SequenceSet>) {
        self.sync(true).await;
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        if v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] The mailbox is read-only (EXAMINE)");
            return;
        }
        let folder = v.folder.id;
        let chosen = uids.as_ref().map(|set| {
            v.resolve(set, true, self.saved.as_deref())
                .unwrap_or_default()
                .into_iter()
                .map(|i| v.mail[i].uid)
                .collect::<Vec<u32>>()
        });
        if let Err(e) = self.ctx.store.mail_expunge(folder, chosen).await {
            return self.temporary(tag, "expunge", &e);
        }
        self.dirty = true;
        self.sync(true).await;
        let verb = if uids.is_some() {
            "UID EXPUNGE"
        } else {
            "EXPUNGE"
        };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }

    pub(super) async fn append(
        &mut self,
        tag: &str,
        raw: &MailboxName,
        messages: Vec<AppendMessage>,
    ) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => {
                self.tagged(tag, "NO", &why);
                return;
            }
        };
        let mut mail = Vec::with_capacity(messages.len());
        // The guards of the texts streamed to the spool: each file is deleted unless the
        // append commits.
        let mut guards = Vec::new();
        for m in messages {
            // A message streamed as it arrived left `{0}` in the command (see
            // `Session::stream_literal`); its text is the next of those streamed.
            let text = if !m.data.is_empty() {
                Content::Memory(m.data)
            } else {
                match self.streamed.pop_front() {
                    Some(Ok(Received::Memory(t))) if !t.is_empty() => Content::Memory(t),
                    Some(Ok(Received::File { file, guard, .. })) => {
                        guards.push(guard);
                        Content::Spooled {
                            prefix: Vec::new(),
                            file,
                        }
                    }
                    Some(Err(e)) => {
                        let full = e.raw_os_error() == Some(28);
                        tracing::error!(error = %e, "an APPEND could not be written to the spool");
                        return self.tagged(
                            tag,
                            "NO",
                            if full {
                                "[OVERQUOTA] The server's disk is full: try again later"
                            } else {
                                super::session::TEMPORARY
                            },
                        );
                    }
                    _ => {
                        self.tagged(tag, "NO", "An empty message cannot be appended");
                        return;
                    }
                }
            };
            let (flags, keywords) = match split_flags(&m.flags) {
                Ok(f) => f,
                Err(why) => {
                    self.tagged(tag, "BAD", &why);
                    return;
                }
            };
            let internal_date = match m.date {
                Some(d) => match to_utc(d) {
                    Some(t) => t,
                    None => {
                        self.tagged(tag, "BAD", "Invalid date-time");
                        return;
                    }
                },
                None => chrono::Utc::now(),
            };
            mail.push(NewMail {
                text,
                flags,
                keywords,
                internal_date,
            });
        }
        let user = self.user.as_ref().map_or(0, |u| u.id);
        let copied = match self.ctx.store.mail_append(user, name, mail).await {
            Ok(c) => c,
            Err(e) => return self.refused(tag, "append", e),
        };
        // Committed: the files are the store's now.
        for g in guards {
            drop(g.handed_over());
        }
        self.dirty = true;
        self.sync(false).await;
        let uids: Vec<u32> = copied.uids.iter().map(|p| p.1).collect();
        self.tagged(
            tag,
            "OK",
            &format!(
                "[APPENDUID {} {}] APPEND completed",
                copied.uid_validity,
                compress(&uids)
            ),
        );
    }
}
