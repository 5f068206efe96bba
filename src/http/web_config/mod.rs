//! The exporter-toolkit web config (TLS, basic auth, response headers) in
//! force, re-read when the file or a file it names changes.

pub(crate) mod auth;
pub(crate) mod file;
pub(crate) mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use super::listener::TlsSource;
use super::stats::HttpStats;
use auth::Users;
use file::WebConfig;

/// How often the config file and the files it names are checked for a
/// change: certificate rotation is picked up by connections after this.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A configuration in force.
pub(crate) struct Active {
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) users: Option<Arc<Users>>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Active {
    fn plain() -> Self {
        Self {
            tls: None,
            users: None,
            headers: Vec::new(),
        }
    }

    /// Applies `config`: reads the certificates and prepares the users.
    fn apply(config: &WebConfig) -> Result<Self, String> {
        let tls = match &config.tls {
            Some(settings) => Some(TlsAcceptor::from(tls::server_config(settings)?)),
            None => None,
        };
        let users = (!config.users.is_empty()).then(|| Arc::new(Users::new(config.users.clone())));
        Ok(Self {
            tls,
            users,
            headers: config.headers.clone(),
        })
    }
}

/// The web configuration: none, or the file of `--web.config.file`.
pub(crate) struct Web {
    path: Option<PathBuf>,
    active: RwLock<Arc<Active>>,
    stats: Arc<HttpStats>,
}

/// What a file looked like, to notice a change (cert-manager swaps a
/// symlink, so the inode changes even when the time does not).
type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.modified().ok()?, meta.len(), meta.ino()))
        })
        .collect()
}

/// The config file and the files it names.
fn watched(path: &Path, config: Option<&WebConfig>) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    files.extend(config.map(WebConfig::files).unwrap_or_default());
    files
}

impl Web {
    /// Without `--web.config.file`: plain HTTP, no authentication.
    pub(crate) fn plain(stats: Arc<HttpStats>) -> Self {
        Self {
            path: None,
            active: RwLock::new(Arc::new(Active::plain())),
            stats,
        }
    }

    /// Reads the file at start; the error names the file and the problem.
    pub(crate) fn load(path: &Path, stats: Arc<HttpStats>) -> Result<Self, String> {
        let invalid = |e: String| format!("invalid web config file {}: {e}", path.display());
        let config = file::read(path).map_err(invalid)?;
        let active = Active::apply(&config).map_err(invalid)?;
        stats.config_reloaded(true);
        Ok(Self {
            path: Some(path.to_owned()),
            active: RwLock::new(Arc::new(active)),
            stats,
        })
    }

    pub(crate) fn current(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// With a config file, checks it and the files it names every
    /// [`RELOAD_CHECK`] on a thread of its own, and applies a changed one. An
    /// invalid change is logged and leaves the previous configuration in
    /// force, as does one that would switch TLS on or off (which needs a
    /// restart, so that a mistake cannot turn TLS off).
    pub(crate) fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let web = Arc::downgrade(self);
        let mut config = file::read(&path).ok();
        let mut files = watched(&path, config.as_ref());
        let mut seen = fingerprint(&files);
        std::thread::Builder::new()
            .name("web-config".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(RELOAD_CHECK);
                    let Some(web) = web.upgrade() else { return };
                    let now = fingerprint(&files);
                    if now == seen {
                        continue;
                    }
                    let read = file::read(&path);
                    let applied = read.clone().and_then(|new| {
                        let tls_before = config.as_ref().is_some_and(|c| c.tls.is_some());
                        if new.tls.is_some() != tls_before {
                            return Err("TLS cannot be switched on or off without a restart".to_owned());
                        }
                        Active::apply(&new)
                    });
                    // Watch the files the new version names, valid or not,
                    // and act again only when something changes again.
                    files = watched(&path, read.as_ref().ok());
                    seen = fingerprint(&files);
                    match applied {
                        Ok(active) => {
                            *web.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
                            config = read.ok();
                            web.stats.config_reloaded(true);
                            info!(file = %path.display(), "web config reloaded");
                        }
                        Err(e) => {
                            web.stats.config_reloaded(false);
                            error!(file = %path.display(), "invalid web config file, keeping the previous one: {e}");
                        }
                    }
                }
            })
            .map(drop)
    }
}

impl TlsSource for Web {
    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current().tls.clone()
    }
}
