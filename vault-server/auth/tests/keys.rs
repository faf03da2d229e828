//! The root key file: generate, save (0600), load, public key export.

use std::os::unix::fs::PermissionsExt;

use coffer_auth::{KeyError, RootKeyPair, RootPublicKey};

#[test]
fn save_then_load_gives_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    let key = RootKeyPair::generate();
    key.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let loaded = RootKeyPair::load(&path).unwrap();
    assert_eq!(loaded.public_key(), key.public_key());
}

#[test]
fn save_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    let first = RootKeyPair::generate();
    first.save(&path).unwrap();
    let err = RootKeyPair::generate().save(&path).unwrap_err();
    assert!(matches!(err, KeyError::Exists { .. }), "{err}");
    assert_eq!(RootKeyPair::load(&path).unwrap().public_key(), first.public_key());
}

#[test]
fn load_refuses_files_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    RootKeyPair::generate().save(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = RootKeyPair::load(&path).unwrap_err();
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
}

#[test]
fn load_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    std::fs::write(&path, "not a key").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        RootKeyPair::load(&path).unwrap_err(),
        KeyError::InvalidPrivateKey { .. }
    ));
    let missing = dir.path().join("missing.pem");
    assert!(matches!(RootKeyPair::load(&missing).unwrap_err(), KeyError::Io { .. }));
}

#[test]
fn load_or_generate_creates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    let a = RootKeyPair::load_or_generate(&path).unwrap();
    let b = RootKeyPair::load_or_generate(&path).unwrap();
    assert_eq!(a.public_key(), b.public_key());
}

#[test]
fn public_key_exports_round_trip() {
    let key = RootKeyPair::generate().public_key();
    let hex = key.to_hex();
    assert!(hex.starts_with("ed25519/"), "{hex}");
    assert_eq!(hex.len(), "ed25519/".len() + 64);
    assert_eq!(hex.parse::<RootPublicKey>().unwrap(), key);
    assert_eq!(key.to_string(), hex);
    let pem = key.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert_eq!(RootPublicKey::from_pem(&pem).unwrap(), key);
    assert!("ed25519/zz".parse::<RootPublicKey>().is_err());
}

#[test]
fn debug_does_not_print_the_private_key() {
    let key = RootKeyPair::generate();
    let dbg = format!("{key:?}");
    assert!(dbg.contains(&key.public_key().to_hex()));
    assert!(!dbg.to_lowercase().contains("private"), "{dbg}");
}
