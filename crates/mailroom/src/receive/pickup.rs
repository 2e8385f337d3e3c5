//! Pickup: takes what `sendmail` left in the maildrop ([`super::maildrop`]) and hands it to
//! ingest, as Postfix's pickup does. It runs beside the queue manager, looking at the maildrop
//! every `queue.poll_interval`.
//!
//! Who sent a drop file is its owner, as the kernel recorded it. The envelope sender is
//! `user@origin` (`server.origin`); a `-f` from root or the mail system's own user is taken as
//! given, and from any other user only when it names no local address but their own, so a
//! local user cannot send as another (the message is quarantined instead, and the log says
//! why). A message without `From:` gets one naming the sender (with `-F`'s full name), and
//! ingest adds the `Date:` and `Message-ID:` that a submission lacks (RFC 6409 §8).
//!
//! A file is removed only after ingest has it on stable storage; a crash in between delivers it
//! twice rather than never. What cannot be taken (not a drop file, a link, larger than any
//! message, a forged sender, refused by ingest) is moved to `DATA/maildrop-quarantine` and
//! logged, never dropped.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailroom_proto::smtp::address::Mailbox;
use mailroom_proto::smtp::params::{DsnRet, Notify, RcptParams};
use tokio::sync::watch;

use super::maildrop::{self, Drop};
use super::Context;
use crate::directory;
use crate::ids::QueueId;
use crate::ingest::{AcceptedRcpt, Envelope, IngestError};
use crate::logs::escape;
use crate::model::{EnvelopeParams, Resolution, Route, Target};
use crate::store::spool::Received;

/// The room a drop file may take beyond the largest message: its envelope line.
const ENVELOPE_ROOM: u64 = 64 * 1024;

/// Who wrote a drop file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The file's owner.
    pub uid: u32,
    /// Its login name (`uid<N>` for a user the system does not know).
    pub name: String,
    /// Root or the server's own user: may give any envelope sender.
    pub privileged: bool,
}

impl Owner {
    /// The owner of a file with user ID `uid`.
    pub fn of(uid: u32) -> Owner {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{uid}"));
        Owner {
            uid,
            name,
            privileged: uid == 0 || uid == nix::unistd::geteuid().as_raw(),
        }
    }
}

/// Why a drop file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PickupError {
    /// Not a drop file, a link, or larger than any message: quarantined.
    #[error("{0}")]
    Unusable(String),
    /// A sender the owner may not give: quarantined.
    #[error("{0}")]
    Forbidden(String),
    /// Refused by ingest for good: quarantined.
    #[error("refused: {0}")]
    Refused(String),
    /// The store or the file system failed: tried again at the next look.
    #[error("{0}")]
    Later(String),
}

/// Looks at the maildrop every `queue.poll_interval` until `shutdown`.
pub async fn run(
    ctx: watch::Receiver<Arc<Context>>,
    data: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let current = ctx.borrow().clone();
        let every = current.config.queue.poll_interval;
        once(&current, &data, &shutdown).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Names already reported as impossible to take or to quarantine (a directory, say): said
/// once, not at every look, so that no local user can flood the log.
static REPORTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Takes every drop file there is now (stopping early at `shutdown`); the number taken.
pub async fn once(ctx: &Context, data: &Path, shutdown: &watch::Receiver<bool>) -> usize {
    let dir = data.join(maildrop::DIR);
    let names = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::error!(dir = %dir.display(), "cannot read the maildrop: {e}");
            return 0;
        }
    };
    let mut taken = 0;
    for name in names {
        if *shutdown.borrow() {
            break;
        }
        if REPORTED.lock().is_ok_and(|r| r.contains(&name)) {
            continue;
        }
        let path = dir.join(&name);
        match take(ctx, &path).await {
            Ok((id, owner)) => {
                taken += 1;
                tracing::info!(
                    queue_id = %id,
                    uid = owner.uid,
                    user = %escape(&owner.name),
                    "picked up from the maildrop"
                );
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::error!(file = %path.display(), "queued as {id}, but cannot remove the drop file (it will be sent again): {e}");
                }
            }
            Err(PickupError::Later(why)) => {
                tracing::warn!(file = %path.display(), "not picked up yet: {why}");
                // (Tried again at the next look; the store's trouble is said by the store.)
            }
            Err(e) => quarantine(data, &path, &name, &e),
        }
    }
    taken
}

