//! A real HTTP/1.1 server on loopback for the HTTP output's tests: plain or rustls (with
//! client-certificate verification), keep-alive, a settable status and delay, and a record of
//! every request and connection. Certificates are generated per test with rcgen.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which accepted connection carried it (0, 1, ...).
    pub connection: usize,
    /// The client certificate presented on that connection (TLS only).
    pub client_cert: Option<Vec<u8>>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Request>>,
    status: AtomicU16,
    delay_ms: AtomicUsize,
    connections: AtomicUsize,
    handshake_failures: AtomicUsize,
    /// Set by `stop`: the listener closes and open connections end without answering.
    down: std::sync::atomic::AtomicBool,
}

pub struct Server {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    pub fn plain() -> Server {
        Self::start(None)
    }

    pub fn tls(config: Arc<ServerConfig>) -> Server {
        Self::start(Some(config))
    }

    /// A plain server on a given address (to come back where a stopped one was).
    pub fn plain_at(addr: SocketAddr) -> Server {
        Self::start_at(None, addr)
    }

    /// Take the service down: the port refuses connections, and connections already open are
    /// closed at their next request without an answer (the request is not recorded).
    pub fn stop(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start(tls: Option<Arc<ServerConfig>>) -> Server {
        Self::start_at(tls, "127.0.0.1:0".parse().unwrap())
    }

    fn start_at(tls: Option<Arc<ServerConfig>>, at: SocketAddr) -> Server {
        let listener = TcpListener::bind(at).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.down.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, tls) = (st.clone(), tls.clone());
                std::thread::spawn(move || serve(stream, id, &st, tls));
            }
        });
        Server { addr, state }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn set_status(&self, code: u16) {
        self.state.status.store(code, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as usize, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn handshake_failures(&self) -> usize {
        self.state.handshake_failures.load(Ordering::SeqCst)
    }

    /// Wait (up to 20 s) until `n` requests have arrived.
    pub fn wait_for(&self, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.requests();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(stream: TcpStream, id: usize, st: &State, tls: Option<Arc<ServerConfig>>) {
    match tls {
        None => handle(stream, id, st, None),
        Some(cfg) => {
            let mut s = StreamOwned::new(ServerConnection::new(cfg).unwrap(), stream);
            while s.conn.is_handshaking() {
                if s.conn.complete_io(&mut s.sock).is_err() {
                    st.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            let cert = s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            handle(s, id, st, cert)
        }
    }
}

fn handle<S: Read + Write>(stream: S, id: usize, st: &State, cert: Option<Vec<u8>>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if st.down.load(Ordering::SeqCst) {
            return;
        }
        let delay = st.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay as u64));
        }
        st.requests.lock().unwrap().push(Request {
            method,
            target,
            headers,
            body,
            connection: id,
            client_cert: cert.clone(),
        });
        let code = st.status.load(Ordering::SeqCst);
        let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
        let w = r.get_mut();
        if w.write_all(reply.as_bytes())
            .and_then(|_| w.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and client certificates, as PEM files in `dir`.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    pub ca_pem: std::path::PathBuf,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Pki {
    pub fn new(dir: &std::path::Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "pauditd test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let server = p.signed_by(&server_key, &ca, &ca_key).unwrap();
        Pki {
            server_der: server.der().clone(),
            server_key: server_key.serialize_der(),
            ca,
            ca_key,
            ca_pem,
        }
    }

    /// Write a client certificate signed by this CA to `cert`/`key`; returns its DER.
    pub fn client(&self, name: &str, cert: &std::path::Path, key: &std::path::Path) -> Vec<u8> {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        let c = p.signed_by(&k, &self.ca, &self.ca_key).unwrap();
        // Write to a temporary name and rename, as a certificate rotation would.
        let tmp = cert.with_extension("tmp");
        std::fs::write(&tmp, c.pem()).unwrap();
        std::fs::rename(&tmp, cert).unwrap();
        std::fs::write(&tmp, k.serialize_pem()).unwrap();
        std::fs::rename(&tmp, key).unwrap();
        c.der().to_vec()
    }

    /// A server config that requires a client certificate from this CA.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.server_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .unwrap();
        Arc::new(cfg)
    }
}
