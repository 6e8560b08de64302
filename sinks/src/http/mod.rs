//! The HTTP output: POST each event (or a batch of them) to a service from a pool of workers.
//!
//! Owns pauditd's HTTP writer: a bounded queue of `buffer_size` requests feeding
//! `worker_count` threads over pooled keep-alive connections (plain or rustls with a client
//! certificate), a trace-id header per request, a body transformer, `attempts` per request and
//! a circuit breaker in front of the service. Queue policy: in the daemon a full queue drops
//! the event and counts it (`http_writer.dropped_messages`, pauditd's policy: the kernel path
//! must not wait on a remote service); `replay` waits instead, since a file can. Closing the
//! sink drains the queue before it returns. It must never reorder within a request, never
//! retry a request the service answered below 500, and never block the caller in drop mode.

pub mod breaker;
pub mod client;
pub mod stats;
pub mod transform;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use ureq::Agent;

use crate::retry::Attempts;
use crate::{Batch, Sink, SinkError};
use breaker::{Breaker, BreakerConfig};
use client::{CertWatcher, PoolConfig};
pub use stats::HttpStats;
use transform::{Transform, Transformed};

/// What a full queue does to the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop it and count it (the daemon; pauditd's policy).
    Drop,
    /// Wait for room (replay: reading a file can pause).
    Wait,
}

pub struct HttpConfig {
    pub url: String,
    pub workers: usize,
    /// Queue capacity, in requests.
    pub buffer_size: usize,
    /// Events per request: `None` sends each event alone (pauditd); `Some(n)` sends up to `n`
    /// as one JSON array (our extension).
    pub batch_size: Option<usize>,
    pub trace_header: Option<String>,
    pub transform: Box<dyn Transform>,
    pub debug: bool,
    pub breaker: BreakerConfig,
    pub pool: PoolConfig,
    /// How often the certificate files are checked for changes (pauditd: 60 s).
    pub cert_refresh: Duration,
    pub attempts: Attempts,
    pub overflow: Overflow,
    /// How long closing the sink keeps sending what is queued (the daemon: 10 s).
    pub drain_limit: Duration,
}

/// One request's worth of events, copied out of the batch.
struct Job {
    lines: Batch,
    queued: Instant,
}

/// What every worker shares.
struct Shared {
    url: String,
    trace_header: Option<String>,
    transform: Box<dyn Transform>,
    batched: bool,
    debug: bool,
    attempts: Attempts,
    agent: Arc<RwLock<Agent>>,
    breaker: Mutex<Breaker>,
    stats: Arc<HttpStats>,
    /// Set when the sink closes: requests not started by then fail without being tried, so a
    /// dead service cannot stall shutdown for `queue x attempts x timeout`.
    drain_until: OnceLock<Instant>,
    drain_limit: Duration,
}

pub struct HttpSink {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Stops the certificate watcher when dropped.
    watcher_stop: Option<Sender<()>>,
    watcher: Option<JoinHandle<()>>,
    chunk: usize,
    overflow: Overflow,
    buffer_size: usize,
    stats: Arc<HttpStats>,
    shared: Arc<Shared>,
}

impl HttpSink {
    /// Start the workers; fails if the certificates cannot be loaded.
    pub fn start(cfg: HttpConfig) -> Result<HttpSink, SinkError> {
        let agent = Arc::new(RwLock::new(client::agent(&cfg.pool)?));
        let stats = Arc::new(HttpStats::default());
        let shared = Arc::new(Shared {
            url: cfg.url,
            trace_header: cfg.trace_header,
            transform: cfg.transform,
            batched: cfg.batch_size.is_some(),
            debug: cfg.debug,
            attempts: cfg.attempts,
            agent: agent.clone(),
            breaker: Mutex::new(Breaker::new(cfg.breaker, Instant::now())),
            stats: stats.clone(),
            drain_until: OnceLock::new(),
            drain_limit: cfg.drain_limit,
        });
        let (tx, rx) = bounded::<Job>(cfg.buffer_size.max(1));
        let spawn_err = |e: std::io::Error| SinkError::Setup {
            sink: "http",
            message: format!("cannot start a worker thread: {e}"),
        };
        let mut workers = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers.max(1) {
            let (rx, shared) = (rx.clone(), shared.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("pauditd-http-{i}"))
                    .spawn(move || work(&rx, &shared))
                    .map_err(spawn_err)?,
            );
        }
        let (watcher_stop, watcher) = if cfg.pool.tls.is_some() {
            let (stop_tx, stop_rx) = bounded::<()>(0);
            let mut w = CertWatcher::new(cfg.pool.clone());
            let every = cfg.cert_refresh;
            let h = std::thread::Builder::new()
                .name("pauditd-http-certs".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                        w.check(&agent);
                    }
                })
                .map_err(spawn_err)?;
            (Some(stop_tx), Some(h))
        } else {
            (None, None)
        };
        Ok(HttpSink {
            tx: Some(tx),
            workers,
            watcher_stop,
            watcher,
            chunk: cfg.batch_size.unwrap_or(1).max(1),
            overflow: cfg.overflow,
            buffer_size: cfg.buffer_size,
            stats,
            shared,
        })
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }

    /// Requests waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &'static str {
        "http"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else {
            return Err(SinkError::Dropped {
                sink: "http",
                lost: batch.len(),
                reason: "output closed".into(),
            });
        };
        let mut lost = 0;
        let mut i = 0;
        while i < batch.len() {
            let n = self.chunk.min(batch.len() - i);
            let mut lines = Batch::default();
            for l in i..i + n {
                lines.push_line(&batch.bytes()[batch.line_range(l)]);
            }
            i += n;
            self.stats.total.fetch_add(n as u64, Relaxed);
            let job = Job {
                lines,
                queued: Instant::now(),
            };
            let sent = match self.overflow {
                Overflow::Drop => match tx.try_send(job) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                },
                Overflow::Wait => tx.send(job).is_ok(),
            };
            if !sent {
                self.stats.dropped.fetch_add(n as u64, Relaxed);
                lost += n;
            }
        }
        self.stats.queued.store(tx.len() as u64, Relaxed);
        if lost > 0 {
            return Err(SinkError::Dropped {
                sink: "http",
                lost,
                reason: format!(
                    "buffer full ({} requests waiting), messages dropped",
                    self.buffer_size
                ),
            });
        }
        Ok(())
    }

    /// Drain: every queued request is sent (or fails its attempts) before this returns.
    fn close(&mut self) {
        let _ = self
            .shared
            .drain_until
            .set(Instant::now() + self.shared.drain_limit);
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        drop(self.watcher_stop.take());
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }

    fn live_counters(&self) -> Option<Arc<dyn crate::LiveCounters>> {
        Some(self.stats.clone())
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.close();
    }
}

