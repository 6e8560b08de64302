//! A real Kafka-protocol broker on loopback for the Kafka output's tests: tansu (Apache-2.0,
//! a Kafka broker in Rust) with SQLite storage, so a broker killed with SIGKILL and started
//! again keeps what it acknowledged. Topics are created explicitly (`tansu topic create`);
//! messages are read back with librdkafka's consumer, partition by partition.
//!
//! Where tansu is not installed the tests say so and skip, except under CI, where `.ci/run`
//! installs it and a missing broker fails the test.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The tansu binary: `$TANSU`, then `PATH`, then `~/.cargo/bin`. `None` (after saying so)
/// outside CI when it is not installed.
pub fn tansu() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("TANSU") {
        candidates.push(p.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/tansu"));
    }
    if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tansu (the test Kafka broker) is not installed: .ci/run installs it; in CI this test must run"
    );
    eprintln!(
        "SKIPPED: tansu is not installed (cargo install --locked tansu --version 0.6.0 --features libsql)"
    );
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One message read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

pub struct Broker {
    bin: PathBuf,
    pub port: u16,
    db: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port with its database in `dir`; `None` where tansu is missing
    /// (outside CI).
    pub fn start(dir: &Path) -> Option<Broker> {
        let mut b = Broker::stopped(dir)?;
        b.restart();
        Some(b)
    }

    /// A broker that is not running yet (its port chosen): `restart` starts it.
    pub fn stopped(dir: &Path) -> Option<Broker> {
        let bin = tansu()?;
        std::fs::create_dir_all(dir).unwrap();
        Some(Broker {
            bin,
            port: free_port(),
            db: dir.join("tansu.db"),
            log: dir.join("tansu.log"),
            child: None,
        })
    }

    /// `host:port` for the client.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and database, and wait until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(self.url())
            .arg("--advertised-listener-url")
            .arg(self.url())
            .arg("--storage-engine")
            // tansu reads the URL's path as relative: run it in the database's directory.
            .arg("sqlite://tansu.db")
            .current_dir(self.db.parent().unwrap())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none(),
                "tansu exited ({exited:?}): {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {} within 30 s: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name, "--broker", &self.url()])
            .arg("--partitions")
            .arg(partitions.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every message of `topic` from the beginning: reads until `want` have come and then
    /// `settle` more with nothing new (so extra copies are seen too), or `timeout`.
    pub fn read(&self, topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("group.id", format!("pauditd-test-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
        assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let settle = Duration::from_secs(2);
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut quiet_since = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end || (out.len() >= want && now - quiet_since >= settle) {
                break;
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                    quiet_since = Instant::now();
                }
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