/// Moves a drop file that cannot be taken where the administrator finds it: a directory only
/// the server's user reads (what is in it is other people's mail), under a name of its own.
fn quarantine(data: &Path, path: &Path, name: &str, why: &PickupError) {
    use std::os::unix::fs::PermissionsExt as _;
    let qdir = data.join(maildrop::QUARANTINE);
    let to = qdir.join(format!(
        "{}-{name}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
    ));
    let moved = std::fs::create_dir_all(&qdir)
        .and_then(|()| std::fs::set_permissions(&qdir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| std::fs::rename(path, &to));
    match moved {
        Ok(()) => {
            let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600));
            tracing::warn!(file = %to.display(), "maildrop file quarantined: {why}");
        }
        Err(e) => {
            tracing::error!(
                file = %path.display(),
                "maildrop file not taken ({why}), and cannot be quarantined: {e} (said once)"
            );
            if let Ok(mut r) = REPORTED.lock() {
                r.push(name.to_string());
            }
        }
    }
}

/// Reads one drop file, safely: no links, a regular file with one name, no larger than a
/// message may be. Returns its bytes and owner.
fn read(path: &Path, limit: u64) -> Result<(Vec<u8>, Owner), PickupError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => PickupError::Unusable("a symbolic link".into()),
        // (Unreadable, a socket, a device: what its owner left there stays unreadable.)
        rustix::io::Errno::ACCESS
        | rustix::io::Errno::PERM
        | rustix::io::Errno::NXIO
        | rustix::io::Errno::ISDIR => PickupError::Unusable(format!("cannot be opened: {e}")),
        e => PickupError::Later(format!("cannot open it: {e}")),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| PickupError::Later(format!("fstat: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(PickupError::Unusable("not a regular file".into()));
    }
    if st.st_nlink != 1 {
        return Err(PickupError::Unusable(format!(
            "it has {} names (a hard link to another file)",
            st.st_nlink
        )));
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > limit + ENVELOPE_ROOM {
        return Err(PickupError::Unusable(format!(
            "{size} octets, more than smtp.max_message_size ({limit})"
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(limit + ENVELOPE_ROOM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PickupError::Later(format!("cannot read it: {e}")))?;
    Ok((bytes, Owner::of(st.st_uid)))
}

/// Takes one drop file into the queue.
async fn take(ctx: &Context, path: &Path) -> Result<(QueueId, Owner), PickupError> {
    let cfg = &ctx.config;
    let (bytes, owner) = read(path, cfg.smtp.max_message_size)?;
    let (drop, text) = Drop::decode(&bytes).map_err(|e| PickupError::Unusable(e.to_string()))?;
    if drop.recipients.len() > cfg.smtp.max_recipients {
        return Err(PickupError::Unusable(format!(
            "{} recipients, more than smtp.max_recipients ({})",
            drop.recipients.len(),
            cfg.smtp.max_recipients
        )));
    }
    let snap = ctx.org.get();
    let local = |domain: &str| {
        cfg.is_local_domain(domain) || snap.as_ref().is_some_and(|o| o.state.dir.accepts(domain))
    };
    let own = qualify(&owner.name, cfg.origin());
    let sender = sender(&drop, &owner, &own, &local)?;
    let mut rcpt_params = RcptParams::default();
    if let Some(n) = &drop.notify {
        rcpt_params.notify = Some(
            Notify::parse(&n.to_ascii_uppercase())
                .ok_or_else(|| PickupError::Unusable(format!("-N {n:?} is not a DSN NOTIFY")))?,
        );
    }
    let mut rcpts = Vec::new();
    for r in &drop.recipients {
        let address = qualify(r, cfg.origin());
        let Ok(mailbox) = Mailbox::parse(&address) else {
            tracing::warn!(recipient = %escape(r), "maildrop recipient is not an address; left out");
            continue;
        };
        let key = mailbox.key();
        // What SMTP refuses a client, pickup refuses a local program: routing tricks, and the
        // organization's probe mailboxes (only its servers may send to them).
        if mailbox.has_routing_syntax() || crate::org::probe::server_of(&key).is_some() {
            return Err(PickupError::Forbidden(format!(
                "<{key}> may not be a recipient of a local program"
            )));
        }
        let (targets, redirects) = if local(mailbox.domain.as_str()) {
            match directory::resolve_in_org(ctx.store.as_ref(), cfg, snap.as_deref(), &key)
                .await
                .map_err(|e| PickupError::Later(e.to_string()))?
            {
                Resolution::Targets {
                    targets, redirects, ..
                } => (targets, redirects),
                // (Delivery fails it, and the sender gets a report saying why.)
                _ => (
                    vec![Target {
                        address: key.clone(),
                        route: Route::Unresolved,
                        room: None,
                        quota: None,
                    }],
                    Vec::new(),
                ),
            }
        } else {
            (vec![Target::remote(key.clone())], Vec::new())
        };
        // A list's posting policy, as for a client inside (a local program is inside).
        let from = (!sender.is_empty()).then(|| sender.to_lowercase());
        if let Some(r) =
            super::envelope::list_gate(ctx.store.as_ref(), &mailbox, &key, &targets, from, true)
                .await
        {
            return Err(match r.code_num() {
                400..=499 => PickupError::Later(r.to_string()),
                _ => PickupError::Forbidden(r.to_string()),
            });
        }
        rcpts.push(AcceptedRcpt {
            given: key,
            params: rcpt_params.clone(),
            targets,
            redirects,
        });
    }
    if rcpts.is_empty() {
        return Err(PickupError::Unusable("no recipient is an address".into()));
    }
    let ret = match drop.ret.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("full") => Some(DsnRet::Full),
        Some("hdrs") => Some(DsnRet::Hdrs),
        Some(r) => {
            return Err(PickupError::Unusable(format!(
                "-R {r:?} is not full or hdrs"
            )))
        }
    };
    let mut message = from_field(text, drop.full_name.as_deref(), &sender);
    message.extend_from_slice(text);
    let env = Envelope {
        queue_id: QueueId::generate(),
        sender,
        params: EnvelopeParams {
            envid: drop.envid.clone(),
            ret,
            body: None,
            smtputf8: !message.is_ascii(),
        },
        rcpts,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: format!("userid {}", owner.uid),
        protocol: "local",
        tls: None,
        user: Some(own),
        headers: Vec::new(),
        checks: None,
        org_meta: None,
    };
    let accepted = ctx.ingest.accept(env, Received::Memory(message)).await;
    let code = match &accepted {
        Ok(_) => 250,
        Err(IngestError::Refused(r)) => r.code_num(),
        Err(IngestError::Store(_)) => 451,
    };
    crate::metrics::received("pickup", code);
    match accepted {
        Ok(id) => Ok((id, owner)),
        Err(IngestError::Refused(r)) => Err(PickupError::Refused(r.to_string())),
        Err(IngestError::Store(e)) => Err(PickupError::Later(e.to_string())),
    }
}

/// `name@origin` for a bare name; an address as it is.
pub fn qualify(name: &str, origin: &str) -> String {
    let name = name.trim();
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{origin}")
    }
}

/// The envelope sender of a drop: the owner's own address unless `-f` gave one that the owner
/// may give.
fn sender(
    drop: &Drop,
    owner: &Owner,
    own: &str,
    local: &dyn Fn(&str) -> bool,
) -> Result<String, PickupError> {
    let Some(given) = drop.sender.as_deref().map(str::trim) else {
        return Ok(own.to_string());
    };
    if given.is_empty() || given == "<>" {
        return Ok(String::new());
    }
    let given = qualify(
        given.trim_start_matches('<').trim_end_matches('>'),
        own_domain(own),
    );
    let mailbox = Mailbox::parse(&given)
        .map_err(|_| PickupError::Unusable(format!("-f {given:?} is not an address")))?;
    if owner.privileged || mailbox.key() == own.to_lowercase() || !local(mailbox.domain.as_str()) {
        return Ok(given);
    }
    Err(PickupError::Forbidden(format!(
        "user {} (uid {}) gave -f {given}, another local user's address; only root and the \
         mail system may",
        owner.name, owner.uid
    )))
}

/// The domain of `user@domain`.
fn own_domain(own: &str) -> &str {
    own.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

/// A `From:` naming the sender when the message has none (and the message's header section is
/// whole); nothing otherwise. A null sender gives the mail system's own name.
fn from_field(text: &[u8], full_name: Option<&str>, sender: &str) -> Vec<u8> {
    let h = mailroom_proto::header::header(text);
    if !h.complete || h.fields.iter().any(|f| f.is(text, "from")) {
        return Vec::new();
    }
    let address = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    match full_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => {
            let name = mail_builder::headers::address::Address::new_address(
                Some(name.to_string()),
                address.to_string(),
            );
            let mut out = b"From: ".to_vec();
            // (Encodes a non-ASCII name, RFC 2047; quotes specials.)
            let _ = mail_builder::headers::Header::write_header(&name, &mut out, 6);
            if !out.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
            out
        }
        None => format!("From: {address}\r\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: u32, privileged: bool) -> Owner {
        Owner {
            uid,
            name: "alice".into(),
            privileged,
        }
    }

    #[test]
    fn a_user_may_name_only_their_own_local_address_as_sender() {
        let local = |d: &str| d == "example.test";
        let cases: &[(Option<&str>, bool, Result<&str, ()>)] = &[
            (None, false, Ok("alice@example.test")),
            (Some("alice@example.test"), false, Ok("alice@example.test")),
            (Some("alice"), false, Ok("alice@example.test")),
            (Some("<>"), false, Ok("")),
            (Some(""), false, Ok("")),
            (
                Some("alice@elsewhere.test"),
                false,
                Ok("alice@elsewhere.test"),
            ),
            (Some("bob@example.test"), false, Err(())),
            (Some("Bob@Example.TEST"), false, Err(())),
            (Some("postmaster"), false, Err(())),
            (Some("bob@example.test"), true, Ok("bob@example.test")),
            (Some("not an address"), true, Err(())),
        ];
        for (given, privileged, want) in cases {
            let drop = Drop {
                sender: given.map(str::to_string),
                recipients: vec!["x".into()],
                ..Drop::default()
            };
            let got = sender(
                &drop,
                &owner(1000, *privileged),
                "alice@example.test",
                &local,
            );
            assert_eq!(
                got.map_err(|_| ()),
                want.map(str::to_string),
                "{given:?} {privileged}"
            );
        }
    }

    #[test]
    fn a_message_without_from_gets_one() {
        let cases: &[(&[u8], Option<&str>, &str, &str)] = &[
            (
                b"Subject: x\r\n\r\nbody",
                None,
                "a@b.test",
                "From: a@b.test\r\n",
            ),
            (
                b"Subject: x\r\n\r\nbody",
                Some("Cron Daemon"),
                "a@b.test",
                "From: \"Cron Daemon\" <a@b.test>\r\n",
            ),
            (b"From: me@x.test\r\n\r\nbody", Some("Cron"), "a@b.test", ""),
            (b"FROM: me@x.test\r\n\r\n", None, "a@b.test", ""),
            (b"Subject: x\r\n\r\n", None, "", "From: MAILER-DAEMON\r\n"),
        ];
        for (text, name, sender, want) in cases {
            let got = from_field(text, *name, sender);
            assert_eq!(String::from_utf8_lossy(&got), *want, "{text:?}");
        }
        let encoded = from_field(b"\r\n", Some("Jürgen"), "j@b.test");
        assert!(encoded.starts_with(b"From: =?utf-8?"), "{encoded:?}");
    }

    #[test]
    fn bare_names_take_the_origin() {
        assert_eq!(qualify("root", "example.test"), "root@example.test");
        assert_eq!(qualify(" bob@x.test ", "example.test"), "bob@x.test");
    }
}
