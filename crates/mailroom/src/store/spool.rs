//! The spool: large message texts as files, written as they arrive.
//!
//! A session must not hold a whole message in memory: forty clients sending 20 MB each would
//! need 800 MB. So a text is kept in memory only up to `smtp.spool_threshold` octets; past that,
//! the session writes it to a file in `DATA/spool/` as it arrives, through a small fixed buffer
//! ([`SpoolWriter`]). Before the `250`, the file's data and its directory entry are synced
//! (`fdatasync`, then `fsync` of the directory), and the store's transaction that queues the
//! message names the file. Small texts, the common case, stay in the database, where one commit
//! makes many sessions' messages durable together (group commit); a file costs fsyncs of its own,
//! which only large messages are worth.
//!
//! **Life cycle.** A file belongs to the store once a committed content row names it. Until then
//! it belongs to the session: a [`SpoolGuard`] deletes it if the message is refused or the client
//! goes away; once the submission is in the store's hands, only the store's answer that it did
//! not commit deletes it ([`Submitted::failed`]). When the last reference to a content goes,
//! the transaction that deletes its row records the file as garbage (`spool_garbage`), and the
//! queue manager's periodic collection deletes it, reading only committed garbage (a release
//! that might still be rolled back never costs a file). A crash, or a session cut off while its
//! submission was pending, can leave a file that no committed row names (the message was never
//! acknowledged): [`Spool::sweep`] at start-up removes it.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

pub use crate::model::SpooledFile;

/// The spool directory's name inside the data directory.
pub const DIR_NAME: &str = "spool";

/// The spool directory of a data directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating, private to its owner) the spool directory `dir`.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    /// The spool directory `dir`, as it is (not created when missing: `doctor` and `repair`
    /// look at the data directory as they find it).
    pub fn at(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a spool file by its name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A writer for one message's text, named `name` (a queue ID: unique), that keeps up to
    /// `threshold` octets in memory.
    pub fn writer(&self, name: String, threshold: usize) -> SpoolWriter {
        SpoolWriter {
            spool: self.clone(),
            name,
            threshold,
            head: Vec::new(),
            file: None,
            size: 0,
            eight_bit: false,
        }
    }

    /// Deletes spool files that no stored content names (`referenced`): texts of messages that
    /// were never acknowledged. Run at start-up, before any session can be spooling.
    pub fn sweep(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if referenced.contains(&name) || !entry.file_type()?.is_file() {
                continue;
            }
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Deletes a spool file; one already gone is fine (collection may run twice).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Writes one message's text: in memory up to the threshold, then to its spool file.
pub struct SpoolWriter {
    spool: Spool,
    name: String,
    threshold: usize,
    /// The text while it stays in memory; once spooling, its first octets (for the header scan).
    head: Vec<u8>,
    file: Option<(tokio::fs::File, SpoolGuard)>,
    size: u64,
    eight_bit: bool,
}

/// A received text, ready for ingest.
#[derive(Debug)]
pub enum Received {
    /// It stayed in memory.
    Memory(Vec<u8>),
    /// It is in a synced spool file; `head` holds its first octets.
    File {
        /// The file.
        file: SpooledFile,
        /// The first octets of the text (at least its header section, unless that is longer
        /// than the threshold).
        head: Vec<u8>,
        /// Deletes the file unless the submission that names it commits.
        guard: SpoolGuard,
    },
}

impl SpoolWriter {
    /// Adds text.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        self.eight_bit |= !chunk.is_ascii();
        if let Some((f, _)) = self.file.as_mut() {
            return f.write_all(chunk).await;
        }
        // The head keeps the text's first `threshold` octets, whether the text stays in memory
        // or not: ingest scans the header section in it.
        let room = self.threshold - self.head.len();
        if chunk.len() <= room {
            self.head.extend_from_slice(chunk);
            return Ok(());
        }
        self.head.extend_from_slice(&chunk[..room]);
        let chunk = &chunk[room..];
        // Past the threshold: from now on the text goes to a file. Opened exclusively, private.
        let path = self.spool.path(&self.name);
        let std_file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let guard = SpoolGuard {
            spool: self.spool.clone(),
            name: Some(self.name.clone()),
        };
        let mut f = tokio::fs::File::from_std(std_file);
        f.write_all(&self.head).await?;
        f.write_all(chunk).await?;
        self.file = Some((f, guard));
        Ok(())
    }

    /// Octets written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the text: a spooled one is synced, data and directory entry, before this returns.
    pub async fn finish(self) -> io::Result<Received> {
        let Some((mut f, guard)) = self.file else {
            return Ok(Received::Memory(self.head));
        };
        f.flush().await?;
        f.sync_data().await?;
        let dir = self.spool.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(io::Error::other)??;
        Ok(Received::File {
            file: SpooledFile {
                name: self.name,
                size: self.size,
                eight_bit: self.eight_bit,
            },
            head: self.head,
            guard,
        })
    }
}

/// Deletes a spool file when dropped, until [`SpoolGuard::handed_over`] gives it to the store.
#[derive(Debug)]
pub struct SpoolGuard {
    spool: Spool,
    name: Option<String>,
}

impl SpoolGuard {
    /// The submission that names the file has been handed to the store, and may commit even if
    /// whoever waits for it goes away: from now on the file is deleted only when the store
    /// answers that it did not commit ([`Submitted::failed`]). Should nobody be left to hear the
    /// answer (a session cut off at shutdown), the file stays, and if no committed row names it,
    /// the start-up sweep deletes it.
    pub fn handed_over(mut self) -> Submitted {
        Submitted {
            file: self.name.take().map(|n| (self.spool.clone(), n)),
        }
    }
}

/// A spool file whose submission is in the store's hands (see [`SpoolGuard::handed_over`]).
#[derive(Debug)]
#[must_use]
pub struct Submitted {
    file: Option<(Spool, String)>,
}

impl Submitted {
    /// The store answered that the submission did not commit: the file goes.
    pub fn failed(self) {
        if let Some((spool, name)) = self.file {
            if let Err(e) = spool.remove(&name) {
                tracing::warn!(file = %name, error = %e, "spool file not removed");
            }
        }
    }
}

impl Drop for SpoolGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            if let Err(e) = self.spool.remove(&name) {
                tracing::warn!(file = %name, error = %e, "spool file not removed");
            }
        }
    }
}
