//! TLS served by axon itself (the federation listener): a certificate chain and key from
//! PEM files, read again when either file changes, so a renewed certificate (certbot,
//! acme.sh) is used without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio_rustls::TlsAcceptor;

/// How often the files' modification times are looked at (on connection).
const RECHECK: Duration = Duration::from_secs(1);

pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(crate::outbound::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("{} with {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl TlsFiles {
    /// Reads both files; an error names the file (the server does not start without them).
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let acceptor = load(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new(Loaded {
                acceptor,
                stamps: (modified(cert), modified(key)),
                checked: Instant::now(),
            }),
        }))
    }

    /// The acceptor for a new connection: the files as they are now. A changed file that
    /// does not load (a renewal half written) keeps the previous certificate in use.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let stamps = (modified(&self.cert), modified(&self.key));
            if stamps != loaded.stamps {
                match load(&self.cert, &self.key) {
                    Ok(acceptor) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        loaded.acceptor = acceptor;
                        loaded.stamps = stamps;
                    }
                    // Tried again once a file changes again (a renewal finished writing).
                    Err(e) => {
                        tracing::warn!("TLS certificate not reloaded: {e}");
                        loaded.stamps = stamps;
                    }
                }
            }
        }
        loaded.acceptor.clone()
    }
}
