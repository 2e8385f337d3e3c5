//! A selected folder as one session sees it (RFC 9051 §2.3.1): the message sequence numbers,
//! each message's flags, and the changes others made that the session has yet to be told of.
//!
//! The view is kept in memory (a few dozen octets a message), so FETCH FLAGS and the flag
//! criteria of SEARCH cost no store reads. It is brought up to date with the store's
//! mod-sequences (RFC 7162): one indexed read of what changed since the view's last one.
//! Expunges made elsewhere wait while a command that may not renumber messages runs (FETCH,
//! STORE and SEARCH by sequence number, RFC 9051 §7.5.1).

use std::collections::{BTreeSet, HashSet};

use mailroom_proto::imap::command::{MailboxName, Qresync, SequenceSet};
use mailroom_proto::imap::{encode, mutf7};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use crate::store::{flag, FolderInfo, MailMeta, INBOX};

/// A selected folder.
pub(super) struct View {
    pub folder: FolderInfo,
    pub read_only: bool,
    pub uid_validity: u32,
    /// The messages, in sequence order (ascending UIDs).
    pub mail: Vec<MailMeta>,
    /// The mod-sequence the view is up to date with.
    pub modseq: u64,
    /// The UIDs that are `\Recent` in this session: a new message is recent in exactly one
    /// session, the first to be told of it (RFC 3501 §2.3.2; Dovecot does the same).
    pub recent: BTreeSet<u32>,
    /// The keywords the session has been told of (FLAGS), in order: one it has not seen is
    /// announced before a FETCH carries it (RFC 9051 §7.3.5).
    pub keywords: Vec<String>,
    /// UIDs expunged elsewhere that the session has not yet reported.
    pub pending: Vec<u32>,
}

impl View {
    /// The index of the message with `uid`.
    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.mail.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The largest UID, 0 for an empty folder.
    pub fn last_uid(&self) -> u32 {
        self.mail.last().map_or(0, |m| m.uid)
    }

    /// The indices a set names, ascending. By sequence number, a number past the last message
    /// is an error (RFC 9051 §9 `seq-number`); by UID, absent UIDs are simply not there.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
        saved: Option<&[u32]>,
    ) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        if let SequenceSet::Saved = set {
            let Some(saved) = saved else {
                return Ok(out);
            };
            // `$` holds UIDs; by sequence number it means the same messages.
            out = saved.iter().filter_map(|&u| self.index_of(u)).collect();
            out.sort_unstable();
            return Ok(out);
        }
        if uid {
            for (lo, hi) in set.resolved(self.last_uid()) {
                let start = self.mail.partition_point(|m| m.uid < lo);
                let end = self.mail.partition_point(|m| m.uid <= hi);
                out.extend(start..end);
            }
        } else {
            let n = self.mail.len() as u32;
            for (lo, hi) in set.resolved(n) {
                if hi > n || lo == 0 {
                    return Err(if n == 0 {
                        "Invalid message sequence number: the mailbox is empty".into()
                    } else {
                        format!("Invalid message sequence number (the mailbox has {n} messages)")
                    });
                }
                out.extend((lo - 1) as usize..hi as usize);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Whether the message at `i` is `\Recent` in this session.
    pub fn recent(&self, i: usize) -> bool {
        self.recent.contains(&self.mail[i].uid)
    }

    /// The keywords among `used` the session has not been told of, added to those it has.
    fn learn_keywords<'a>(&mut self, used: impl IntoIterator<Item = &'a String>) -> bool {
        let mut known: HashSet<String> = self
            .keywords
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        let mut new = false;
        for k in used {
            if known.insert(k.to_ascii_lowercase()) {
                self.keywords.push(k.clone());
                new = true;
            }
        }
        new
    }
}

