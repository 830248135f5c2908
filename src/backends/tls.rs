//! TLS to the HTTP backends: one rustls client configuration per backend,
//! and the words for a refused certificate.
//!
//! Verification is never turned off. The server is checked against the
//! system's roots plus the configured `ca_file`, which covers the managed
//! clusters (public CAs) and a company's own CA alike.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, RootCertStore};

use super::Backend;
use crate::config::TlsConfig;

/// The rustls configuration for `backend`: system roots and `tls.ca_file`,
/// and the client certificate if one is configured. Every error names the
/// backend's key and the file.
pub fn client_config(backend: Backend, tls: &TlsConfig) -> anyhow::Result<rustls::ClientConfig> {
    let section = backend.name();
    let mut roots = RootCertStore::empty();
    // A host without a CA bundle (a scratch image) still works with `ca_file`.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() && tls.ca().is_none() {
        anyhow::bail!("{section}: no trusted CA: the system has no CA bundle and {section}.tls.ca_file is not set");
    }
    with_roots(backend, tls, roots)
}

/// What [`client_config`] checks of the configured files (the CA file, the
/// client certificate and whether its key fits), without reading the system
/// roots: for a client that builds its TLS itself and reads them on its own
/// (Elasticsearch's).
pub fn check_files(backend: Backend, tls: &TlsConfig) -> anyhow::Result<()> {
    with_roots(backend, tls, RootCertStore::empty()).map(|_| ())
}

/// `roots` plus `tls.ca_file`, and the client certificate if configured.
fn with_roots(backend: Backend, tls: &TlsConfig, mut roots: RootCertStore) -> anyhow::Result<rustls::ClientConfig> {
    let section = backend.name();
    if let Some(ca) = tls.ca() {
        let certs = read_certs(ca).map_err(|e| anyhow::anyhow!("{section}.tls.ca_file = {:?}: {e}", ca.display()))?;
        for c in certs {
            roots.add(c).map_err(|e| {
                anyhow::anyhow!("{section}.tls.ca_file = {:?}: not a usable CA certificate: {e}", ca.display())
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("{section}: TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match tls.client_identity() {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)
                .map_err(|e| anyhow::anyhow!("{section}.tls.client_cert_file = {:?}: {e}", cert.display()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow::anyhow!("{section}.tls.client_key_file = {:?}: no PEM private key: {e}", key.display())
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                anyhow::anyhow!(
                    "{section}.tls.client_cert_file and client_key_file: the key does not fit the certificate: {e}"
                )
            })?
        }
    };
    Ok(config)
}

/// Every certificate in a PEM file; none is an error.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("cannot read it: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("no PEM certificate in it");
    }
    Ok(certs)
}

/// Says why a TLS handshake failed, when `err` (or anything it wraps) is a
/// TLS error: the words an operator needs to fix it. None for other errors.
pub fn explain(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(t));
        }
        // io::Error's `source` skips the error it wraps: look inside it.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = explain(inner) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (unknown issuer): set tls.ca_file to the CA that signed it".into()
            }
            CertificateError::NotValidForName => "the server's certificate is not valid for this host name (name mismatch)".into(),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "the server's certificate is not valid for {} (name mismatch; it names {})",
                expected.to_str(),
                if presented.is_empty() { "no host".to_string() } else { presented.join(", ") }
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (or this machine's clock is wrong)".into()
            }
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            other => format!("the server's certificate is refused: {other:?}"),
        },
        E::AlertReceived(AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure) => {
            "the server refused the handshake: it may require a client certificate (tls.client_cert_file and tls.client_key_file)".into()
        }
        E::AlertReceived(a @ (AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown)) => format!("the server refused our client certificate ({a:?})"),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Adds the TLS explanation, if any, to a backend call's error text.
pub fn annotate(detail: String, err: &(dyn StdError + 'static)) -> String {
    match explain(err) {
        Some(why) => format!("TLS: {why} ({detail})"),
        None => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_a_rustls_error_wrapped_in_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let wrapped = anyhow::Error::new(io).context("error sending request");
        let why = explain(wrapped.as_ref()).expect("found");
        assert!(why.contains("unknown issuer"), "{why}");
        assert!(explain(anyhow::anyhow!("connection refused").as_ref()).is_none());
    }

    #[test]
    fn a_name_mismatch_names_both_sides() {
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("es.example.com").unwrap(),
            presented: vec!["DnsName(\"other.example\")".into()],
        });
        let why = describe(&e);
        assert!(why.contains("es.example.com") && why.contains("name mismatch"), "{why}");
    }

    #[test]
    fn missing_and_mismatched_files_name_the_key() {
        let tls = TlsConfig { ca_file: "/nonexistent/ca.pem".into(), ..Default::default() };
        let err = client_config(Backend::ClickHouse, &tls).unwrap_err().to_string();
        assert!(err.contains("clickhouse.tls.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = TlsConfig { ca_file: empty.display().to_string(), ..Default::default() };
        let err = client_config(Backend::SchemaRegistry, &tls).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
