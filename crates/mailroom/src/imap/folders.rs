//! The commands on folders: CREATE (with RFC 6154 USE), DELETE, RENAME, SUBSCRIBE, LIST (RFC 5258
//! extended, RFC 5819 STATUS, RFC 6154 special use), LSUB, STATUS, and QUOTA (RFC 9208).

use std::collections::HashSet;

use mailroom_proto::imap::command::{List, MailboxName, StatusItem};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use crate::store::{FolderInfo, FolderStatus, StoreError, DELIMITER, INBOX};

/// The special-use attributes a folder may be given (RFC 6154 §2).
const USES: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// What a name that LIST shows is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node<'a> {
    /// A folder.
    Folder(&'a FolderInfo),
    /// A parent that names below it imply and that was never made (or was deleted):
    /// `\Noselect` (RFC 3501 §6.3.8), `\NonExistent` in the extended form (RFC 5258 §3.4).
    Parent,
    /// A name subscribed to that is neither (RFC 5258 §3.1 `SUBSCRIBED`).
    Subscribed,
}

/// A user's hierarchy of names: the folders, the parents they imply, and (for LIST
/// SUBSCRIBED) the names subscribed to; INBOX first, then by name.
struct Tree<'a> {
    names: Vec<(String, Node<'a>)>,
    /// Every name with something below it.
    parents: HashSet<String>,
}

impl<'a> Tree<'a> {
    fn new(folders: &'a [FolderInfo], subscribed: &[String]) -> Self {
        let mut parents = HashSet::new();
        for name in folders
            .iter()
            .map(|f| f.name.as_str())
            .chain(subscribed.iter().map(String::as_str))
        {
            for (i, _) in name.match_indices(DELIMITER) {
                parents.insert(name.split_at(i).0.to_string());
            }
        }
        let mut names: Vec<(String, Node<'a>)> = folders
            .iter()
            .map(|f| (f.name.clone(), Node::Folder(f)))
            .collect();
        let made: HashSet<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        for p in &parents {
            if !made.contains(p.as_str()) {
                names.push((p.clone(), Node::Parent));
            }
        }
        let shown: HashSet<String> = names.iter().map(|(n, _)| n.clone()).collect();
        for s in subscribed {
            if !shown.contains(s) {
                names.push((s.clone(), Node::Subscribed));
            }
        }
        names.sort_by(|a, b| (a.0 != INBOX, &a.0).cmp(&(b.0 != INBOX, &b.0)));
        Tree { names, parents }
    }

    fn has_children(&self, name: &str) -> bool {
        self.parents.contains(name)
    }
}

/// Whether LIST's `pattern` matches `name`, the INBOX part of a name compared without case as
/// the name is (RFC 9051 §5.1: `In%` matches INBOX, as Dovecot has it).
pub(super) fn list_match(pattern: &str, name: &str) -> bool {
    let fold = match name.split_at_checked(INBOX.len()) {
        Some((head, rest)) if head == INBOX && (rest.is_empty() || rest.starts_with(DELIMITER)) => {
            INBOX.len()
        }
        _ => 0,
    };
    glob(pattern, name, fold)
}

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the
/// delimiter (RFC 9051 §6.3.9); the first `fold` characters of the name are compared without
/// ASCII case. Dynamic programming, so no pattern takes more than pattern × name steps.
pub(super) fn glob(pattern: &str, name: &str, fold: usize) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // at[j]: the pattern so far matches the first j characters of the name.
    let mut at = vec![false; n.len() + 1];
    at[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    let extend = j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != DELIMITER);
                    next[j] = at[j] || extend;
                }
            }
            c => {
                for j in 1..=n.len() {
                    let same = n[j - 1] == c || (j <= fold && n[j - 1].eq_ignore_ascii_case(&c));
                    next[j] = at[j - 1] && same;
                }
            }
        }
        at = next;
    }
    at[n.len()]
}

