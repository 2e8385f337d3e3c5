//! The maildrop: where `sendmail` leaves a local program's message, whether or not the server
//! runs, and where the server's pickup ([`super::pickup`]) takes it from (Postfix's maildrop
//! and pickup).
//!
//! A drop file is one line of JSON (the envelope a program asked for), a line feed, and the
//! message text with CRLF line ends. `sendmail` writes it under a name starting with `.`, syncs
//! it, and renames it to its final name, so pickup never sees half a file.
//!
//! The directory is `DATA/maildrop`, mode `1733` (like `/tmp` without reading): every local
//! user may create a file there, nobody but the server can list it, and the sticky bit keeps
//! users from removing each other's files. A file's *owner* says who sent it: the kernel set
//! it, so a user cannot claim another's identity, and pickup gives the envelope sender from it
//! (a local user's `-f` may name only their own address; see [`super::pickup`]). Names are
//! 128 random bits, so a user who cannot list the directory cannot guess another's file.
//!
//! Only the format and the writing are here; they need no server. Reading is pickup's.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory's name in the data directory.
pub const DIR: &str = "maildrop";

/// Where pickup moves a drop file it cannot take (unreadable, not a drop file, a forged
/// sender): kept for the administrator, never silently dropped.
pub const QUARANTINE: &str = "maildrop-quarantine";

/// The first bytes of every drop file's JSON line, so that pickup tells a drop file from
/// anything else put there.
const MAGIC: &str = "{\"maildrop\":1,";

/// The envelope a local program asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drop {
    /// Always 1 (the format's version; [`MAGIC`] starts with it).
    pub maildrop: u32,
    /// The envelope sender given with `-f`/`-r` (`""` for the null sender); absent, the
    /// owner's own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The full name given with `-F`, for a `From:` that pickup adds when the message has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The recipients as given: addresses, or bare local names that pickup completes with
    /// `server.origin`.
    pub recipients: Vec<String>,
    /// DSN `NOTIFY` for every recipient (`-N`: `never`, or a list of `success`, `delay`,
    /// `failure`), RFC 3461 §4.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// DSN `RET` (`-R`: `full` or `hdrs`), RFC 3461 §4.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// DSN `ENVID` (`-V`), RFC 3461 §4.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
}

/// A file that is not a drop file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DropError {
    /// No envelope line, or not ours.
    #[error("not a maildrop file (no envelope line)")]
    NotADrop,
    /// The envelope line does not parse.
    #[error("its envelope line does not parse: {0}")]
    Envelope(String),
    /// No recipient.
    #[error("it names no recipient")]
    NoRecipient,
}

impl Drop {
    /// The file's bytes: the envelope line and `text`.
    pub fn encode(&self, text: &[u8]) -> Vec<u8> {
        let mut d = self.clone();
        d.maildrop = 1;
        // (Serializing a struct of strings cannot fail; the field order puts `maildrop` first.)
        let mut out = serde_json::to_vec(&d).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(text);
        out
    }

    /// The envelope and the text of a drop file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<(Drop, &[u8]), DropError> {
        if !bytes.starts_with(MAGIC.as_bytes()) {
            return Err(DropError::NotADrop);
        }
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(DropError::NotADrop)?;
        let (line, rest) = bytes.split_at(nl);
        let d: Drop =
            serde_json::from_slice(line).map_err(|e| DropError::Envelope(e.to_string()))?;
        if d.recipients.is_empty() {
            return Err(DropError::NoRecipient);
        }
        Ok((d, rest.get(1..).unwrap_or_default()))
    }
}

/// Writes a drop file into `dir` durably: a hidden temporary name, synced, renamed to a name of
/// 128 random bits, and the directory synced. Returns the final path.
pub fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!(".{name}"));
    let done = dir.join(&name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // Readable by the server's user (the file's owner is the sender); nobody else can
        // list the directory to find it.
        .mode(0o644)
        .open(&tmp)?;
    // (The mode above is reduced by the user's umask, 077 for many: set it whatever that is,
    // or the server cannot read the file.)
    let written = {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| f.write_all(bytes))
            .and_then(|()| f.sync_all())
    };
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &done)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable only once the directory is synced; a user who may write
    // into the directory may not be able to open it for reading, and then the file's own sync
    // has to do (pickup finds it under one of its two names).
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all()?;
    }
    Ok(done)
}

/// Makes `DATA/maildrop` (mode `1733`) and keeps the data directory traversable by local users
/// (`o+x`: they can reach the maildrop, not list or read anything; every file in it is the
/// server's, mode `0600`, or in a `0700` directory). Called by the server at start-up.
pub fn prepare(data: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = data.join(DIR);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1733))?;
    let mode = std::fs::metadata(data)?.permissions().mode() & 0o7777;
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_survives_encoding() {
        let d = Drop {
            maildrop: 1,
            sender: Some(String::new()),
            full_name: Some("Cron Daemon".into()),
            recipients: vec!["root".into(), "bob@example.test".into()],
            notify: Some("failure".into()),
            ret: None,
            envid: Some("x1".into()),
        };
        let text = b"Subject: hi\r\n\r\nbody\r\n";
        let bytes = d.encode(text);
        assert_eq!(Drop::decode(&bytes), Ok((d, &text[..])));
    }

    #[test]
    fn what_is_not_a_drop_is_told_apart() {
        let cases: &[(&[u8], DropError)] = &[
            (b"", DropError::NotADrop),
            (b"root:x:0:0:root:/root:/bin/bash\n", DropError::NotADrop),
            (b"{\"maildrop\":1,\"recipients\":[]}", DropError::NotADrop),
            (
                b"{\"maildrop\":1,\"recipients\":[]}\n",
                DropError::NoRecipient,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Drop::decode(bytes).err().as_ref(), Some(want), "{bytes:?}");
        }
        assert!(matches!(
            Drop::decode(b"{\"maildrop\":1,\"recipients\":5}\n"),
            Err(DropError::Envelope(_))
        ));
    }

    #[test]
    fn a_written_drop_has_its_final_name_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"x").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].len(), 32);
        assert_eq!(std::fs::read(path).unwrap(), b"x");
    }
}
