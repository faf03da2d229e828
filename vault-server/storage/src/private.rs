//! The data directory is private to the server's user (decision 0016):
//! every directory Coffer creates in it is mode 0700 and every file 0600,
//! whatever the process umask. The modes are set at creation where Coffer
//! creates the entry itself, and right after creation where a library does
//! (SQLite's database file is created here first, so its `-wal` and `-shm`
//! files, which SQLite gives the database file's mode, are 0600 too; the
//! local object store's files and directories are set after each put).

use std::io;
use std::path::Path;

/// Mode of every directory in the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700, and makes an
/// existing `dir` 0700 (a data directory from an older version).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)?;
    set_mode(dir, DIR_MODE)
}

/// Creates the file `path` empty with mode 0600 unless it exists; makes an
/// existing file 0600.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options.open(path)?;
    set_mode(path, FILE_MODE)
}

/// Sets `path`'s permission bits to `mode` unless they already are (a no-op
/// on systems without Unix modes).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)?.permissions();
        if current.mode() & 0o7777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Like [`set_mode`], but a missing `path` is not an error.
pub fn set_mode_if_exists(path: &Path, mode: u32) -> io::Result<()> {
    match set_mode(path, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_entries_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("f");
        std::fs::write(&file, b"keep").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"keep",
            "an existing file is not truncated"
        );
        let new = dir.join("g");
        create_private_file(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        set_mode_if_exists(&dir.join("missing"), FILE_MODE).unwrap();
    }
}
