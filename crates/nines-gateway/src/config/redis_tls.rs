//! `[redis] tls_ca_file`, `tls_cert_file`, `tls_key_file`: the PEM files of a TLS link
//! (`rediss://`, `rediss+sentinel://`), read and checked when the configuration loads, so a file
//! that is missing, unreadable, not PEM, or a key that does not belong to its certificate is a
//! config error that names the key (`nines check` shows it) rather than a connection that fails
//! later. The link (`replicas/link.rs`) hands the bytes to the redis crate's own TLS support.
//!
//! Paths are relative to the configuration file's directory. The CAs of `tls_ca_file` are the
//! only ones trusted (instead of the system's roots): a Redis behind a private CA is the usual
//! case, and trusting every public CA besides would let any certificate they sign pass.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// The TLS material of the link; empty when no `tls_*` key is set (a `rediss://` URL then
/// verifies against the system's roots).
#[derive(Clone, Default, PartialEq)]
pub struct RedisTls {
    /// PEM of the CAs to trust.
    pub ca: Option<Vec<u8>>,
    /// The client certificate for mutual TLS.
    pub client: Option<ClientCert>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq)]
pub struct ClientCert {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which files are set, never their bytes (the key is a secret).
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl RedisTls {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
}

/// The three keys as written (paths), and the directory they are relative to.
pub(super) struct Files<'a> {
    pub ca: Option<&'a str>,
    pub cert: Option<&'a str>,
    pub key: Option<&'a str>,
    pub dir: &'a Path,
}

/// Reads and checks the files; an error names its key (`redis.tls_…`) and says why.
pub(super) fn load(files: &Files<'_>) -> Result<RedisTls, (String, String)> {
    let client = match (files.cert, files.key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err((
                "redis.tls_key_file".into(),
                "tls_cert_file is set: give its private key too (both or neither)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "redis.tls_cert_file".into(),
                "tls_key_file is set: give its certificate too (both or neither)".into(),
            ));
        }
        (Some(cert), Some(key)) => Some(client_cert(files.dir, cert, key)?),
    };
    let ca = match files.ca {
        Some(ca) => Some(ca_bundle(files.dir, ca)?),
        None => None,
    };
    Ok(RedisTls { ca, client })
}

fn read(dir: &Path, path: &str, key: &str) -> Result<Vec<u8>, (String, String)> {
    let path = dir.join(path);
    std::fs::read(&path).map_err(|e| (key.into(), format!("cannot read {}: {e}", path.display())))
}

/// The certificates of a PEM file: at least one, each parsable.
fn certificates(
    bytes: &[u8],
    path: &str,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, (String, String)> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                key.into(),
                format!("{path}: not a PEM certificate file: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err((
            key.into(),
            format!("{path}: no certificate in the file (PEM: -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(certs)
}

fn ca_bundle(dir: &Path, path: &str) -> Result<Vec<u8>, (String, String)> {
    const KEY: &str = "redis.tls_ca_file";
    let bytes = read(dir, path, KEY)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&bytes, path, KEY)? {
        roots.add(cert).map_err(|e| {
            (
                KEY.into(),
                format!("{path}: not a usable CA certificate: {e}"),
            )
        })?;
    }
    Ok(bytes)
}

fn client_cert(
    dir: &Path,
    cert_path: &str,
    key_path: &str,
) -> Result<ClientCert, (String, String)> {
    let cert = read(dir, cert_path, "redis.tls_cert_file")?;
    let chain = certificates(&cert, cert_path, "redis.tls_cert_file")?;
    let key = read(dir, key_path, "redis.tls_key_file")?;
    // The parser's error may quote what it read; the file is a secret, so only its name is said.
    let private = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
        (
            "redis.tls_key_file".to_owned(),
            format!("{key_path}: no PEM private key in the file (PKCS#8, PKCS#1 or SEC1)"),
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        (
            "redis.tls_key_file".to_owned(),
            format!("{key_path}: not the private key of the certificate in {cert_path} ({e})"),
        )
    })?;
    Ok(ClientCert { cert, key })
}
