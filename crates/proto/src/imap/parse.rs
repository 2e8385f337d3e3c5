//! Parsing one framed command (see [`super::frame`]) into a [`Command`] (RFC 9051 §9 grammar,
//! with RFC 3501's forms and the extensions' additions). Pure; every malformed input gets an
//! [`Error`] whose text is fit for the tagged `BAD` reply.

use super::command::*;
use super::encode::{is_astring_char, is_atom_char};
use super::section::{Section, SectionText};

/// Deepest nesting of parentheses (SEARCH's `OR`/`NOT`/lists) a command may use.
pub const MAX_DEPTH: usize = 32;

/// Why a command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Error {
    /// The tag, when the command got that far (a reply without one is untagged `* BAD`).
    pub tag: Option<String>,
    /// What was wrong, for the client.
    pub reason: String,
}

/// Parses one whole command (its final CRLF included or not).
pub fn command(input: &[u8]) -> Result<Command, Error> {
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    let tag = p.tag().map_err(|reason| Error { tag: None, reason })?;
    let body = p.body().map_err(|reason| Error {
        tag: Some(tag.clone()),
        reason,
    })?;
    Ok(Command { tag, body })
}

/// The tag of a command that could not be parsed as a whole (for replying to a refused
/// literal), if its first word is a valid tag.
pub fn tag_of(input: &[u8]) -> Option<String> {
    Parser {
        s: input,
        i: 0,
        depth: 0,
    }
    .tag()
    .ok()
}

