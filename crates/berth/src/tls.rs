//! The server's TLS certificate: loaded from `[server] tls_cert` /
//! `tls_key` (PEM) and reloaded without a restart — on SIGHUP, and when
//! either file changes (checked every few seconds, which also catches a
//! Kubernetes Secret's symlink swap).
//!
//! The certificate is chosen per handshake ([`ResolvesServerCert`]), so a
//! reload applies to new connections while established ones keep theirs.
//! A new pair that does not load (unreadable, no certificate, a key that
//! does not belong to it) is refused with a log line and the one in use is
//! kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;

/// How often the certificate files are checked for a change.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it: a rename over
/// it, a rewrite or a symlink swap changes one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    length: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (device, inode) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (device, inode) = (0, 0);
    Some(FileStamp {
        device,
        inode,
        length: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// The certificate in use, and where it comes from.
#[derive(Debug)]
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files as they were at the last load attempt, good or bad: a
    /// refused pair is not retried until the files change again.
    seen: Mutex<(Option<FileStamp>, Option<FileStamp>)>,
}

/// The outcome of a reload, for the log and the tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The new certificate is in use; its SHA-256 fingerprint.
    Loaded(String),
    /// The new files were refused; the old certificate stays in use.
    Refused(String),
}

impl Certificates {
    fn load(&self) -> anyhow::Result<CertifiedKey> {
        load_pair(&self.cert_path, &self.key_path, &self.provider)
    }

    /// The fingerprint of the certificate in use.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Loads the files again; on success new handshakes use them.
    pub fn reload(&self, reason: &str) -> Reload {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            (stamp(&self.cert_path), stamp(&self.key_path));
        match self.load() {
            Ok(key) => {
                let print = fingerprint(&key);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                tracing::info!(
                    cert = %self.cert_path.display(),
                    reason,
                    sha256 = %print,
                    "TLS certificate reloaded; new connections use it"
                );
                Reload::Loaded(print)
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    reason,
                    error = %error,
                    sha256 = %self.fingerprint(),
                    "new TLS certificate refused; the one in use is kept"
                );
                Reload::Refused(error)
            }
        }
    }

    /// Reloads if either file changed since the last attempt.
    pub fn reload_if_changed(&self) -> Option<Reload> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now;
        changed.then(|| self.reload("the certificate files changed"))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|leaf| hex::encode(ring::digest::digest(&ring::digest::SHA256, leaf).as_ref()))
        .unwrap_or_default()
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds an unreadable certificate", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    CertifiedKey::from_der(certs, key_der, provider).with_context(|| {
        format!(
            "the TLS certificate {} and key {} do not fit together",
            cert.display(),
            key.display()
        )
    })
}

/// The rustls configuration from `[server] tls_cert` / `tls_key`, if
/// given, with the certificate source it reloads from.
pub fn server_config(
    config: &Config,
) -> anyhow::Result<Option<(Arc<rustls::ServerConfig>, Arc<Certificates>)>> {
    let (cert, key) = match (&config.server.tls_cert, &config.server.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => anyhow::bail!("give both server.tls_cert and server.tls_key, or neither"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = (stamp(&cert), stamp(&key));
    let current = load_pair(&cert, &key, &provider)?;
    let certificates = Arc::new(Certificates {
        cert_path: cert,
        key_path: key,
        provider: provider.clone(),
        current: RwLock::new(Arc::new(current)),
        seen: Mutex::new(seen),
    });
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some((Arc::new(server), certificates)))
}

/// Checks the files every [`WATCH_INTERVAL`] until `stop` is set.
pub fn spawn_watch(certificates: Arc<Certificates>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Reading and parsing PEM files is blocking work.
                    let c = certificates.clone();
                    let _ = tokio::task::spawn_blocking(move || c.reload_if_changed()).await;
                }
                _ = stop.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed pair made with openssl (installed by the test
    /// dependencies; the TLS tests use it too).
    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        (cert, key)
    }

    fn certificates(cert: &Path, key: &Path) -> Arc<Certificates> {
        let mut config = Config::default();
        config.server.tls_cert = Some(cert.to_path_buf());
        config.server.tls_key = Some(key.to_path_buf());
        server_config(&config).expect("loads").expect("tls").1
    }

    #[test]
    fn reload_takes_a_good_pair_and_keeps_the_old_one_for_a_bad_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(dir.path(), "one");
        let certs = certificates(&cert, &key);
        let first = certs.fingerprint();
        assert_eq!(certs.reload_if_changed(), None, "nothing changed");

        // A certificate whose key is another's: refused, the old one stays.
        let (cert2, key2) = write_pair(dir.path(), "two");
        std::fs::copy(&cert2, &cert).expect("copy");
        let Some(Reload::Refused(why)) = certs.reload_if_changed() else {
            panic!("a mismatched pair must be refused");
        };
        assert!(why.contains("do not fit together"), "{why}");
        assert_eq!(certs.fingerprint(), first);
        assert_eq!(
            certs.reload_if_changed(),
            None,
            "a refused pair is not retried"
        );

        // Its key arrives: the new pair is used.
        std::fs::copy(&key2, &key).expect("copy");
        let Some(Reload::Loaded(second)) = certs.reload_if_changed() else {
            panic!("the completed pair must load");
        };
        assert_ne!(second, first);
        assert_eq!(certs.fingerprint(), second);

        // Garbage: refused, the second stays.
        std::fs::write(&cert, "not a certificate").expect("write");
        assert!(matches!(certs.reload("SIGHUP"), Reload::Refused(_)));
        assert_eq!(certs.fingerprint(), second);
    }
}
