//! What the spool costs an output: the same events through a file output with no spool,
//! with a spool that is only used on overflow, with `write_ahead`, and with `write_ahead` +
//! `fsync`. Prints events/s and CPU time per event of the whole process.
//!
//! `cargo run --release -p pauditd-sinks --example spool_cost [EVENTS] [DIR]`
//! (DIR on the disk the spool would live on; default a directory under /var/tmp).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pauditd_engine::Event;
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::output::{Deadline, Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::spool::SpoolConfig;
use pauditd_sinks::Batch;

fn cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: i64 = args.next().map_or(2_000_000, |a| a.parse().unwrap());
    let root =
        std::path::PathBuf::from(args.next().unwrap_or("/var/tmp/pauditd-spool-cost".into()));
    let data = b"arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 a2=55d2 a3=0 items=2 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 comm=\"true\" exe=\"/usr/bin/true\" key=\"exec\"";
    let batches: Vec<Arc<Batch>> = (0..events / 256)
        .map(|i| {
            let mut b = Batch::default();
            for s in 0..256 {
                let mut e = Event::new(i * 256 + s, b"1700000000.123");
                e.push_message(1300, data);
                b.push_event(&e);
            }
            Arc::new(b)
        })
        .collect();
    let n = batches.len() as u64 * 256;
    for (label, spool, write_ahead, fsync) in [
        ("no spool (drop)", false, false, false),
        ("spool, on overflow only", true, false, false),
        ("spool, write_ahead", true, true, false),
        ("spool, write_ahead + fsync", true, true, true),
    ] {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let sink = FileSink::open(FileConfig {
            path: root.join("events.jsonl"),
            mode: 0o600,
            user: None,
            group: None,
            policy: Attempts::new(1),
            follow_symlink: false,
        })
        .unwrap();
        let mut oc = OutputConfig::new(
            if spool {
                Overflow::Spool
            } else {
                Overflow::Block
            },
            1,
        );
        // Deep enough for the whole burst: this measures throughput, not the overflow policy.
        oc.queue = batches.len();
        if spool {
            oc.spool = Some(SpoolConfig {
                dir: root.join("spool"),
                max_bytes: 1 << 40,
                fsync,
                owner: None,
                write_ahead,
                dirs: Default::default(),
            });
        }
        let mut out = Output::start(Box::new(sink), oc).unwrap();
        let (t0, c0) = (Instant::now(), cpu());
        for b in &batches {
            out.offer(b);
        }
        out.begin_close(Deadline::Stalled(Duration::from_secs(30)));
        assert!(out.join(Instant::now() + Duration::from_secs(600)));
        let (wall, used) = (t0.elapsed(), cpu() - c0);
        let a = out.stats().accounting();
        println!(
            "{label:28} {:>9.0} events/s  {:>6.2} µs CPU/event  (written {} lost {} of {n})",
            n as f64 / wall.as_secs_f64(),
            used.as_secs_f64() * 1e6 / n as f64,
            a.delivered,
            a.lost
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