type R<T> = Result<T, String>;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        matches!(&self.s[self.i..], b"" | b"\r\n" | b"\n")
    }

    fn end(&mut self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(format!(
                "unexpected text at the end of the command: {}",
                self.show_rest()
            ))
        }
    }

    fn show_rest(&self) -> String {
        let rest = &self.s[self.i..];
        let rest = rest.strip_suffix(b"\r\n").unwrap_or(rest);
        let mut t = String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned();
        if rest.len() > 40 {
            t.push('…');
        }
        format!("\"{t}\"")
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else if self.at_end() {
            Err(format!("the command ends where {what} was expected"))
        } else {
            Err(format!("expected {what} at {}", self.show_rest()))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "a space")
    }

    fn tag(&mut self) -> R<String> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if is_astring_char(b) && b != b'+') {
            self.i += 1;
        }
        if self.i == start {
            return Err("a command begins with a tag, then a space and the command".into());
        }
        let tag = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        if self.at_end() {
            return Err("missing command".into());
        }
        self.sp()
            .map_err(|_| "invalid characters in the tag".to_string())?;
        Ok(tag)
    }

    /// An atom, upper-cased.
    fn atom(&mut self) -> R<String> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if is_atom_char(b)) {
            self.i += 1;
        }
        if self.i == start {
            return Err(if self.at_end() {
                "the command ends where a word was expected".into()
            } else {
                format!("expected a word at {}", self.show_rest())
            });
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_uppercase())
    }

    /// The upper-cased word at the cursor without taking it (letters, digits, `.`, `-`).
    fn peek_word(&self) -> String {
        let rest = &self.s[self.i..];
        let n = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'$'))
            .unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..n]).to_ascii_uppercase()
    }

    fn keyword(&mut self, word: &str) -> bool {
        let end = self.i + word.len();
        if self.s.len() >= end && self.s[self.i..end].eq_ignore_ascii_case(word.as_bytes()) {
            let next = self.s.get(end).copied();
            if next.is_none_or(|b| !is_atom_char(b) || b == b'[') {
                self.i = end;
                return true;
            }
        }
        false
    }

    fn number(&mut self) -> R<u64> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a number at {}", self.show_rest()));
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| "number too large".to_string())
    }

    fn nz_number(&mut self) -> R<u32> {
        let n = self.number()?;
        match u32::try_from(n) {
            Ok(0) => Err("0 is not a valid number here".into()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("{n} is too large (at most {})", u32::MAX)),
        }
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b @ (b'"' | b'\\')) => {
                            out.push(b);
                            self.i += 1;
                        }
                        _ => return Err("a quoted string may escape only \" and \\".into()),
                    }
                }
                Some(b'\r' | b'\n') | None => {
                    return Err("unterminated quoted string".into());
                }
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }

    /// A literal (`{n}` or `{n+}` CRLF octets) or, with `binary`, a literal8 (`~{n}`).
    fn literal(&mut self, binary: bool) -> R<(Vec<u8>, bool)> {
        let is8 = self.eat(b'~');
        if is8 && !binary {
            return Err("a literal8 (~{n}) is allowed only for APPEND and binary data".into());
        }
        self.expect(b'{', "a literal")?;
        let n = self.number()?;
        self.eat(b'+');
        self.expect(b'}', "'}'")?;
        self.eat(b'\r');
        self.expect(b'\n', "the line end after a literal's length")?;
        let n = usize::try_from(n).map_err(|_| "literal too large".to_string())?;
        let end = self.i.checked_add(n).filter(|&e| e <= self.s.len());
        let Some(end) = end else {
            return Err("the literal is shorter than announced".into());
        };
        let data = self.s[self.i..end].to_vec();
        self.i = end;
        if !is8 && data.contains(&0) {
            return Err("a literal may not contain NUL octets (use literal8 ~{n})".into());
        }
        Ok((data, is8))
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal(false)?.0),
            _ => Err(format!("expected a string at {}", self.show_rest())),
        }
    }

    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if is_astring_char(b)) {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(if self.at_end() {
                        "the command ends where an argument was expected".into()
                    } else {
                        format!("expected an argument at {}", self.show_rest())
                    });
                }
                Ok(self.s[start..self.i].to_vec())
            }
        }
    }

    fn nstring(&mut self) -> R<Option<Vec<u8>>> {
        if self.keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// A LIST pattern: an astring whose atom form also takes `%`, `*` and `]`.
    fn list_mailbox(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if is_astring_char(b) || b == b'%' || b == b'*')
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!(
                        "expected a mailbox pattern at {}",
                        self.show_rest()
                    ));
                }
                Ok(self.s[start..self.i].to_vec())
            }
        }
    }

    fn open(&mut self, what: &str) -> R<()> {
        self.expect(b'(', what)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        Ok(())
    }

    fn close(&mut self) -> R<()> {
        self.expect(b')', "')'")?;
        self.depth -= 1;
        Ok(())
    }

    /// `(` item *(SP item) `)`, possibly empty when `empty_ok`.
    fn list_of<T>(&mut self, empty_ok: bool, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.open("'('")?;
        let mut out = Vec::new();
        if self.peek() == Some(b')') {
            if !empty_ok {
                return Err("an empty list is not allowed here".into());
            }
        } else {
            loop {
                out.push(item(self)?);
                if !self.eat(b' ') {
                    break;
                }
            }
        }
        self.close()?;
        Ok(out)
    }

    fn flag(&mut self) -> R<Flag> {
        if self.eat(b'\\') {
            if self.eat(b'*') {
                return Err("\\* is not a flag".into());
            }
            let name = self.atom_raw()?;
            return Ok(Flag::system(&name));
        }
        Ok(Flag::Keyword(self.atom_raw()?))
    }

    /// An atom as written (keywords keep their case).
    fn atom_raw(&mut self) -> R<String> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if is_atom_char(b)) {
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a flag at {}", self.show_rest()));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.list_of(true, |p| p.flag())
    }

    fn seq_num(&mut self) -> R<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Largest)
        } else {
            Ok(SeqNum::Value(self.nz_number()?))
        }
    }

    fn sequence_set(&mut self) -> R<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let a = self
                .seq_num()
                .map_err(|e| format!("invalid sequence set: {e}"))?;
            let b = if self.eat(b':') {
                self.seq_num()
                    .map_err(|e| format!("invalid sequence set: {e}"))?
            } else {
                a
            };
            ranges.push((a, b));
            if !self.eat(b',') {
                break;
            }
        }
        Ok(SequenceSet::Ranges(ranges))
    }

    fn mailbox(&mut self) -> R<MailboxName> {
        self.astring()
    }

    fn date(&mut self) -> R<Date> {
        let quoted = self.eat(b'"');
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'-') {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        let d = parse_date(text).ok_or_else(|| format!("invalid date \"{text}\" (d-Mon-yyyy)"))?;
        if quoted {
            self.expect(b'"', "'\"' after the date")?;
        }
        Ok(d)
    }

    fn date_time(&mut self) -> R<DateTime> {
        let raw = self.quoted()?;
        let text = String::from_utf8_lossy(&raw);
        parse_date_time(&text)
            .ok_or_else(|| format!("invalid date-time \"{text}\" (\"dd-Mon-yyyy hh:mm:ss +zzzz\")"))
    }

    fn body(&mut self) -> R<Body> {
        let name = self.atom()?;
        let body = match name.as_str() {
            "CAPABILITY" => Body::Capability,
            "NOOP" => Body::Noop,
            "LOGOUT" => Body::Logout,
            "STARTTLS" => Body::StartTls,
            "NAMESPACE" => Body::Namespace,
            "CHECK" => Body::Check,
            "CLOSE" => Body::Close,
            "UNSELECT" => Body::Unselect,
            "IDLE" => Body::Idle,
            "COMPRESS" => {
                self.sp()?;
                Body::Compress(self.atom()?)
            }
            "EXPUNGE" => Body::Expunge(None),
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.atom()?;
                let initial = if self.eat(b' ') {
                    let start = self.i;
                    while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                    {
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err("invalid initial response (base64 or =)".into());
                    }
                    Some(self.s[start..self.i].to_vec())
                } else {
                    None
                };
                Body::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                Body::Login { user, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while self.eat(b' ') {
                    caps.push(self.atom()?);
                }
                if caps.is_empty() {
                    return Err("ENABLE needs at least one capability".into());
                }
                Body::Enable(caps)
            }
            "ID" => {
                self.sp()?;
                if self.keyword("NIL") {
                    Body::Id(None)
                } else {
                    let fields = self.list_of(true, |p| {
                        let k = p.string()?;
                        p.sp()?;
                        let v = p.nstring()?;
                        Ok((k, v))
                    })?;
                    if fields.len() > 30 {
                        return Err("ID takes at most 30 fields (RFC 2971 §3.3)".into());
                    }
                    Body::Id(Some(fields))
                }
            }
            "SELECT" | "EXAMINE" => self.select(name == "EXAMINE")?,
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.eat(b' ') {
                    self.open("'('")?;
                    if !self.keyword("USE") {
                        return Err("the only CREATE parameter is USE (RFC 6154)".into());
                    }
                    self.sp()?;
                    special_use = self.list_of(true, |p| {
                        p.expect(b'\\', "a special-use attribute (\\Sent…)")?;
                        Ok(format!("\\{}", p.atom_raw()?))
                    })?;
                    self.close()?;
                }
                Body::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let m = self.mailbox()?;
                match name.as_str() {
                    "DELETE" => Body::Delete(m),
                    "SUBSCRIBE" => Body::Subscribe(m),
                    "UNSUBSCRIBE" => Body::Unsubscribe(m),
                    _ => Body::GetQuotaRoot(m),
                }
            }
            "GETQUOTA" => {
                self.sp()?;
                Body::GetQuota(self.astring()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring()?;
                self.sp()?;
                self.list_of(true, |p| {
                    p.atom()?;
                    p.sp()?;
                    p.number()
                })?;
                Body::SetQuota(root)
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                Body::Rename { from, to }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                Body::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.list_of(false, |p| p.status_item())?;
                Body::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "SEARCH" => Body::Search(self.search(false)?),
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "FETCH" => Body::Fetch(self.fetch(false)?),
            "STORE" => Body::Store(self.store(false)?),
            "COPY" | "MOVE" => self.copy(false, name == "MOVE")?,
            "UID" => {
                self.sp()?;
                let sub = self.atom()?;
                match sub.as_str() {
                    "SEARCH" => Body::Search(self.search(true)?),
                    "SORT" => self.sort(true)?,
                    "THREAD" => self.thread(true)?,
                    "FETCH" => Body::Fetch(self.fetch(true)?),
                    "STORE" => Body::Store(self.store(true)?),
                    "COPY" | "MOVE" => self.copy(true, sub == "MOVE")?,
                    "EXPUNGE" => {
                        self.sp()?;
                        Body::Expunge(Some(self.sequence_set()?))
                    }
                    _ => return Err(format!("unknown UID command {sub}")),
                }
            }
            _ => return Err(format!("unknown command {name}")),
        };
        self.end()?;
        Ok(body)
    }

    fn select(&mut self, read_only: bool) -> R<Body> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut condstore = false;
        let mut qresync = None;
        if self.eat(b' ') {
            self.list_of(false, |p| {
                let w = p.atom()?;
                match w.as_str() {
                    "CONDSTORE" => condstore = true,
                    "QRESYNC" => {
                        p.sp()?;
                        p.open("'('")?;
                        let uid_validity = p.nz_number()?;
                        p.sp()?;
                        let modseq = p.number()?;
                        let mut known_uids = None;
                        let mut seq_match = None;
                        while p.eat(b' ') {
                            if p.peek() == Some(b'(') {
                                p.open("'('")?;
                                let seqs = p.sequence_set()?;
                                p.sp()?;
                                let uids = p.sequence_set()?;
                                p.close()?;
                                seq_match = Some((seqs, uids));
                            } else {
                                known_uids = Some(p.sequence_set()?);
                            }
                        }
                        p.close()?;
                        qresync = Some(Qresync {
                            uid_validity,
                            modseq,
                            known_uids,
                            seq_match,
                        });
                    }
                    _ => return Err(format!("unknown SELECT parameter {w}")),
                }
                Ok(())
            })?;
        }
        Ok(Body::Select {
            mailbox,
            read_only,
            condstore,
            qresync,
        })
    }

    fn status_item(&mut self) -> R<StatusItem> {
        let w = self.atom()?;
        Ok(match w.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            _ => return Err(format!("unknown STATUS item {w}")),
        })
    }

    fn list(&mut self) -> R<Body> {
        self.sp()?;
        let mut list = List::default();
        if self.peek() == Some(b'(') {
            list.extended = true;
            list.select = self.list_of(true, |p| {
                let w = p.atom()?;
                match w.as_str() {
                    "SUBSCRIBED" | "REMOTE" | "RECURSIVEMATCH" | "SPECIAL-USE" => Ok(w),
                    _ => Err(format!("unknown LIST selection option {w}")),
                }
            })?;
            self.sp()?;
        }
        list.reference = self.mailbox()?;
        self.sp()?;
        if self.peek() == Some(b'(') {
            list.extended = true;
            list.patterns = self.list_of(false, |p| p.list_mailbox())?;
        } else {
            list.patterns = vec![self.list_mailbox()?];
        }
        if self.eat(b' ') {
            if !self.keyword("RETURN") {
                return Err(format!("expected RETURN at {}", self.show_rest()));
            }
            list.extended = true;
            self.sp()?;
            let mut status = Vec::new();
            list.returns = self.list_of(true, |p| {
                let w = p.atom()?;
                match w.as_str() {
                    "SUBSCRIBED" | "CHILDREN" | "SPECIAL-USE" => Ok(w),
                    "STATUS" => {
                        p.sp()?;
                        status = p.list_of(false, |p| p.status_item())?;
                        Ok(w)
                    }
                    _ => Err(format!("unknown LIST return option {w}")),
                }
            })?;
            list.return_status = status;
        }
        if list.select.iter().any(|s| s == "RECURSIVEMATCH")
            && !list
                .select
                .iter()
                .any(|s| s != "RECURSIVEMATCH" && s != "REMOTE")
        {
            return Err("RECURSIVEMATCH needs another selection option (RFC 5258 §3.1)".into());
        }
        Ok(Body::List(list))
    }

    fn append(&mut self) -> R<Body> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while self.eat(b' ') {
            let mut flags = Vec::new();
            let mut date = None;
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp()?;
            }
            if self.peek() == Some(b'"') {
                date = Some(self.date_time()?);
                self.sp()?;
            }
            let (data, binary) = self.literal(true)?;
            messages.push(AppendMessage {
                flags,
                date,
                data,
                binary,
            });
        }
        if messages.is_empty() {
            return Err("APPEND needs a message (a literal)".into());
        }
        Ok(Body::Append { mailbox, messages })
    }

    fn copy(&mut self, uid: bool, move_: bool) -> R<Body> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(Body::Copy {
            uid,
            set,
            mailbox,
            move_,
        })
    }

    fn store(&mut self, uid: bool) -> R<Store> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            self.open("'('")?;
            if !self.keyword("UNCHANGEDSINCE") {
                return Err("the only STORE modifier is UNCHANGEDSINCE".into());
            }
            self.sp()?;
            unchanged_since = Some(self.number()?);
            self.close()?;
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let what = self.atom()?;
        let silent = match what.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return Err(format!("STORE changes FLAGS or FLAGS.SILENT, not {what}")),
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.eat(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(Store {
            uid,
            set,
            mode,
            silent,
            flags,
            unchanged_since,
        })
    }

    fn fetch(&mut self, uid: bool) -> R<Fetch> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            self.list_of(false, |p| p.fetch_item())?
                .into_iter()
                .flatten()
                .collect()
        } else {
            self.fetch_item()?
        };
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            self.list_of(false, |p| {
                let w = p.atom()?;
                match w.as_str() {
                    "CHANGEDSINCE" => {
                        p.sp()?;
                        changed_since = Some(p.number()?);
                    }
                    "VANISHED" => vanished = true,
                    _ => return Err(format!("unknown FETCH modifier {w}")),
                }
                Ok(())
            })?;
        }
        if vanished && (!uid || changed_since.is_none()) {
            return Err("VANISHED needs UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6)".into());
        }
        Ok(Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    /// One fetch-att, or a macro (ALL, FAST, FULL) as its items.
    fn fetch_item(&mut self) -> R<Vec<FetchItem>> {
        use FetchItem as F;
        let start = self.i;
        let w = self.peek_word();
        let simple = match w.as_str() {
            "ALL" => Some(vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope]),
            "FAST" => Some(vec![F::Flags, F::InternalDate, F::Rfc822Size]),
            "FULL" => Some(vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body,
            ]),
            "ENVELOPE" => Some(vec![F::Envelope]),
            "FLAGS" => Some(vec![F::Flags]),
            "INTERNALDATE" => Some(vec![F::InternalDate]),
            "RFC822.SIZE" => Some(vec![F::Rfc822Size]),
            "RFC822.HEADER" => Some(vec![F::Rfc822Header]),
            "RFC822.TEXT" => Some(vec![F::Rfc822Text]),
            "RFC822" => Some(vec![F::Rfc822]),
            "UID" => Some(vec![F::Uid]),
            "MODSEQ" => Some(vec![F::ModSeq]),
            "BODYSTRUCTURE" => Some(vec![F::BodyStructure]),
            _ => None,
        };
        self.i += w.len();
        let bracket = self.peek() == Some(b'[');
        if let Some(items) = simple {
            if !bracket {
                return Ok(items);
            }
        }
        match w.as_str() {
            "BODY" if !bracket => Ok(vec![F::Body]),
            "BODY" | "BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                Ok(vec![F::Section {
                    section,
                    partial,
                    peek: w == "BODY.PEEK",
                }])
            }
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                self.expect(b'[', "'['")?;
                let part = self.part_path()?;
                self.expect(b']', "']' (BINARY takes only a part number)")?;
                if w == "BINARY.SIZE" {
                    return Ok(vec![F::BinarySize(part)]);
                }
                let partial = self.partial()?;
                Ok(vec![F::Binary {
                    part,
                    partial,
                    peek: w == "BINARY.PEEK",
                }])
            }
            _ => {
                self.i = start;
                Err(format!("unknown FETCH item at {}", self.show_rest()))
            }
        }
    }

    fn part_path(&mut self) -> R<Vec<u32>> {
        let mut part = Vec::new();
        while matches!(self.peek(), Some(b) if b.is_ascii_digit()) {
            part.push(self.nz_number()?);
            if !self.eat(b'.') {
                break;
            }
        }
        Ok(part)
    }

    fn section(&mut self) -> R<Section> {
        self.expect(b'[', "'['")?;
        let mut part = Vec::new();
        let mut text = None;
        loop {
            if matches!(self.peek(), Some(b) if b.is_ascii_digit()) {
                part.push(self.nz_number()?);
                if self.eat(b'.') {
                    continue;
                }
                break;
            }
            if self.peek() == Some(b']') {
                if self.s.get(self.i - 1) == Some(&b'.') {
                    return Err("a section may not end with '.'".into());
                }
                break;
            }
            let w = self.peek_word();
            self.i += w.len();
            text = Some(match w.as_str() {
                "HEADER" => SectionText::Header,
                "TEXT" => SectionText::Text,
                "MIME" if !part.is_empty() => SectionText::Mime,
                "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                    self.sp()?;
                    let names = self.list_of(false, |p| {
                        let n = p.astring()?;
                        Ok(String::from_utf8_lossy(&n).into_owned())
                    })?;
                    if w == "HEADER.FIELDS" {
                        SectionText::HeaderFields(names)
                    } else {
                        SectionText::HeaderFieldsNot(names)
                    }
                }
                "MIME" => return Err("MIME needs a part number (BODY[1.MIME])".into()),
                _ => return Err(format!("unknown section \"{w}\"")),
            });
            break;
        }
        self.expect(b']', "']'")?;
        Ok(Section { part, text })
    }

    fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let start = u32::try_from(self.number()?).map_err(|_| "partial offset too large")?;
        self.expect(b'.', "'.' in <offset.length>")?;
        let len = self.nz_number()?;
        self.expect(b'>', "'>'")?;
        Ok(Some((start, len)))
    }

    fn search(&mut self, uid: bool) -> R<Search> {
        self.sp()?;
        let mut returns = None;
        if self.keyword("RETURN") {
            self.sp()?;
            returns = Some(self.list_of(true, |p| {
                let w = p.atom()?;
                Ok(match w.as_str() {
                    "MIN" => SearchReturn::Min,
                    "MAX" => SearchReturn::Max,
                    "ALL" => SearchReturn::All,
                    "COUNT" => SearchReturn::Count,
                    "SAVE" => SearchReturn::Save,
                    _ => return Err(format!("unknown SEARCH return option {w}")),
                })
            })?);
            self.sp()?;
        }
        let mut charset = None;
        if self.keyword("CHARSET") {
            self.sp()?;
            charset = Some(String::from_utf8_lossy(&self.astring()?).into_owned());
            self.sp()?;
        }
        Ok(Search {
            uid,
            charset,
            returns,
            key: self.search_keys()?,
        })
    }

    /// One or more search keys, all of which must hold.
    fn search_keys(&mut self) -> R<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while self.eat(b' ') {
            keys.push(self.search_key()?);
        }
        Ok(if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        })
    }

    /// `SORT (criteria) charset search` (RFC 5256 §5 `sort`, RFC 5957 §4).
    fn sort(&mut self, uid: bool) -> R<Body> {
        self.sp()?;
        let words = self.list_of(false, |p| p.atom())?;
        let mut criteria = Vec::new();
        let mut reverse = false;
        for w in words {
            let key = match w.as_str() {
                "REVERSE" if reverse => return Err("REVERSE twice in a row".into()),
                "REVERSE" => {
                    reverse = true;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                _ => return Err(format!("unknown SORT criterion {w}")),
            };
            criteria.push(SortCriterion { reverse, key });
            reverse = false;
        }
        if reverse {
            return Err("REVERSE without a SORT criterion after it".into());
        }
        let search = self.sort_search(uid)?;
        Ok(Body::Sort { criteria, search })
    }

    /// `THREAD algorithm charset search` (RFC 5256 §5 `thread`).
    fn thread(&mut self, uid: bool) -> R<Body> {
        self.sp()?;
        let w = self.atom()?;
        let algorithm = match w.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            _ => return Err(format!("unknown THREAD algorithm {w}")),
        };
        let search = self.sort_search(uid)?;
        Ok(Body::Thread { algorithm, search })
    }

    /// The `SP charset SP search-key *(SP search-key)` that SORT and THREAD end with: the
    /// charset is not optional there (RFC 5256 §5).
    fn sort_search(&mut self, uid: bool) -> R<Search> {
        self.sp()?;
        let charset = String::from_utf8_lossy(&self.astring()?).into_owned();
        self.sp()?;
        Ok(Search {
            uid,
            charset: Some(charset),
            returns: None,
            key: self.search_keys()?,
        })
    }

    fn search_key(&mut self) -> R<SearchKey> {
        use SearchKey as K;
        if self.peek() == Some(b'(') {
            let keys = self.list_of(false, |p| p.search_key())?;
            return Ok(K::And(keys));
        }
        if matches!(self.peek(), Some(b) if b.is_ascii_digit() || b == b'*' || b == b'$') {
            return Ok(K::Sequence(self.sequence_set()?));
        }
        let w = self.atom()?;
        let flag = |f| Ok(K::Flag(f));
        let not = |f| Ok(K::NotFlag(f));
        match w.as_str() {
            "ALL" => Ok(K::All),
            "ANSWERED" => flag(Flag::Answered),
            "DELETED" => flag(Flag::Deleted),
            "DRAFT" => flag(Flag::Draft),
            "FLAGGED" => flag(Flag::Flagged),
            "SEEN" => flag(Flag::Seen),
            "RECENT" => flag(Flag::Recent),
            "UNANSWERED" => not(Flag::Answered),
            "UNDELETED" => not(Flag::Deleted),
            "UNDRAFT" => not(Flag::Draft),
            "UNFLAGGED" => not(Flag::Flagged),
            "UNSEEN" => not(Flag::Seen),
            "NEW" => Ok(K::New),
            "OLD" => Ok(K::Old),
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = Flag::Keyword(self.atom_raw()?);
                if w == "KEYWORD" {
                    flag(k)
                } else {
                    not(k)
                }
            }
            "BCC" | "CC" | "FROM" | "SUBJECT" | "TO" => {
                self.sp()?;
                let v = self.astring()?;
                // (The header field's name as mail writes it: "From", "Subject".)
                let (first, rest) = w.split_at(1);
                let name = first.to_string() + &rest.to_ascii_lowercase();
                Ok(K::Header(name, v))
            }
            "HEADER" => {
                self.sp()?;
                let name = String::from_utf8_lossy(&self.astring()?).into_owned();
                self.sp()?;
                Ok(K::Header(name, self.astring()?))
            }
            "BODY" | "TEXT" => {
                self.sp()?;
                let v = self.astring()?;
                Ok(if w == "BODY" { K::Body(v) } else { K::Text(v) })
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let d = self.date()?;
                Ok(match w.as_str() {
                    "BEFORE" => K::Before(d),
                    "ON" => K::On(d),
                    "SINCE" => K::Since(d),
                    "SENTBEFORE" => K::SentBefore(d),
                    "SENTON" => K::SentOn(d),
                    _ => K::SentSince(d),
                })
            }
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let n = self.number()?;
                Ok(if w == "LARGER" {
                    K::Larger(n)
                } else {
                    K::Smaller(n)
                })
            }
            "UID" => {
                self.sp()?;
                Ok(K::Uid(self.sequence_set()?))
            }
            "NOT" => {
                self.sp()?;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} levels deep"));
                }
                let k = self.search_key()?;
                self.depth -= 1;
                Ok(K::Not(Box::new(k)))
            }
            "OR" => {
                self.sp()?;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} levels deep"));
                }
                let a = self.search_key()?;
                self.sp()?;
                let b = self.search_key()?;
                self.depth -= 1;
                Ok(K::Or(Box::new(a), Box::new(b)))
            }
            "MODSEQ" => {
                self.sp()?;
                // An optional entry name and type (RFC 7162 §3.1.5) before the number.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    let t = self.atom()?;
                    if !matches!(t.as_str(), "PRIV" | "SHARED" | "ALL") {
                        return Err(format!("unknown MODSEQ entry type {t}"));
                    }
                    self.sp()?;
                }
                Ok(K::ModSeq(self.number()?))
            }
            _ => Err(format!("unknown search criterion {w}")),
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `d-Mon-yyyy` (RFC 9051 §9 `date-text`), validating the day against the month.
pub fn parse_date(text: &str) -> Option<Date> {
    let mut it = text.split('-');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let day: u32 = d.trim_start().parse().ok()?;
    let month = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m))? as u32 + 1;
    let year: i32 = y.parse().ok()?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day == 0 || day > days[month as usize - 1] {
        return None;
    }
    Some(Date { year, month, day })
}

/// `dd-Mon-yyyy hh:mm:ss +zzzz` (RFC 9051 §9 `date-time`; the day may be space-padded).
pub fn parse_date_time(text: &str) -> Option<DateTime> {
    let text = text.strip_prefix(' ').unwrap_or(text);
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let date = parse_date(date)?;
    let mut t = time.split(':');
    let (h, m, s) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (hour, minute, second) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = zone
        .get(1..)
        .filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()))?;
    let (zh, zm) = digits.split_at(2);
    let (zh, zm): (i32, i32) = (zh.parse().ok()?, zm.parse().ok()?);
    if zm > 59 {
        return None;
    }
    Some(DateTime {
        date,
        hour,
        minute,
        second,
        zone_minutes: sign * (zh * 60 + zm),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
