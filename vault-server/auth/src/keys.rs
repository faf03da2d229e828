//! The server's root key pair, which signs every capability token.
//!
//! The private key is an Ed25519 key stored as PKCS#8 PEM in a file only its
//! owner can read (mode 0600). The public key is published in the OAuth
//! metadata, in biscuit's text form `ed25519/<64 hex digits>` or as PEM.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use biscuit_auth::{KeyPair, PublicKey};
use zeroize::Zeroizing;

/// Error for loading, saving or reading a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file already exists; saving never overwrites a root key.
    #[error("key file {} already exists; refusing to overwrite a root key", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file may be read or written by other users.
    #[error("key file {} is accessible to other users (mode {mode:o}); make it 0600", path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold an Ed25519 private key in PKCS#8 PEM form.
    #[error("key file {} does not hold an Ed25519 private key (PKCS#8 PEM)", path.display())]
    InvalidPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A public key text does not parse.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Key files are small; anything larger is not a key.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Refuses a secret key file (at `path`, with metadata `meta`) that users
/// other than its owner may read or write: any group or other permission
/// bit is [`KeyError::InsecurePermissions`]. The root key and the storage
/// master key are both checked with it. Does nothing on non-Unix systems.
pub fn check_private_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// [`check_private_permissions`] for the file at `path`, if it exists
/// (a missing file is fine: it is created private).
pub fn check_private_file(path: &Path) -> Result<(), KeyError> {
    match fs::metadata(path) {
        Ok(meta) => check_private_permissions(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// The root key pair: signs capability tokens.
pub struct RootKeyPair {
    key: KeyPair,
}

impl fmt::Debug for RootKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKeyPair")
            .field("public", &self.public_key().to_string())
            .finish_non_exhaustive()
    }
}

impl RootKeyPair {
    /// A new random Ed25519 key pair (from the operating system's RNG).
    pub fn generate() -> Self {
        RootKeyPair { key: KeyPair::new() }
    }

    /// The public half, for verifying tokens.
    pub fn public_key(&self) -> RootPublicKey {
        RootPublicKey(self.key.public())
    }

    /// The biscuit key pair, for signing.
    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }

    /// Writes the private key to a new file `path` with mode 0600 (PKCS#8
    /// PEM). Refuses to overwrite an existing file: replacing the root key
    /// invalidates every token.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self
            .key
            .to_private_key_pem()
            .map_err(|_| KeyError::InvalidPrivateKey { path: path.to_owned() })?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists { path: path.to_owned() }
            } else {
                io_error(path)(e)
            }
        })?;
        let written = file.write_all(pem.as_bytes()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            // Do not leave a truncated key behind.
            let _ = fs::remove_file(path);
            return Err(io_error(path)(e));
        }
        // Make the new directory entry durable too (best effort).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a private key written by [`RootKeyPair::save`]. Refuses a file
    /// that other users may read or write.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut file = fs::File::open(path).map_err(io_error(path))?;
        let meta = file.metadata().map_err(io_error(path))?;
        check_private_permissions(path, &meta)?;
        if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::InvalidPrivateKey { path: path.to_owned() });
        }
        let mut pem = Zeroizing::new(String::new());
        file.read_to_string(&mut pem).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                KeyError::InvalidPrivateKey { path: path.to_owned() }
            } else {
                io_error(path)(e)
            }
        })?;
        let key = KeyPair::from_private_key_pem_with_algorithm(pem.trim(), biscuit_auth::builder::Algorithm::Ed25519)
            .map_err(|_| KeyError::InvalidPrivateKey { path: path.to_owned() })?;
        Ok(RootKeyPair { key })
    }

    /// Loads the key at `path`, or generates and saves one if the file does
    /// not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let key = Self::generate();
                match key.save(path) {
                    Ok(()) => Ok(key),
                    // Another process created it first: use theirs.
                    Err(KeyError::Exists { .. }) => Self::load(path),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }
}

/// The root public key: verifies capability tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RootPublicKey(pub(crate) PublicKey);

impl RootPublicKey {
    /// Biscuit's text form, `ed25519/<64 hex digits>`, for the OAuth metadata.
    pub fn to_hex(&self) -> String {
        self.0.to_string()
    }

    /// The key as a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0.to_pem().map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
    }

    /// Reads a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        PublicKey::from_pem(pem)
            .map(RootPublicKey)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
    }
}

impl fmt::Display for RootPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RootPublicKey {
    type Err = KeyError;
    /// Reads biscuit's text form `ed25519/<hex>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_str(s)
            .map(RootPublicKey)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
    }
}
