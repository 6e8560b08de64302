//! The HTTP output: POST each event (or a batch of them) to a service from a pool of workers.
//!
//! Owns pauditd's HTTP transport: `worker_count` threads over pooled keep-alive connections
//! (plain or rustls with a client certificate), a trace-id header per request, a body
//! transformer and a circuit breaker in front of the service. A batch is written by handing
//! its requests to the workers (at most `buffer_size` waiting) and collecting every answer,
//! so the output knows which events failed: it retries, spools or counts them per its policy
//! ([`crate::output`]). 2xx is delivered; 4xx (but 408 and 429) is refused and never sent
//! again; 3xx, 408, 429, 5xx, transport errors and an open breaker are failures worth a
//! retry. Redirects are not followed: following one turns a POST into a bodiless GET.
//!
//! Time: a batch has one deadline (`request_timeout` from when it is handed over), shared by
//! all its requests: each request gets what is left of it, a request whose turn comes after it
//! fails without being sent, and the batch's answer never waits past it (plus a second for a
//! worker to report). A request that times out trips the breaker at once (a service that does
//! not answer is not worth `min_observations` more timeouts).
//!
//! Order: the requests of one batch go out concurrently on up to `worker_count` connections,
//! so with `worker_count > 1` the service may receive (and a retry re-sends) them in another
//! order than the events' within that batch (a batch is at most 256 events); a batch is
//! finished (answered, failed or timed out) before the next one is handed over, so events of
//! different batches are never reordered, and a request's own events (`batch_size`) keep
//! their order. `worker_count: 1` keeps the exact order. It must never reorder within a
//! request.

pub mod breaker;
pub mod client;
pub mod stats;
pub mod transform;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use ureq::Agent;

use crate::{Batch, Sink, SinkError};
use breaker::{Breaker, BreakerConfig};
use client::{CertWatcher, PoolConfig};
pub use stats::HttpStats;
use transform::{Transform, Transformed};

pub struct HttpConfig {
    pub url: String,
    pub workers: usize,
    /// Requests handed to the workers at once (pauditd's queue size).
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
}

/// One request's worth of events, copied out of the batch.
struct Job {
    lines: Batch,
    /// Which lines of the caller's batch these are.
    first: usize,
    queued: Instant,
    /// The batch's deadline, shared by all its requests.
    deadline: Instant,
    /// Where the answer goes, with the job's index in its batch.
    done: Sender<(usize, Done)>,
    index: usize,
}

/// How one request ended.
enum Done {
    Delivered,
    Rejected {
        n: usize,
    },
    Failed {
        first: usize,
        n: usize,
        error: String,
    },
}

/// What every worker shares.
struct Shared {
    url: String,
    trace_header: Option<String>,
    transform: Box<dyn Transform>,
    batched: bool,
    debug: bool,
    agent: Arc<RwLock<Agent>>,
    breaker: Mutex<Breaker>,
    stats: Arc<HttpStats>,
}

pub struct HttpSink {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Stops the certificate watcher when dropped.
    watcher_stop: Option<Sender<()>>,
    watcher: Option<JoinHandle<()>>,
    chunk: usize,
    /// A batch's deadline from when it is handed over (`request_timeout`).
    batch_timeout: Duration,
    stats: Arc<HttpStats>,
}

