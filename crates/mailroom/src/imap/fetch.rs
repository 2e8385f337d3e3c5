//! FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE and VANISHED).

use mailroom_proto::imap::command::{Fetch, FetchItem};
use mailroom_proto::imap::encode;
use mailroom_proto::imap::mime::{BinaryError, Message};
use mailroom_proto::imap::section::{Section, SectionText};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use super::view::{compress, flags_text};
use crate::store::{flag, FlagOp, MailAttrs};

/// Messages whose store data is read at a time.
const CHUNK: usize = 256;

/// The name of a section as the response echoes it (`BODY[1.HEADER.FIELDS (FROM)]`).
fn section_name(s: &Section) -> String {
    let mut out: Vec<String> = s.part.iter().map(|p| p.to_string()).collect();
    match &s.text {
        None => {}
        Some(SectionText::Header) => out.push("HEADER".into()),
        Some(SectionText::Text) => out.push("TEXT".into()),
        Some(SectionText::Mime) => out.push("MIME".into()),
        Some(SectionText::HeaderFields(f)) => {
            out.push(format!("HEADER.FIELDS ({})", quote_names(f)));
        }
        Some(SectionText::HeaderFieldsNot(f)) => {
            out.push(format!("HEADER.FIELDS.NOT ({})", quote_names(f)));
        }
    }
    out.join(".")
}

