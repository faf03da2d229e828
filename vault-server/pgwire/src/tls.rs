//! TLS for the listener: a certificate chain and its private key from PEM
//! files, served with rustls (the `ring` provider), and whether a client
//! must use it. When TLS is required, a client that did not negotiate it
//! is refused at its startup message, before it is asked for the token,
//! so a token never crosses the network in cleartext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::tokio_rustls::rustls::crypto::ring;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol name of PostgreSQL's direct TLS negotiation.
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// Why the TLS configuration could not be loaded. Each names the file, never
/// its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{0}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found")]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error("{0}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found")]
    NoKey(PathBuf),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

/// The listener's TLS: the acceptor, and whether clients must use it.
#[derive(Clone)]
pub struct PgwireTls {
    pub(crate) acceptor: TlsAcceptor,
    /// Whether a client that did not negotiate TLS is refused.
    pub required: bool,
}

impl std::fmt::Debug for PgwireTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgwireTls").field("required", &self.required).finish()
    }
}

impl PgwireTls {
    /// Loads the certificate chain in `cert` (PEM, leaf first) and the
    /// private key in `key` (PEM). With `required`, clients that do not
    /// negotiate TLS are refused (`sslmode=require` and stricter connect;
    /// `sslmode=disable` does not).
    pub fn from_pem_files(cert: &Path, key: &Path, required: bool) -> Result<PgwireTls, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::NoCertificate(cert.to_owned()))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert.to_owned()));
        }
        let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NoKey(key.to_owned()))?;
        PgwireTls::from_der(chain, private, required)
    }

    /// The same from a chain and key already decoded.
    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        required: bool,
    ) -> Result<PgwireTls, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        // Clients that open with TLS directly (PostgreSQL 17's
        // `sslnegotiation=direct`) must offer this ALPN name.
        config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
        Ok(PgwireTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_a_certificate_and_key_and_names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &one.cert.pem());
        let key = write(dir.path(), "key.pem", &one.signing_key.serialize_pem());
        let other_key = write(dir.path(), "other.pem", &other.signing_key.serialize_pem());
        assert!(PgwireTls::from_pem_files(&cert, &key, true).unwrap().required);
        let missing = dir.path().join("missing.pem");
        let errors = [
            PgwireTls::from_pem_files(&missing, &key, true).unwrap_err(),
            PgwireTls::from_pem_files(&key, &key, true).unwrap_err(),
            PgwireTls::from_pem_files(&cert, &cert, true).unwrap_err(),
            PgwireTls::from_pem_files(&cert, &other_key, true).unwrap_err(),
        ];
        assert!(matches!(&errors[0], TlsError::Read { path, .. } if *path == missing));
        assert!(matches!(&errors[1], TlsError::NoCertificate(path) if *path == key));
        assert!(matches!(&errors[2], TlsError::NoKey(path) if *path == cert));
        assert!(matches!(&errors[3], TlsError::Config(_)), "{}", errors[3]);
        // No message carries key material.
        let secret = one.signing_key.serialize_pem();
        let body = secret.lines().nth(1).unwrap();
        for e in &errors {
            assert!(!e.to_string().contains(body), "{e}");
        }
    }
}