fn work(rx: &Receiver<Job>, shared: &Shared) {
    let mut body = Vec::new();
    for job in rx.iter() {
        shared.stats.queued.store(rx.len() as u64, Relaxed);
        shared.send(&job, &mut body);
    }
}

/// Log the `n`th occurrence of something only when `n` is a power of two.
fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

impl Shared {
    /// Build the body for `job` into `body`; returns how many events it carries.
    fn build(&self, job: &Job, trace_id: &str, body: &mut Vec<u8>) -> usize {
        body.clear();
        if self.batched {
            body.push(b'[');
        }
        let mut carried = 0;
        for line in job.lines.lines() {
            if self.debug {
                let msg = String::from_utf8_lossy(line);
                log::info!(
                    "{{ \"trace_id\": \"{trace_id}\", \"msg\": {} }}",
                    msg.trim_end_matches('\n')
                );
            }
            let mark = body.len();
            match self.transform.transform(trace_id, line, body) {
                Transformed::Send => {
                    carried += 1;
                    if let Some(name) = self.transform.metric_for(line) {
                        self.stats.bump(&name, 1);
                    }
                    if self.batched {
                        while body.len() > mark && body.last() == Some(&b'\n') {
                            body.pop();
                        }
                        body.push(b',');
                    }
                }
                Transformed::Skip(metric) => {
                    body.truncate(mark);
                    self.stats.skipped.fetch_add(1, Relaxed);
                    self.stats.bump(metric, 1);
                }
            }
        }
        if self.batched {
            if body.last() == Some(&b',') {
                body.pop();
            }
            body.extend_from_slice(b"]\n");
        }
        if self.debug && carried > 0 {
            log::info!("{}", String::from_utf8_lossy(body));
        }
        carried
    }

    fn send(&self, job: &Job, body: &mut Vec<u8>) {
        let trace_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let n = self.build(job, &trace_id, body);
        if n == 0 {
            return;
        }
        let n = n as u64;
        let mut last_error = String::new();
        for attempt in 1..=self.attempts.attempts {
            if self.drain_until.get().is_some_and(|d| Instant::now() >= *d) {
                last_error = format!("still queued {:?} after shutdown began", self.drain_limit);
                break;
            }
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Relaxed);
                std::thread::sleep(self.attempts.pause);
            }
            if !self.lock_breaker().allow(Instant::now()) {
                self.stats.breaker_rejected.fetch_add(1, Relaxed);
                last_error = "circuit breaker open".into();
                continue;
            }
            let agent = self.agent.read().unwrap_or_else(|e| e.into_inner()).clone();
            let mut req = agent
                .post(&self.url)
                .header("Content-Type", "application/json");
            if let Some(h) = &self.trace_header {
                req = req.header(h.as_str(), trace_id.as_str());
            }
            match req.send(&body[..]) {
                Ok(mut resp) => {
                    let code = resp.status().as_u16();
                    // Read the answer so the connection can go back to the pool.
                    let _ = resp.body_mut().with_config().limit(1 << 20).read_to_vec();
                    self.stats.bump(&format!("http_code.{code}"), 1);
                    self.stats.record_latency(job.queued.elapsed());
                    self.record(code < 500);
                    if code < 400 {
                        self.stats.delivered.fetch_add(n, Relaxed);
                        return;
                    }
                    if code < 500 {
                        let c = self.stats.rejected.fetch_add(n, Relaxed) + n;
                        if worth_logging(c) {
                            log::error!("http: {} refused {n} event(s) with HTTP {code} (not retried; {c} refused so far)", self.url);
                        }
                        return;
                    }
                    last_error = format!("HTTP {code}");
                }
                Err(e) => {
                    self.stats.request_errors.fetch_add(1, Relaxed);
                    self.record(false);
                    last_error = format!("could not send request: {e}");
                }
            }
        }
        let c = self.stats.failed.fetch_add(n, Relaxed) + n;
        if worth_logging(c) {
            log::error!(
                "http: {n} event(s) not delivered to {} after {} attempt(s): {last_error} ({c} undelivered so far)",
                self.url,
                self.attempts.attempts
            );
        }
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, success: bool) {
        let mut b = self.lock_breaker();
        let before = b.opened;
        b.record(Instant::now(), success);
        if b.opened > before {
            self.stats.breaker_opened.fetch_add(1, Relaxed);
            log::error!(
                "http: circuit breaker opened for {}: requests fail fast until a probe succeeds",
                self.url
            );
        }
    }
}
