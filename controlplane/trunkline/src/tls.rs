//! The server side of SIP over TLS (RFC 3261 §26.2, port 5061 by convention): the
//! `rustls` configuration of a `transport = "tls"` listener, built from its PEM files.
//!
//! The connections themselves run in the TCP event loop ([`crate::tcp`]): a TLS connection
//! is a TCP connection whose bytes pass through a [`rustls::ServerConnection`]. TLS 1.2 and
//! 1.3 with the `ring` provider's safe defaults; no client certificates, one certificate
//! for every name (no SNI selection).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The TLS configuration of a listener serving the certificate chain in `cert` (PEM, the
/// end-entity certificate first) with the private key in `key` (PEM: PKCS#8, PKCS#1 RSA or
/// SEC1 EC). Errors name the file and what is wrong with it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")",
            cert.display()
        ));
    }
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "{}: no private key (expected PEM PKCS#8, RSA or EC PRIVATE KEY): {e}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "{} with {}: unusable certificate or key: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("trunkline-tls-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn loads_a_certificate_and_key() {
        let d = dir("ok");
        let (cert, key) = self_signed();
        std::fs::write(d.join("c.pem"), cert).unwrap();
        std::fs::write(d.join("k.pem"), key).unwrap();
        server_config(&d.join("c.pem"), &d.join("k.pem")).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let d = dir("bad");
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        std::fs::write(d.join("c.pem"), &cert).unwrap();
        std::fs::write(d.join("k.pem"), &key).unwrap();
        std::fs::write(d.join("other.pem"), &other_key).unwrap();
        std::fs::write(d.join("junk.pem"), "hello\n").unwrap();
        let c = d.join("c.pem");
        let k = d.join("k.pem");

        let e = server_config(&d.join("missing.pem"), &k).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let e = server_config(&c, &d.join("nokey.pem")).unwrap_err();
        assert!(e.contains("nokey.pem"), "{e}");
        let e = server_config(&d.join("junk.pem"), &k).unwrap_err();
        assert!(
            e.contains("junk.pem") && e.contains("no certificate"),
            "{e}"
        );
        // A key file holding a certificate, a certificate file holding a key.
        let e = server_config(&c, &c).unwrap_err();
        assert!(e.contains("c.pem") && e.contains("no private key"), "{e}");
        let e = server_config(&k, &k).unwrap_err();
        assert!(e.contains("k.pem") && e.contains("no certificate"), "{e}");
        // A key that is not the certificate's.
        let e = server_config(&c, &d.join("other.pem")).unwrap_err();
        assert!(e.contains("unusable"), "{e}");
    }
}