/// The pattern a LIST matches against: the reference and the pattern joined, with `INBOX` in
/// any case at its start made `INBOX` (the name is case-insensitive).
fn full_pattern(reference: &str, pattern: &str) -> String {
    let p = format!("{reference}{pattern}");
    // (Cut where the name may hold any character: `get` is None inside one, RFC 3501 §5.1.)
    match p.split_at_checked(INBOX.len()) {
        Some((head, rest))
            if head.eq_ignore_ascii_case(INBOX)
                && (rest.is_empty() || rest.starts_with(DELIMITER)) =>
        {
            format!("{INBOX}{rest}")
        }
        _ => p,
    }
}

fn status_text(st: &FolderStatus, items: &[StatusItem]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|i| {
            let v = match i {
                StatusItem::Messages => u64::from(st.messages),
                StatusItem::Recent => u64::from(st.recent),
                StatusItem::UidNext => u64::from(st.uid_next),
                StatusItem::UidValidity => u64::from(st.uid_validity),
                StatusItem::Unseen => u64::from(st.unseen),
                StatusItem::Deleted => u64::from(st.deleted),
                StatusItem::Size => st.size,
                StatusItem::HighestModSeq => st.highest_modseq,
            };
            format!("{} {v}", i.name())
        })
        .collect();
    format!("({})", parts.join(" "))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn user_id(&self) -> i64 {
        self.user.as_ref().map_or(0, |u| u.id)
    }

    fn store_failed(&mut self, tag: &str, e: StoreError, what: &str) {
        match e {
            StoreError::Exists(_) => {
                self.tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists")
            }
            StoreError::NotFound(_) => {
                self.tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist")
            }
            StoreError::Conflict(why) => self.tagged(tag, "NO", &format!("[CANNOT] {why}")),
            e => {
                self.temporary(tag, what, &e);
            }
        }
    }

    pub(super) async fn create(&mut self, tag: &str, raw: &MailboxName, uses: Vec<String>) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => return self.tagged(tag, "NO", &why),
        };
        if name.contains(['*', '%']) {
            return self.tagged(
                tag,
                "NO",
                "[CANNOT] * and % are not allowed in mailbox names",
            );
        }
        if name == INBOX {
            return self.tagged(tag, "NO", "[ALREADYEXISTS] INBOX always exists");
        }
        if uses.len() > 1 {
            return self.tagged(tag, "NO", "[USEATTR] Only one special use per mailbox");
        }
        let mut special = None;
        if let Some(u) = uses.first() {
            let Some(known) = USES.iter().find(|k| k.eq_ignore_ascii_case(u)) else {
                return self.tagged(tag, "NO", &format!("[USEATTR] Unknown special use {u}"));
            };
            special = Some(known.to_string());
        }
        match self
            .ctx
            .store
            .folder_create(self.user_id(), name, special)
            .await
        {
            Ok(()) => self.tagged(tag, "OK", "CREATE completed"),
            Err(e) => self.store_failed(tag, e, "create"),
        }
    }

    pub(super) async fn delete(&mut self, tag: &str, raw: &MailboxName) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => return self.tagged(tag, "NO", &why),
        };
        if name == INBOX {
            return self.tagged(tag, "NO", "[CANNOT] INBOX cannot be deleted");
        }
        // A folder with children may be deleted: its messages go, and its name stays as an
        // implied parent, `\Noselect`, while it has children (RFC 3501 §6.3.4). A name that is
        // only a parent does not exist to delete (Dovecot: NONEXISTENT).
        if self
            .selected
            .as_ref()
            .is_some_and(|v| v.folder.name == name)
        {
            self.selected = None;
            self.untagged("OK [CLOSED] The selected mailbox was deleted");
        }
        match self.ctx.store.folder_delete(self.user_id(), name).await {
            Ok(()) => self.tagged(tag, "OK", "DELETE completed"),
            Err(e) => self.store_failed(tag, e, "delete"),
        }
    }

    pub(super) async fn rename(&mut self, tag: &str, from: &MailboxName, to: &MailboxName) {
        let (from, to) = match (self.mailbox_name(from), self.mailbox_name(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(why), _) | (_, Err(why)) => return self.tagged(tag, "NO", &why),
        };
        if to.contains(['*', '%']) {
            return self.tagged(
                tag,
                "NO",
                "[CANNOT] * and % are not allowed in mailbox names",
            );
        }
        if to == INBOX {
            return self.tagged(tag, "NO", "[ALREADYEXISTS] INBOX always exists");
        }
        match self.ctx.store.folder_rename(self.user_id(), from, to).await {
            Ok(()) => {
                self.dirty = true;
                self.tagged(tag, "OK", "RENAME completed")
            }
            Err(e) => self.store_failed(tag, e, "rename"),
        }
    }

    pub(super) async fn subscribe(&mut self, tag: &str, raw: &MailboxName, on: bool) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => return self.tagged(tag, "NO", &why),
        };
        let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
        match self.ctx.store.subscribe(self.user_id(), name, on).await {
            Ok(()) => self.tagged(tag, "OK", &format!("{verb} completed")),
            Err(e) => self.store_failed(tag, e, "subscribe"),
        }
    }

    /// A LIST or LSUB reference or pattern as text; `None` when it is not modified UTF-7 (or
    /// UTF-8 under IMAP4rev2): it then names no folder (as in Dovecot), since no stored name
    /// is written that way.
    fn pattern(&self, raw: &[u8]) -> Option<String> {
        if self.enabled.rev2 {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            mailroom_proto::imap::mutf7::decode(raw)
        }
    }

    pub(super) async fn list(&mut self, tag: &str, l: List) {
        let Some(reference) = self.pattern(&l.reference) else {
            return self.tagged(tag, "OK", "LIST completed");
        };
        let patterns: Vec<String> = l.patterns.iter().filter_map(|p| self.pattern(p)).collect();
        if patterns.is_empty() {
            return self.tagged(tag, "OK", "LIST completed");
        }
        if l.select.is_empty() && patterns.len() == 1 && patterns[0].is_empty() {
            // RFC 9051 §6.3.9: the hierarchy delimiter and the root.
            self.untagged("LIST (\\Noselect) \"/\" \"\"");
            return self.tagged(tag, "OK", "LIST completed");
        }
        let user = self.user_id();
        let (folders, subs) = match (
            self.ctx.store.folders(user).await,
            self.ctx.store.subscriptions(user).await,
        ) {
            (Ok(f), Ok(s)) => (f, s),
            (Err(e), _) | (_, Err(e)) => return self.store_failed(tag, e, "list"),
        };
        let has = |o: &str| l.select.iter().any(|s| s == o);
        let ret = |o: &str| l.returns.iter().any(|s| s == o);
        let (subscribed_only, special_only, recursive) =
            (has("SUBSCRIBED"), has("SPECIAL-USE"), has("RECURSIVEMATCH"));
        // Plain LIST gives every attribute; the extended form those asked for (RFC 5258 §3,
        // RFC 6154 §2: SPECIAL-USE as a selection implies it as a return option).
        let show_children = !l.extended || ret("CHILDREN");
        let show_special = !l.extended || special_only || ret("SPECIAL-USE");
        let show_subscribed = subscribed_only || ret("SUBSCRIBED");
        let full: Vec<String> = patterns
            .iter()
            .map(|p| full_pattern(&reference, p))
            .collect();
        let matches = |name: &str| full.iter().any(|p| list_match(p, name));
        let tree = Tree::new(&folders, if subscribed_only { &subs } else { &[] });
        let mut lines = Vec::new();
        for (name, node) in &tree.names {
            let is_sub = subs.binary_search(name).is_ok();
            let special = match node {
                Node::Folder(f) => f.special_use.as_deref(),
                _ => None,
            };
            let prefix = format!("{name}{DELIMITER}");
            let qualifies = (!subscribed_only || is_sub) && (!special_only || special.is_some());
            let child_info =
                recursive && subscribed_only && subs.iter().any(|s| s.starts_with(&prefix));
            if !matches(name) || !(qualifies || child_info) {
                continue;
            }
            let children = tree.has_children(name);
            let mut attrs: Vec<&str> = Vec::new();
            match node {
                // (RFC 5258 §3.4: \NonExistent implies \Noselect.)
                Node::Parent if l.extended => attrs.push("\\NonExistent"),
                Node::Parent => attrs.push("\\Noselect"),
                Node::Subscribed => attrs.push("\\NonExistent"),
                Node::Folder(_) => {}
            }
            if show_children && children {
                attrs.push("\\HasChildren");
            } else if show_children && matches!(node, Node::Folder(_)) {
                attrs.push("\\HasNoChildren");
            }
            if show_subscribed && is_sub {
                attrs.push("\\Subscribed");
            }
            if let (true, Some(s)) = (show_special, special) {
                attrs.push(s);
            }
            let extra = if child_info && !qualifies {
                " (\"CHILDINFO\" (\"SUBSCRIBED\"))"
            } else {
                ""
            };
            lines.push((
                format!(
                    "LIST ({}) \"/\" {}{extra}",
                    attrs.join(" "),
                    self.name_out(name)
                ),
                matches!(node, Node::Folder(_)).then(|| name.clone()),
            ));
        }
        for (line, name) in lines {
            self.untagged(&line);
            if let (false, Some(name)) = (l.return_status.is_empty(), name) {
                // RFC 5819: STATUS after each selectable mailbox's LIST.
                if let Ok(Some(st)) = self.ctx.store.folder_status(user, name.clone()).await {
                    let text = status_text(&st, &l.return_status);
                    let shown = self.name_out(&name);
                    self.untagged(&format!("STATUS {shown} {text}"));
                }
            }
        }
        self.tagged(tag, "OK", "LIST completed");
    }

    /// LSUB (RFC 3501 §6.3.9): the subscribed names that match; where `%` stops above a
    /// subscribed name whose parent is not subscribed, the parent, as `\Noselect`.
    pub(super) async fn lsub(&mut self, tag: &str, reference: &[u8], pattern: &[u8]) {
        let (Some(reference), Some(pattern)) = (self.pattern(reference), self.pattern(pattern))
        else {
            return self.tagged(tag, "OK", "LSUB completed");
        };
        let p = full_pattern(&reference, &pattern);
        let user = self.user_id();
        let (folders, subs) = match (
            self.ctx.store.folders(user).await,
            self.ctx.store.subscriptions(user).await,
        ) {
            (Ok(f), Ok(s)) => (f, s),
            (Err(e), _) | (_, Err(e)) => return self.store_failed(tag, e, "lsub"),
        };
        let mut shown: Vec<(String, bool)> = Vec::new();
        for s in &subs {
            if list_match(&p, s) {
                shown.push((s.clone(), true));
                continue;
            }
            // The nearest unsubscribed parent the pattern matches.
            for (i, _) in s.match_indices(DELIMITER) {
                let (parent, _) = s.split_at(i);
                if list_match(&p, parent)
                    && subs.binary_search_by(|x| x.as_str().cmp(parent)).is_err()
                {
                    shown.push((parent.to_string(), false));
                    break;
                }
            }
        }
        shown.sort_by(|a, b| (a.0 != INBOX, &a.0).cmp(&(b.0 != INBOX, &b.0)));
        shown.dedup_by(|a, b| a.0 == b.0);
        let mut lines = Vec::new();
        for (name, subscribed) in shown {
            let folder = folders.iter().find(|f| f.name == name);
            let attrs = match folder {
                // (Dovecot gives the special use here too; RFC 6154 names no command.)
                Some(f) if subscribed => f.special_use.clone().unwrap_or_default(),
                _ => "\\Noselect".to_string(),
            };
            lines.push(format!("LSUB ({attrs}) \"/\" {}", self.name_out(&name)));
        }
        for l in lines {
            self.untagged(&l);
        }
        self.tagged(tag, "OK", "LSUB completed");
    }

    pub(super) async fn status(&mut self, tag: &str, raw: &MailboxName, items: &[StatusItem]) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => return self.tagged(tag, "NO", &why),
        };
        if items.contains(&StatusItem::HighestModSeq) {
            self.enabled.condstore = true;
        }
        match self
            .ctx
            .store
            .folder_status(self.user_id(), name.clone())
            .await
        {
            Ok(Some(st)) => {
                let text = status_text(&st, items);
                let shown = self.name_out(&name);
                self.untagged(&format!("STATUS {shown} {text}"));
                self.tagged(tag, "OK", "STATUS completed");
            }
            Ok(None) => self.tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist"),
            Err(e) => self.store_failed(tag, e, "status"),
        }
    }

    /// The user's quota root `""` (one quota over every folder): `(STORAGE used limit)` in
    /// units of 1024 octets (RFC 9208 §5.1), or `None` without a quota.
    async fn quota_line(&mut self) -> Result<Option<String>, StoreError> {
        let Some(address) = self.user.as_ref().map(|u| u.address.clone()) else {
            return Ok(None);
        };
        let Some(crate::store::DirEntry::User(u)) = self.ctx.store.lookup(&address).await? else {
            return Ok(None);
        };
        Ok(u.quota.map(|q| {
            format!(
                "QUOTA \"\" (STORAGE {} {})",
                u.used.div_ceil(1024),
                q / 1024
            )
        }))
    }

    pub(super) async fn get_quota_root(&mut self, tag: &str, raw: &MailboxName) {
        let name = match self.mailbox_name(raw) {
            Ok(n) => n,
            Err(why) => return self.tagged(tag, "NO", &why),
        };
        match self
            .ctx
            .store
            .folder_status(self.user_id(), name.clone())
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return self.tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist"),
            Err(e) => return self.store_failed(tag, e, "getquotaroot"),
        }
        let quota = match self.quota_line().await {
            Ok(q) => q,
            Err(e) => return self.store_failed(tag, e, "getquotaroot"),
        };
        let shown = self.name_out(&name);
        match quota {
            Some(q) => {
                self.untagged(&format!("QUOTAROOT {shown} \"\""));
                self.untagged(&q);
            }
            None => self.untagged(&format!("QUOTAROOT {shown}")),
        }
        self.tagged(tag, "OK", "GETQUOTAROOT completed");
    }

    pub(super) async fn get_quota(&mut self, tag: &str, root: &[u8]) {
        if !root.is_empty() {
            return self.tagged(
                tag,
                "NO",
                "[NONEXISTENT] No such quota root (the only one is \"\")",
            );
        }
        match self.quota_line().await {
            Ok(Some(q)) => {
                self.untagged(&q);
                self.tagged(tag, "OK", "GETQUOTA completed");
            }
            Ok(None) => self.tagged(tag, "NO", "[NONEXISTENT] No quota is set for this user"),
            Err(e) => self.store_failed(tag, e, "getquota"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let cases = [
            ("*", "a/b/c", true),
            ("%", "a/b", false),
            ("%", "INBOX", true),
            ("a/%", "a/b", true),
            ("a/%", "a/b/c", false),
            ("a/*", "a/b/c", true),
            ("*b", "a/b", true),
            ("a%c", "abc", true),
            ("a%c", "a/c", false),
            ("", "a", false),
            (
                "*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob(p, n, 0), want, "{p} {n}");
        }
        // INBOX is matched without case, the rest of the name with it.
        assert!(list_match("In%", "INBOX"));
        assert!(list_match("inbox/%", "INBOX/sub"));
        assert!(!list_match("inbox/S%", "INBOX/sub"));
        assert!(!list_match("in%", "Inside"));
        assert!(list_match("*ü*", "Entwürfe"));
        assert!(list_match("Архив/%", "Архив/2025"));
        assert_eq!(full_pattern("", "inbox"), "INBOX");
        assert_eq!(full_pattern("", "Inbox/x"), "INBOX/x");
        assert_eq!(full_pattern("a/", "%"), "a/%");
        // Names that are not ASCII, cut inside a character before (issue 21).
        assert_eq!(full_pattern("", "Entwürfe"), "Entwürfe");
        assert_eq!(full_pattern("", "Архив/%"), "Архив/%");
        assert_eq!(full_pattern("Inbox", "ü"), "Inboxü");
        assert_eq!(full_pattern("", "inboü"), "inboü");
    }
}
