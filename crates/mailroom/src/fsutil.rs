//! Writing a small file so that a crash leaves either the old file or the new one, whole.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` with permissions `mode`: into a temporary file of its own name
/// (two writers at once never share one), synced, renamed over `path`, the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Syncs the directory that holds `path`, so that a rename or a new name in it survives a
/// crash. Fails when the directory cannot be opened or synced: the caller must not take the
/// file for durable (issue 21: this used to be ignored).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_be_synced_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        write_atomic(&file, b"x", 0o600).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        sync_parent(&file).unwrap();
        let gone = dir.path().join("gone").join("f");
        let e = sync_parent(&gone).unwrap_err();
        assert!(e.to_string().contains("cannot sync"), "{e}");
        // A bare file name is in the working directory, which is synced too.
        sync_parent(Path::new("f")).unwrap();
    }
}