/// How long past a batch's deadline its answers are waited for (a worker reporting).
const ANSWER_GRACE: Duration = Duration::from_secs(1);

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
            agent: agent.clone(),
            breaker: Mutex::new(Breaker::new(cfg.breaker, Instant::now())),
            stats: stats.clone(),
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
            batch_timeout: cfg.pool.request_timeout,
            stats,
        })
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &'static str {
        "http"
    }

    /// Send the batch's requests through the worker pool (`worker_count` at a time) and wait
    /// for all of them: the output learns exactly which events failed.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else {
            return Err(SinkError::Undelivered {
                sink: "http",
                retry: (0..batch.len()).collect(),
                rejected: 0,
                error: "output closed".into(),
            });
        };
        let (done_tx, done_rx) = unbounded();
        let deadline = Instant::now() + self.batch_timeout;
        let mut jobs = 0;
        let mut i = 0;
        while i < batch.len() {
            let n = self.chunk.min(batch.len() - i);
            let mut lines = Batch::default();
            for l in i..i + n {
                lines.push_line(&batch.bytes()[batch.line_range(l)]);
            }
            let job = Job {
                lines,
                first: i,
                queued: Instant::now(),
                deadline,
                done: done_tx.clone(),
                index: jobs,
            };
            i += n;
            if tx.send(job).is_err() {
                break;
            }
            jobs += 1;
            self.stats.queued.store(tx.len() as u64, Relaxed);
        }
        drop(done_tx);
        let mut retry = Vec::new();
        let mut rejected = 0;
        let mut error = String::new();
        let mut answered = vec![false; jobs];
        let mut count = 0;
        let give_up = deadline + ANSWER_GRACE;
        while count < jobs {
            let Ok((job, d)) = done_rx.recv_deadline(give_up) else {
                break;
            };
            if std::mem::replace(&mut answered[job], true) {
                continue;
            }
            count += 1;
            match d {
                Done::Delivered => {}
                Done::Rejected { n, .. } => rejected += n,
                Done::Failed { first, n, error: e } => {
                    retry.extend(first..first + n);
                    error = e;
                }
            }
        }
        if count < jobs && i >= batch.len() && done_rx.is_empty() {
            // Requests still out past the batch's deadline (a worker stuck beyond its
            // timeout): failed; if one still arrives, the service gets it twice.
            let chunk = self.chunk;
            for (job, _) in answered.iter().enumerate().filter(|(_, a)| !**a) {
                let first = job * chunk;
                retry.extend(first..(first + chunk).min(batch.len()));
            }
            error = "no answer by the batch's deadline".into();
            count = jobs;
        }
        if count < jobs || i < batch.len() {
            // A worker died or the pool closed: nothing after what answered was sent.
            return Err(SinkError::Undelivered {
                sink: "http",
                retry: (0..batch.len()).collect(),
                rejected: 0,
                error: "the HTTP workers stopped".into(),
            });
        }
        if retry.is_empty() && rejected == 0 {
            return Ok(());
        }
        retry.sort_unstable();
        if error.is_empty() {
            error = "refused by the service (HTTP 4xx)".into();
        }
        Err(SinkError::Undelivered {
            sink: "http",
            retry,
            rejected,
            error,
        })
    }

    fn close(&mut self) {
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
        let done = shared.send(&job, &mut body);
        let _ = job.done.send((job.index, done));
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

    /// One try of one request.
    fn send(&self, job: &Job, body: &mut Vec<u8>) -> Done {
        // A random id costs an RNG draw and a string: only when something carries it.
        let trace_id =
            if self.trace_header.is_some() || self.debug || self.transform.uses_trace_id() {
                uuid::Uuid::new_v4().hyphenated().to_string()
            } else {
                String::new()
            };
        let n = self.build(job, &trace_id, body);
        let total = job.lines.len();
        if n == 0 {
            return Done::Delivered;
        }
        let failed = |error: String| {
            self.stats.failed.fetch_add(n as u64, Relaxed);
            Done::Failed {
                first: job.first,
                n: total,
                error,
            }
        };
        let left = job.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Its turn came after the batch's deadline: not sent. Not itself a sign that the
            // service is down (a request that timed out already tripped the breaker).
            return failed("the batch's deadline passed before this request was sent".into());
        }
        if !self.lock_breaker().allow(Instant::now()) {
            self.stats.breaker_rejected.fetch_add(1, Relaxed);
            return failed("circuit breaker open".into());
        }
        fail::fail_point!("http-request", |_| {
            self.trip();
            failed("timeout (failpoint)".into())
        });
        let agent = self.agent.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut req = agent
            .post(&self.url)
            .config()
            .timeout_global(Some(left))
            .build()
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
                if code < 300 {
                    self.stats.delivered.fetch_add(n as u64, Relaxed);
                    return Done::Delivered;
                }
                if (300..400).contains(&code) {
                    // Redirects are not followed for a POST (a client that follows turns it
                    // into a bodiless GET): nothing was delivered; the service is misconfigured.
                    return failed(format!("HTTP {code} (redirects are not followed)"));
                }
                if code < 500 && code != 408 && code != 429 {
                    let c = self.stats.rejected.fetch_add(n as u64, Relaxed) + n as u64;
                    if worth_logging(c) {
                        log::error!("http: {} refused {n} event(s) with HTTP {code} (not retried; {c} refused so far)", self.url);
                    }
                    return Done::Rejected { n: total };
                }
                failed(format!("HTTP {code}"))
            }
            Err(e) => {
                self.stats.request_errors.fetch_add(1, Relaxed);
                if matches!(e, ureq::Error::Timeout(_)) {
                    self.trip();
                } else {
                    self.record(false);
                }
                failed(format!("could not send request: {e}"))
            }
        }
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A timeout: open the breaker now.
    fn trip(&self) {
        if self.lock_breaker().trip(Instant::now()) {
            self.stats.breaker_opened.fetch_add(1, Relaxed);
            log::error!(
                "http: {} timed out: circuit breaker opened, requests fail fast until a probe succeeds",
                self.url
            );
        }
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
