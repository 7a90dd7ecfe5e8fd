//! Whom the client commands trust: the system's CAs, plus the PEM files
//! given with `--ca-file` and `SSL_CERT_FILE`. A certificate named in one
//! of those files is trusted as itself, even when it is a self-signed
//! certificate marked as a CA (what a plain `openssl req -x509` makes,
//! which webpki alone refuses as `CaUsedAsEndEntity` and Go's clients —
//! skopeo, Docker, containerd — accept): its names and dates are still
//! checked, and the handshake still proves the server holds its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The CA files a client command trusts: `--ca-file`, then `SSL_CERT_FILE`
/// (as OpenSSL and Go read it), each once.
pub fn ca_files(flag: Option<&Path>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = flag.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        let env = PathBuf::from(env);
        if !files.contains(&env) {
            files.push(env);
        }
    }
    files
}

/// The certificates in a PEM file.
fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A rustls client configuration trusting the system's CAs and `ca_files`.
pub fn client_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    let mut extra = Vec::new();
    for file in ca_files {
        extra.extend(read_pem(file)?);
    }
    config_trusting(extra)
}

/// The same, with the extra certificates given as PEM text (a CA stored
/// with a federated credential, say).
pub fn client_config_with_pem(pem: Option<&str>) -> Result<rustls::ClientConfig, TlsError> {
    let mut extra = Vec::new();
    if let Some(pem) = pem {
        extra = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::CaFile {
                path: "(PEM text)".into(),
                reason: e.to_string(),
            })?;
    }
    config_trusting(extra)
}

fn config_trusting(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in &extra {
        roots.add(cert.clone()).map_err(|e| TlsError::CaFile {
            path: "(CA certificates)".into(),
            reason: e.to_string(),
        })?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let verifier = Arc::new(Verifier {
        webpki,
        pinned: extra,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// webpki's verification, and for a certificate the user named in a CA
/// file, acceptance as itself where webpki refuses its shape.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Every certificate of the CA files.
    pinned: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// A pinned certificate presented as the server's: valid now and for
    /// the name the client asked for.
    fn accept_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let now = now.as_secs() as i64;
        let validity = parsed.validity();
        if now < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki says `CaUsedAsEndEntity` (a CA:TRUE self-signed
            // certificate) or `UnknownIssuer`; for a certificate the user
            // named, its own checks below decide (name, dates).
            Err(rustls::Error::InvalidCertificate(_))
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                self.accept_pinned(end_entity, server_name, now)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