/// `FLAGS (…)` of a message, as FETCH writes them.
pub(super) fn flags_text(m: &MailMeta, recent: bool) -> String {
    // Written straight into one string: FETCH 1:* (FLAGS) runs this once a message.
    let mut out = String::with_capacity(48);
    out.push('(');
    let mut put = |name: &str| {
        if out.len() > 1 {
            out.push(' ');
        }
        out.push_str(name);
    };
    for (bit, name) in [
        (flag::SEEN, "\\Seen"),
        (flag::ANSWERED, "\\Answered"),
        (flag::FLAGGED, "\\Flagged"),
        (flag::DELETED, "\\Deleted"),
        (flag::DRAFT, "\\Draft"),
    ] {
        if m.flags & bit != 0 {
            put(name);
        }
    }
    if recent {
        put("\\Recent");
    }
    for k in &m.keywords {
        put(k);
    }
    out.push(')');
    out
}

/// A message set in its shortest form (`1:3,7`), from ascending numbers.
pub(super) fn compress(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end + 1 {
            i += 1;
            end = nums[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A mailbox name from the client, as stored: modified UTF-7 decoded (UTF-8 once IMAP4rev2
    /// is enabled, RFC 9051 §5.1), `INBOX` in any case made `INBOX`, a trailing delimiter
    /// dropped. `Err` says why the name is not acceptable.
    ///
    /// A name that is not modified UTF-7 (`Tom & Jerry`, raw UTF-8) is refused, as Dovecot
    /// refuses it, rather than taken as it is: LIST would give it back encoded (`Tom &- Jerry`),
    /// and a sync client that compares names would see a folder it did not make, and make
    /// another.
    pub(super) fn mailbox_name(&self, raw: &MailboxName) -> Result<String, String> {
        let name = if self.enabled.rev2 {
            String::from_utf8(raw.clone())
                .ok()
                .ok_or("The mailbox name is not valid UTF-8")?
        } else {
            mutf7::decode(raw).ok_or(
                "The mailbox name is not modified UTF-7 (RFC 3501 5.1.3: other than ASCII as &...-, & as &-)",
            )?
        };
        let name = name.strip_suffix('/').unwrap_or(&name).to_string();
        if name.is_empty() {
            return Err("Empty mailbox name".into());
        }
        if name.chars().any(|c| c.is_control()) {
            return Err("Control characters are not allowed in mailbox names".into());
        }
        if name.chars().count() > 255 {
            return Err("Mailbox name too long (at most 255 characters)".into());
        }
        if name.starts_with('/') || name.contains("//") {
            return Err("Mailbox names may not have empty levels".into());
        }
        if name.eq_ignore_ascii_case(INBOX) {
            return Ok(INBOX.to_string());
        }
        Ok(name)
    }

    /// A stored mailbox name as the client reads it (an IMAP string).
    pub(super) fn name_out(&self, name: &str) -> String {
        let text = if self.enabled.rev2 {
            name.to_string()
        } else {
            mutf7::encode(name)
        };
        let mut out = Vec::new();
        encode::astring(&mut out, text.as_bytes());
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `FLAGS (…)` and `OK [PERMANENTFLAGS (…)]` for a folder with these keywords: `\\*` only
    /// while it may define more (RFC 9051 §7.1, `imap.max_keywords_per_folder`), nothing
    /// permanent in a read-only one.
    pub(super) fn flags_lines(&self, keywords: &[String], read_only: bool) -> [String; 2] {
        let mut kw = String::new();
        for k in keywords {
            kw.push(' ');
            kw.push_str(k);
        }
        let system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
        let permanent = if read_only {
            "OK [PERMANENTFLAGS ()] Read-only mailbox".to_string()
        } else {
            let more = keywords.len() < self.ctx.config.imap.max_keywords_per_folder as usize;
            let star = if more { " \\*" } else { "" };
            format!("OK [PERMANENTFLAGS ({system}{kw}{star})] Flags permitted")
        };
        [format!("FLAGS ({system}{kw})"), permanent]
    }

    /// Announces the keywords among `used` that the session has not been told of, with an
    /// untagged FLAGS and PERMANENTFLAGS, before a FETCH carries them (RFC 3501 §7.2.6, RFC
    /// 9051 §7.3.5): a client may otherwise not know the keyword it is shown.
    pub(super) fn announce_keywords<'a>(&mut self, used: impl IntoIterator<Item = &'a String>) {
        let Some(v) = self.selected.as_mut() else {
            return;
        };
        if !v.learn_keywords(used) {
            return;
        }
        let (keywords, read_only) = (v.keywords.clone(), v.read_only);
        for line in self.flags_lines(&keywords, read_only) {
            self.untagged(&line);
        }
    }

    /// SELECT and EXAMINE (RFC 9051 §6.3.2, RFC 7162 §3.1.8 and §3.2.5).
    pub(super) async fn select(
        &mut self,
        tag: &str,
        raw: &MailboxName,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) {
        // Selecting closes the folder selected before, without expunging (RFC 9051 §6.3.2).
        self.ahead.clear();
        if self.selected.take().is_some() {
            self.untagged("OK [CLOSED] Previous mailbox closed");
        }
        if qresync.is_some() && !self.enabled.qresync {
            self.tagged(tag, "BAD", "ENABLE QRESYNC first (RFC 7162 §3.2.3)");
            return;
        }
        if condstore {
            self.enabled.condstore = true;
        }
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => {
                self.tagged(tag, "NO", &why);
                return;
            }
        };
        let Some(user) = self.user.as_ref().map(|u| u.id) else {
            return;
        };
        let claim = !read_only && !self.enabled.rev2;
        let sel = match self
            .ctx
            .store
            .folder_select(user, name.clone(), claim)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist");
                return;
            }
            Err(e) => {
                self.temporary(tag, "select", &e);
                return;
            }
        };
        self.poll_changes();
        self.dirty = true;
        let st = &sel.status;
        // IMAP4rev2 has no \Recent; EXAMINE shows it without taking it (RFC 3501 §6.3.2).
        let recent: BTreeSet<u32> = if self.enabled.rev2 {
            BTreeSet::new()
        } else {
            sel.mail
                .iter()
                .map(|m| m.uid)
                .filter(|&u| u >= sel.recent_from)
                .collect()
        };
        for line in self.flags_lines(&sel.keywords, read_only) {
            self.untagged(&line);
        }
        self.untagged(&format!("{} EXISTS", sel.mail.len()));
        if !self.enabled.rev2 {
            self.untagged(&format!("{} RECENT", recent.len()));
            if let Some(i) = sel.mail.iter().position(|m| m.flags & flag::SEEN == 0) {
                self.untagged(&format!("OK [UNSEEN {}] First unseen", i + 1));
            }
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", st.uid_validity));
        self.untagged(&format!("OK [UIDNEXT {}] Predicted next UID", st.uid_next));
        if self.enabled.condstore {
            self.untagged(&format!("OK [HIGHESTMODSEQ {}] Highest", st.highest_modseq));
        }
        if self.enabled.rev2 {
            let shown = self.name_out(&name);
            self.untagged(&format!("LIST () \"/\" {shown}"));
        }
        let view = View {
            folder: st.info.clone(),
            read_only,
            uid_validity: st.uid_validity,
            modseq: st.highest_modseq,
            recent,
            keywords: sel.keywords,
            mail: sel.mail,
            pending: Vec::new(),
        };
        let resync = qresync.filter(|q| q.uid_validity == view.uid_validity);
        self.selected = Some(view);
        if let Some(q) = resync {
            self.qresync(&q).await;
        }
        let code = if read_only {
            "[READ-ONLY]"
        } else {
            "[READ-WRITE]"
        };
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        self.tagged(tag, "OK", &format!("{code} {verb} completed"));
    }

    /// QRESYNC on SELECT (RFC 7162 §3.2.5.1): what was expunged and changed since the client's
    /// mod-sequence.
    async fn qresync(&mut self, q: &Qresync) {
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        let changes = match self.ctx.store.folder_changes(v.folder.id, q.modseq).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "qresync failed");
                return;
            }
        };
        let last = v.last_uid().max(1);
        let mut lines = Vec::new();
        let vanished = match &changes.present {
            // The history no longer reaches back to the client's mod-sequence: every UID it
            // may know that is not in the folder (RFC 7162 §3.2.5.1).
            Some(present) => {
                super::vanished::known_gone(present, v, changes.uid_next, q.known_uids.as_ref())
            }
            None => {
                let mut gone: Vec<u32> = changes
                    .expunged
                    .iter()
                    .copied()
                    .filter(|&u| q.known_uids.as_ref().is_none_or(|k| k.contains(u, last)))
                    .filter(|&u| v.index_of(u).is_none())
                    .collect();
                gone.sort_unstable();
                compress(&gone)
            }
        };
        if !vanished.is_empty() {
            lines.push(format!("VANISHED (EARLIER) {vanished}"));
        }
        self.announce_keywords(changes.changed.iter().flat_map(|m| &m.keywords));
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        for m in &changes.changed {
            if let Some(i) = v.index_of(m.uid) {
                let m = &v.mail[i];
                lines.push(format!(
                    "{} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                    i + 1,
                    m.uid,
                    flags_text(m, v.recent(i) && !self.enabled.rev2),
                    m.modseq
                ));
            }
        }
        for l in lines {
            self.untagged(&l);
        }
    }

    /// Brings the selected view up to date and reports what changed (RFC 9051 §7.4, §7.5):
    /// new messages as EXISTS, flag changes as FETCH, and, when `expunge` allows, expunged
    /// messages as EXPUNGE (VANISHED with QRESYNC).
    pub(super) async fn sync(&mut self, expunge: bool) {
        self.poll_changes();
        if self.selected.is_none() {
            self.dirty = false;
            return;
        }
        if self.dirty {
            self.dirty = false;
            let (id, since) = match self.selected.as_ref() {
                Some(v) => (v.folder.id, v.modseq),
                None => return,
            };
            let changes = match self.ctx.store.folder_changes(id, since).await {
                Ok(c) => c,
                Err(crate::store::StoreError::NotFound(_)) => {
                    self.untagged("BYE [UNAVAILABLE] The selected mailbox was deleted");
                    self.selected = None;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading changes failed");
                    self.dirty = true;
                    return;
                }
            };
            let recent_from = self.claim_recent(&changes).await;
            self.apply(changes, recent_from);
        }
        if expunge {
            self.report_expunges();
        }
    }

    /// The first of the new messages in `changes` that are `\\Recent` in this session: those
    /// no other session was told of first (the store's mark moves past them at once), or none
    /// (`u32::MAX`) for a session that sees no `\\Recent` (EXAMINE, IMAP4rev2).
    async fn claim_recent(&mut self, changes: &crate::store::Changes) -> u32 {
        let Some(v) = self.selected.as_ref() else {
            return u32::MAX;
        };
        let last = v.last_uid();
        let newest = changes
            .changed
            .iter()
            .map(|m| m.uid)
            .filter(|&u| u > last)
            .max();
        let (Some(newest), false, false) = (newest, v.read_only, self.enabled.rev2) else {
            return u32::MAX;
        };
        match self
            .ctx
            .store
            .folder_claim_recent(v.folder.id, newest.saturating_add(1))
            .await
        {
            Ok(from) => from,
            Err(e) => {
                tracing::warn!(error = %e, "claiming \\Recent failed");
                u32::MAX
            }
        }
    }

    fn apply(&mut self, changes: crate::store::Changes, recent_from: u32) {
        let rev2 = self.enabled.rev2;
        let condstore = self.enabled.condstore;
        self.announce_keywords(changes.changed.iter().flat_map(|m| &m.keywords));
        let Some(v) = self.selected.as_mut() else {
            return;
        };
        for uid in changes.expunged {
            if v.index_of(uid).is_some() && !v.pending.contains(&uid) {
                v.pending.push(uid);
            }
        }
        // The history no longer reaches back to the view's mod-sequence: what the view has and
        // the folder no longer does was expunged.
        if let Some(present) = &changes.present {
            for m in &v.mail {
                if present.binary_search(&m.uid).is_err() && !v.pending.contains(&m.uid) {
                    v.pending.push(m.uid);
                }
            }
        }
        let before = v.mail.len();
        let mut lines = Vec::new();
        let mut new_recent = 0;
        for m in changes.changed {
            if let Some(i) = v.index_of(m.uid) {
                if v.pending.contains(&m.uid) {
                    continue;
                }
                let old = &v.mail[i];
                if old.flags == m.flags && old.keywords == m.keywords && old.modseq == m.modseq {
                    continue;
                }
                let changed_flags = old.flags != m.flags || old.keywords != m.keywords;
                v.mail[i] = m;
                if changed_flags || condstore {
                    let m = &v.mail[i];
                    // (The UID goes with it where CONDSTORE is on, RFC 7162 §3.2.4; without,
                    // as Dovecot, only the flags.)
                    let (uid, modseq) = if condstore {
                        (format!("UID {} ", m.uid), format!(" MODSEQ ({})", m.modseq))
                    } else {
                        (String::new(), String::new())
                    };
                    lines.push(format!(
                        "{} FETCH ({uid}FLAGS {}{modseq})",
                        i + 1,
                        flags_text(m, v.recent(i) && !rev2)
                    ));
                }
            } else if m.uid > v.last_uid() {
                if m.uid >= recent_from {
                    new_recent += 1;
                    v.recent.insert(m.uid);
                }
                v.mail.push(m);
            }
        }
        v.modseq = v.modseq.max(changes.highest_modseq);
        let added = v.mail.len() > before;
        let total = v.mail.len();
        let recent = v.recent.len();
        if added {
            self.untagged(&format!("{total} EXISTS"));
            if !rev2 && new_recent > 0 {
                self.untagged(&format!("{recent} RECENT"));
            }
        }
        for l in lines {
            self.untagged(&l);
        }
    }

    /// Reports the expunges waiting in the view and renumbers it.
    pub(super) fn report_expunges(&mut self) {
        let qresync = self.enabled.qresync;
        let rev2 = self.enabled.rev2;
        let Some(v) = self.selected.as_mut() else {
            return;
        };
        if v.pending.is_empty() {
            return;
        }
        let mut gone = std::mem::take(&mut v.pending);
        gone.sort_unstable();
        let mut lines = Vec::new();
        let mut recent_gone = false;
        // Highest first, so that each number is right when it is read (RFC 9051 §7.5.1).
        for &uid in gone.iter().rev() {
            if let Some(i) = v.index_of(uid) {
                recent_gone |= v.recent.remove(&uid);
                v.mail.remove(i);
                if !qresync {
                    lines.push(format!("{} EXPUNGE", i + 1));
                }
            }
        }
        if qresync {
            lines.push(format!("VANISHED {}", compress(&gone)));
        }
        if recent_gone && !rev2 {
            // The \Recent count changed (RFC 3501 §7.3.2).
            lines.push(format!("{} RECENT", v.recent.len()));
        }
        for l in lines {
            self.untagged(&l);
        }
    }

    /// CLOSE (expunging silently, RFC 9051 §6.4.1) and UNSELECT (RFC 3691).
    pub(super) async fn close(&mut self, tag: &str, expunge: bool) {
        let Some(v) = self.selected.take() else {
            return;
        };
        if expunge && !v.read_only {
            if let Err(e) = self.ctx.store.mail_expunge(v.folder.id, None).await {
                self.selected = Some(v);
                return self.temporary(tag, "expunge at CLOSE", &e);
            }
        }
        self.ahead.clear();
        let verb = if expunge { "CLOSE" } else { "UNSELECT" };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_compressed() {
        assert_eq!(compress(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compress(&[4]), "4");
        assert_eq!(compress(&[]), "");
    }
}
