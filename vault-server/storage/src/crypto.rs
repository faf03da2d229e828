//! Keys and encryption.
//!
//! * The server's [`MasterKey`] is an age X25519 identity. It wraps every
//!   vault's random 256-bit data key (DEK); only the wrapped DEK is stored.
//! * A vault's [`VaultKeys`] are derived from its DEK with HKDF-SHA256, one
//!   subkey per use: AEAD for commit-log payloads and manifests, the Parquet
//!   modular-encryption key, and a MAC key that turns row ids into opaque,
//!   indexable hashes.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use age::secrecy::ExposeSecret;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::StorageError;

const NONCE_LEN: usize = 12;

/// The server's master key: an age X25519 identity that wraps vault data keys.
pub struct MasterKey {
    identity: age::x25519::Identity,
}

impl MasterKey {
    /// Loads the identity from `path`, or creates it (file mode 0600) when the
    /// file does not exist. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), StorageError> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                    .ok_or_else(|| StorageError::Key(format!("{}: no age identity found", path.display())))?;
                let identity = age::x25519::Identity::from_str(line)
                    .map_err(|e| StorageError::Key(format!("{}: {e}", path.display())))?;
                Ok((Self { identity }, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = age::x25519::Identity::generate();
                write_secret_file(
                    path,
                    format!(
                        "# Coffer master key. Whoever holds this file can read every vault.\n# public key: {}\n{}\n",
                        identity.to_public(),
                        identity.to_string().expose_secret()
                    )
                    .as_bytes(),
                )?;
                Ok((Self { identity }, true))
            }
            Err(e) => Err(StorageError::Io(e)),
        }
    }

    /// Wraps a data key to this master key.
    pub fn wrap(&self, dek: &DataKey) -> Result<Vec<u8>, StorageError> {
        age::encrypt(&self.identity.to_public(), dek.0.as_slice())
            .map_err(|e| StorageError::Key(format!("wrapping data key: {e}")))
    }

    /// Unwraps a data key wrapped by [`MasterKey::wrap`].
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, StorageError> {
        let plain = Zeroizing::new(
            age::decrypt(&self.identity, wrapped)
                .map_err(|e| StorageError::Key(format!("unwrapping data key: {e}")))?,
        );
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Key("wrapped data key has the wrong length".into()))?;
        Ok(DataKey(Zeroizing::new(bytes)))
    }
}

/// Writes `contents` to a new file readable only by its owner (mode 0600).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// A vault's random 256-bit data key. Zeroed on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// Derives the per-use subkeys of a vault.
    pub fn derive(&self) -> VaultKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"coffer vault keys v1"), self.0.as_slice());
        let expand = |info: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            hk.expand(info, out.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 length");
            out
        };
        let aead_key = expand(b"aead");
        let parquet_key = expand(b"parquet");
        let row_key = expand(b"row-id-mac");
        VaultKeys {
            aead: Aes256Gcm::new_from_slice(aead_key.as_slice()).expect("32-byte key"),
            parquet_key,
            row_mac: <Hmac<Sha256> as Mac>::new_from_slice(row_key.as_slice()).expect("any key length"),
        }
    }
}

/// The working keys of one vault, derived from its data key.
pub struct VaultKeys {
    aead: Aes256Gcm,
    parquet_key: Zeroizing<[u8; 32]>,
    row_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKeys(..)")
    }
}

impl VaultKeys {
    /// Encrypts `plaintext` with AES-256-GCM under a random nonce, binding it to
    /// `aad` (for example vault/table/row id). Output: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`VaultKeys::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        if sealed.len() < NONCE_LEN {
            return Err(StorageError::Corrupt("sealed payload too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| StorageError::Corrupt("payload failed authentication".into()))
    }

    /// A keyed 16-byte hash of a row id within a table: indexable in the
    /// control database and in file bloom filters, yet reveals nothing about
    /// the id to someone without the vault key.
    pub fn row_hash(&self, table: &str, id: &str) -> [u8; 16] {
        let mut mac = self.row_mac.clone();
        mac.update(table.as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Parquet modular encryption for writing: every column and the footer
    /// encrypted with the vault's Parquet key (AES-GCM).
    pub fn parquet_encryption(&self) -> Result<Arc<FileEncryptionProperties>, StorageError> {
        Ok(FileEncryptionProperties::builder(self.parquet_key.to_vec()).build()?)
    }

    /// Parquet decryption properties matching [`VaultKeys::parquet_encryption`].
    pub fn parquet_decryption(&self) -> Result<Arc<FileDecryptionProperties>, StorageError> {
        Ok(FileDecryptionProperties::builder(self.parquet_key.to_vec()).build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_wraps_and_unwraps_and_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (master, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let dek = DataKey::generate();
        let wrapped = master.wrap(&dek).unwrap();
        let (again, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        let unwrapped = again.unwrap(&wrapped).unwrap();
        assert_eq!(unwrapped.0.as_slice(), dek.0.as_slice());
    }

    #[test]
    fn sealed_payload_is_bound_to_its_associated_data() {
        let keys = DataKey::generate().derive();
        let sealed = keys.seal(b"v/t/1", b"hello");
        assert_eq!(keys.open(b"v/t/1", &sealed).unwrap(), b"hello");
        assert!(keys.open(b"v/t/2", &sealed).is_err());
        let other = DataKey::generate().derive();
        assert!(other.open(b"v/t/1", &sealed).is_err());
    }

    #[test]
    fn row_hash_is_keyed() {
        let a = DataKey::generate().derive();
        let b = DataKey::generate().derive();
        assert_eq!(a.row_hash("t", "x"), a.row_hash("t", "x"));
        assert_ne!(a.row_hash("t", "x"), a.row_hash("t", "y"));
        assert_ne!(a.row_hash("t", "x"), b.row_hash("t", "x"));
    }
}