fn quote_names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            let mut o = Vec::new();
            encode::astring(&mut o, n.to_ascii_uppercase().as_bytes());
            String::from_utf8_lossy(&o).into_owned()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<origin.len>` applied to `data`; the response names only the origin (RFC 9051 §6.4.5).
fn partial(data: Vec<u8>, p: Option<(u32, u32)>) -> (Vec<u8>, String) {
    match p {
        None => (data, String::new()),
        Some((start, len)) => {
            // The origin named is the one asked for, even past the end, where the data is
            // empty (RFC 3501 §6.4.5: "an empty string is returned").
            let from = (start as usize).min(data.len());
            let end = from.saturating_add(len as usize).min(data.len());
            (data[from..end].to_vec(), format!("<{start}>"))
        }
    }
}

/// An INTERNALDATE as IMAP writes it (`"17-Jul-1996 02:44:25 +0000"`).
pub(super) fn internal_date(d: chrono::DateTime<chrono::Utc>) -> String {
    d.format("\"%d-%b-%Y %H:%M:%S +0000\"").to_string()
}

/// Whether an item is answered from the message's octets.
pub(super) fn needs_text_item(i: &FetchItem) -> bool {
    !matches!(
        i,
        FetchItem::Uid
            | FetchItem::Flags
            | FetchItem::ModSeq
            | FetchItem::InternalDate
            | FetchItem::Rfc822Size
    )
}

/// Whether an item needs only the message's header section (the same octets whether the
/// whole message or its header section is parsed; see `mime::header_section`).
pub(super) fn header_item(i: &FetchItem) -> bool {
    match i {
        FetchItem::Envelope | FetchItem::Rfc822Header => true,
        FetchItem::Section { section, .. } => {
            section.part.is_empty()
                && matches!(
                    section.text,
                    Some(
                        SectionText::Header
                            | SectionText::HeaderFields(_)
                            | SectionText::HeaderFieldsNot(_)
                    )
                )
        }
        _ => false,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn fetch(&mut self, tag: &str, f: Fetch) {
        // Expunges wait during FETCH by number (RFC 9051 §7.5.1); by UID they may be sent.
        self.sync(f.uid).await;
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        let saved = self.saved.clone();
        let mut indices = match v.resolve(&f.set, f.uid, saved.as_deref()) {
            Ok(i) => i,
            Err(why) => {
                self.tagged(tag, "BAD", &why);
                return;
            }
        };
        if f.vanished && !self.enabled.qresync {
            self.tagged(tag, "BAD", "ENABLE QRESYNC first to use VANISHED");
            return;
        }
        let mut items = f.items.clone();
        if f.uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        if let Some(since) = f.changed_since {
            self.enabled.condstore = true;
            indices.retain(|&i| v.mail[i].modseq > since);
            if !items.contains(&FetchItem::ModSeq) {
                items.push(FetchItem::ModSeq);
            }
        }
        if items.contains(&FetchItem::ModSeq) {
            self.enabled.condstore = true;
        }
        let (folder, read_only) = (v.folder.id, v.read_only);
        if f.vanished {
            if let Some(since) = f.changed_since {
                self.vanished(folder, since, &f).await;
            }
        }
        let needs_attrs = items
            .iter()
            .any(|i| matches!(i, FetchItem::InternalDate | FetchItem::Rfc822Size));
        let needs_text = items.iter().any(needs_text_item);
        // A client opening a folder fetches header fields of every message: those, and
        // ENVELOPE, are read from the header sections alone, without the bodies.
        let headers_only = items.iter().all(|i| !needs_text_item(i) || header_item(i));
        let sets_seen = !read_only
            && items.iter().any(|i| match i {
                FetchItem::Section { peek, .. } | FetchItem::Binary { peek, .. } => !peek,
                FetchItem::Rfc822 | FetchItem::Rfc822Text => true,
                _ => false,
            });
        if sets_seen {
            // The fetch marks the messages read (RFC 9051 §6.4.5), and FLAGS is returned.
            let unseen: Vec<u32> = indices
                .iter()
                .filter_map(|&i| self.selected.as_ref().map(|v| &v.mail[i]))
                .filter(|m| m.flags & flag::SEEN == 0)
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                match self
                    .ctx
                    .store
                    .mail_store(folder, unseen, FlagOp::Add, flag::SEEN, Vec::new(), None)
                    .await
                {
                    Ok(stored) => {
                        if let Some(v) = self.selected.as_mut() {
                            for m in stored.changed {
                                if let Some(i) = v.index_of(m.uid) {
                                    v.mail[i] = m;
                                }
                            }
                        }
                        if !items.contains(&FetchItem::Flags) {
                            items.push(FetchItem::Flags);
                        }
                        // A flag change under CONDSTORE carries its mod-sequence (RFC 7162
                        // §3.2).
                        if self.enabled.condstore && !items.contains(&FetchItem::ModSeq) {
                            items.push(FetchItem::ModSeq);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "setting \\Seen failed"),
                }
            }
        }
        let user = self.user.as_ref().map_or(0, |u| u.id);
        let mut failed = false;
        for chunk in indices.chunks(CHUNK) {
            let Some(v) = self.selected.as_ref() else {
                return;
            };
            let metas: Vec<_> = chunk
                .iter()
                .map(|&i| (i, v.mail[i].clone(), v.recent(i)))
                .collect();
            let attrs: Vec<MailAttrs> = if needs_attrs {
                let uids = metas.iter().map(|(_, m, _)| m.uid).collect();
                match self.ctx.store.mail_attrs(folder, uids).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!(error = %e, "fetch failed");
                        failed = true;
                        break;
                    }
                }
            } else {
                Vec::new()
            };
            let read = if !needs_text {
                Ok(Vec::new())
            } else if headers_only {
                let uids = metas.iter().map(|(_, m, _)| m.uid).collect();
                self.ctx
                    .store
                    .mail_headers(folder, uids)
                    .await
                    .map(|mut h| {
                        metas
                            .iter()
                            .map(|(_, m, _)| {
                                let at = h.binary_search_by_key(&m.uid, |x| x.0).ok()?;
                                Some(std::mem::take(&mut h[at].1))
                            })
                            .collect()
                    })
            } else {
                let ids = metas.iter().map(|(_, m, _)| m.id).collect();
                self.read_texts(user, ids).await
            };
            let mut texts = match read {
                Ok(t) => t.into_iter(),
                Err(e) => {
                    tracing::error!(error = %e, "reading messages failed");
                    failed = true;
                    break;
                }
            };
            for (i, meta, recent) in metas {
                let text = if needs_text {
                    match texts.next().flatten() {
                        Some(t) => Some(t),
                        // Expunged meanwhile by another session: nothing to show.
                        None => continue,
                    }
                } else {
                    None
                };
                let attr = attrs
                    .binary_search_by_key(&meta.uid, |a| a.meta.uid)
                    .ok()
                    .and_then(|at| attrs.get(at));
                if needs_attrs && attr.is_none() {
                    continue;
                }
                let rev2 = self.enabled.rev2;
                let mut out = format!("* {} FETCH (", i + 1).into_bytes();
                let mut first = true;
                let parsed = text.as_deref().map(Message::parse);
                for item in &items {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    if let Err(e) = write_item(
                        &mut out,
                        item,
                        &meta,
                        recent && !rev2,
                        attr,
                        text.as_deref(),
                        parsed.as_ref(),
                    ) {
                        self.tagged(tag, "NO", &e);
                        return;
                    }
                }
                out.extend_from_slice(b")\r\n");
                self.conn.wbuf().extend_from_slice(&out);
            }
            if failed || !self.flush_if_large().await {
                break;
            }
        }
        if failed {
            self.tagged(tag, "NO", super::session::TEMPORARY);
            return;
        }
        let verb = if f.uid { "UID FETCH" } else { "FETCH" };
        self.tagged(tag, "OK", &format!("{verb} completed"));
    }

    /// `VANISHED (EARLIER)` for UIDs of the set expunged since `since` (RFC 7162 §3.2.6).
    async fn vanished(&mut self, folder: i64, since: u64, f: &Fetch) {
        let changes = match self.ctx.store.folder_changes(folder, since).await {
            Ok(c) => c,
            Err(_) => return,
        };
        let Some(v) = self.selected.as_ref() else {
            return;
        };
        let largest = v
            .last_uid()
            .max(changes.expunged.last().copied().unwrap_or(0));
        let gone = match &changes.present {
            // The history no longer reaches back that far: every UID of the set that is neither
            // in the folder nor in the session's view (RFC 7162 §3.2.5.1).
            Some(present) => {
                super::vanished::known_gone(present, v, changes.uid_next, Some(&f.set))
            }
            None => {
                let gone: Vec<u32> = changes
                    .expunged
                    .into_iter()
                    .filter(|&u| f.set.contains(u, largest) && v.index_of(u).is_none())
                    .collect();
                compress(&gone)
            }
        };
        if !gone.is_empty() {
            self.untagged(&format!("VANISHED (EARLIER) {gone}"));
        }
    }
}

/// Writes one FETCH data item.
fn write_item(
    out: &mut Vec<u8>,
    item: &FetchItem,
    meta: &crate::store::MailMeta,
    recent: bool,
    attr: Option<&MailAttrs>,
    text: Option<&[u8]>,
    msg: Option<&Message<'_>>,
) -> Result<(), String> {
    let text = text.unwrap_or_default();
    let put = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
    match item {
        FetchItem::Uid => put(out, &format!("UID {}", meta.uid)),
        FetchItem::Flags => put(out, &format!("FLAGS {}", flags_text(meta, recent))),
        FetchItem::ModSeq => put(out, &format!("MODSEQ ({})", meta.modseq)),
        FetchItem::InternalDate => {
            let d = attr.map(|a| a.internal_date).unwrap_or_default();
            put(out, &format!("INTERNALDATE {}", internal_date(d)));
        }
        FetchItem::Rfc822Size => {
            put(
                out,
                &format!("RFC822.SIZE {}", attr.map_or(text.len() as u64, |a| a.size)),
            );
        }
        FetchItem::Envelope => {
            put(out, "ENVELOPE ");
            out.extend_from_slice(&msg.map(|m| m.envelope()).unwrap_or_default());
        }
        FetchItem::Body => {
            put(out, "BODY ");
            out.extend_from_slice(&msg.map(|m| m.body_structure(false)).unwrap_or_default());
        }
        FetchItem::BodyStructure => {
            put(out, "BODYSTRUCTURE ");
            out.extend_from_slice(&msg.map(|m| m.body_structure(true)).unwrap_or_default());
        }
        FetchItem::Rfc822 => {
            put(out, "RFC822 ");
            encode::literal(out, text);
        }
        FetchItem::Rfc822Header | FetchItem::Rfc822Text => {
            let (name, st) = if *item == FetchItem::Rfc822Header {
                ("RFC822.HEADER ", SectionText::Header)
            } else {
                ("RFC822.TEXT ", SectionText::Text)
            };
            let s = Section {
                part: vec![],
                text: Some(st),
            };
            put(out, name);
            let data = msg.and_then(|m| m.section(&s)).unwrap_or_default();
            encode::literal(out, &data);
        }
        FetchItem::Section {
            section,
            partial: p,
            ..
        } => {
            let data = msg.and_then(|m| m.section(section));
            put(out, &format!("BODY[{}]", section_name(section)));
            match data {
                Some(d) => {
                    let (d, origin) = partial(d, *p);
                    put(out, &origin);
                    out.push(b' ');
                    encode::literal(out, &d);
                }
                // A part that does not exist is empty, written as Dovecot writes it: an
                // empty literal (RFC 9051 §6.4.5 leaves it to the server; NIL trips up some
                // clients). The partial's origin is still named.
                None => {
                    if let Some((start, _)) = p {
                        put(out, &format!("<{start}>"));
                    }
                    out.push(b' ');
                    encode::literal(out, &[]);
                }
            }
        }
        FetchItem::Binary {
            part, partial: p, ..
        } => {
            let data = match msg.map(|m| m.binary(part)) {
                Some(Ok(d)) => d,
                Some(Err(BinaryError::UnknownEncoding(e))) => {
                    return Err(format!(
                        "[UNKNOWN-CTE] Unknown content-transfer-encoding {e}"
                    ));
                }
                // A part that does not exist is empty, as for BODY[part] (and Dovecot).
                Some(Err(BinaryError::NoSuchPart)) => Vec::new(),
                None => return Err("The message cannot be read".into()),
            };
            let (d, origin) = partial(data, *p);
            let path: Vec<String> = part.iter().map(|n| n.to_string()).collect();
            put(out, &format!("BINARY[{}]{origin} ", path.join(".")));
            if d.contains(&0) {
                out.push(b'~');
            }
            encode::literal(out, &d);
        }
        FetchItem::BinarySize(part) => {
            let n = match msg.map(|m| m.binary_size(part)) {
                Some(Ok(n)) => n,
                Some(Err(BinaryError::UnknownEncoding(e))) => {
                    return Err(format!(
                        "[UNKNOWN-CTE] Unknown content-transfer-encoding {e}"
                    ));
                }
                Some(Err(BinaryError::NoSuchPart)) => 0,
                None => return Err("The message cannot be read".into()),
            };
            let path: Vec<String> = part.iter().map(|n| n.to_string()).collect();
            put(out, &format!("BINARY.SIZE[{}] {n}", path.join(".")));
        }
    }
    Ok(())
}
