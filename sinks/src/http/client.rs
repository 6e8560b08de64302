//! The HTTP output's connection pool: a ureq agent (keep-alive, rustls) and its certificates.
//!
//! Owns turning the output's settings into an agent and keeping its client certificate fresh:
//! like pauditd (which polls its certificate files every 60 s), a watcher notices when
//! `client_cert`, `client_key` or `ca_cert` change and swaps in a new agent; requests already
//! under way finish on the old one. A reload that fails (half-written file, bad key) keeps
//! the running agent and logs why. It must never load certificates per request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::SinkError;

/// Where the system's CA bundle lives on Debian; used for `https://` without `ssl.enabled`
/// (Go's client uses the system roots too).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub ca_cert: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub connections: usize,
    pub idle_timeout: Duration,
    /// Whole-request limit: a service that stops answering frees its worker after this.
    pub request_timeout: Duration,
    pub tls: Option<TlsFiles>,
}

fn setup(message: String) -> SinkError {
    SinkError::Setup {
        sink: "http",
        message,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| setup(format!("cannot read {}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<Certificate<'static>>, SinkError> {
    let pem = read(path)?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(setup(format!("{}: {e}", path.display()))),
        }
    }
    if out.is_empty() {
        return Err(setup(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(out)
}

fn tls_config(tls: Option<&TlsFiles>) -> Result<TlsConfig, SinkError> {
    let b = TlsConfig::builder().provider(TlsProvider::Rustls);
    let Some(f) = tls else {
        let roots = match certs(Path::new(SYSTEM_CA_BUNDLE)) {
            Ok(c) => RootCerts::new_with_certs(&c),
            Err(_) => RootCerts::WebPki,
        };
        return Ok(b.root_certs(roots).build());
    };
    let chain = certs(&f.client_cert)?;
    let key_pem = read(&f.client_key)?;
    let key = PrivateKey::from_pem(&key_pem)
        .map_err(|e| setup(format!("{}: {e}", f.client_key.display())))?;
    let roots = certs(&f.ca_cert)?;
    Ok(b.client_cert(Some(ClientCert::new_with_certs(&chain, key)))
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}

/// A new agent; reads (and checks) the certificate files now.
pub fn agent(cfg: &PoolConfig) -> Result<Agent, SinkError> {
    let config = Agent::config_builder()
        // We read the status ourselves: 5xx is a failure for the breaker, not an Err.
        .http_status_as_error(false)
        .max_idle_connections(cfg.connections)
        .max_idle_connections_per_host(cfg.connections)
        .max_idle_age(cfg.idle_timeout)
        .timeout_global(Some(cfg.request_timeout))
        // A redirected POST would arrive as a bodiless GET: report the 3xx instead.
        .max_redirects(0)
        // pauditd's transport has no proxy; neither do we (no surprise from the environment).
        .proxy(None)
        .user_agent(concat!("pauditd/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls_config(cfg.tls.as_ref())?)
        .build();
    Ok(Agent::new_with_config(config))
}

/// What a file looked like at the last check.
fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches the certificate files and replaces the shared agent when they change.
pub struct CertWatcher {
    cfg: PoolConfig,
    stamps: Vec<Option<(SystemTime, u64)>>,
}

impl CertWatcher {
    pub fn new(cfg: PoolConfig) -> Self {
        let mut w = CertWatcher {
            cfg,
            stamps: Vec::new(),
        };
        w.stamps = w.current();
        w
    }

    fn current(&self) -> Vec<Option<(SystemTime, u64)>> {
        match &self.cfg.tls {
            Some(f) => [&f.client_cert, &f.client_key, &f.ca_cert]
                .iter()
                .map(|p| stamp(p))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Check the files once; on a change build a new agent into `shared`. Returns whether it
    /// swapped.
    pub fn check(&mut self, shared: &Arc<RwLock<Agent>>) -> bool {
        let now = self.current();
        if now == self.stamps {
            return false;
        }
        match agent(&self.cfg) {
            Ok(a) => {
                self.stamps = now;
                *shared.write().unwrap_or_else(|e| e.into_inner()) = a;
                log::info!("http: certificates changed, reloaded");
                true
            }
            // Keep the stamps: the next check retries (the files may be mid-rotation).
            Err(e) => {
                log::error!("http: certificate reload failed, keeping the current ones: {e}");
                false
            }
        }
    }
}
