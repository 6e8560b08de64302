//! One input through every path gives identical output: batch sizes must not change what is
//! printed, only how it is grouped into writes.

use std::io::BufReader;
use std::path::PathBuf;

use pauditd_engine::replay::{self, ReplayOptions};
use pauditd_engine::{CachePolicy, FilterSet, Processor, ProcessorConfig, UserDb, UserSource};
use pauditd_sinks::Batch;

#[path = "support/corpus.rs"]
mod corpus;

/// The shared corpus when it is here, and always the real logs kept in `tests/data`.
fn corpus() -> Vec<u8> {
    let mut names = corpus::files();
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-libaudit");
    let mut kept: Vec<PathBuf> = std::fs::read_dir(own)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    kept.sort();
    names.extend(kept);
    names.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/edge-cases.log"));
    let mut all = Vec::new();
    for n in names {
        all.extend(std::fs::read(n).unwrap());
        all.push(b'\n');
    }
    all
}

/// (pauditd format, enriched and ecs formats, hand-overs)
fn run(input: &[u8], batch: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let passwd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/passwd");
    let mut p = Processor::new(
        ProcessorConfig::replay_defaults(1000),
        FilterSet::default(),
        UserDb::new(
            UserSource::passwd_file(&passwd).unwrap(),
            CachePolicy::Fresh(std::time::Duration::from_secs(1)),
        ),
    );
    let mut out = Batch::default();
    let mut enriched = Batch::default();
    let mut calls = 0;
    replay::run(
        BufReader::with_capacity(4096, input),
        &mut p,
        &ReplayOptions {
            batch,
            ..Default::default()
        },
        |events| {
            calls += 1;
            for e in events.drain(..) {
                out.push_event(&e);
                enriched.push_event_as(&e, pauditd_sinks::Format::Enriched);
                enriched.push_event_as(&e, pauditd_sinks::Format::Ecs);
            }
        },
    )
    .unwrap();
    (out.bytes().to_vec(), enriched.bytes().to_vec(), calls)
}

#[test]
fn batch_size_never_changes_output() {
    let input = corpus();
    let (reference, reference_enriched, _) = run(&input, 256);
    assert!(reference.len() > 10_000);
    for batch in [1, 2, 7, 64, 10_000] {
        let (got, got_enriched, calls) = run(&input, batch);
        assert!(got == reference, "batch {batch} differs");
        assert!(
            got_enriched == reference_enriched,
            "batch {batch} differs (enriched, ecs)"
        );
        if batch == 1 {
            // Events an EOE completes are handed over one by one (5 in our own fixtures,
            // hundreds with the shared corpus).
            let min = if corpus::files().is_empty() { 4 } else { 100 };
            assert!(calls > min, "{calls} hand-overs with batch 1");
        }
    }
}

/// The same input through the binary with 0, 1 and 3 encoder threads (and the replay's batch
/// hand-overs), out through a real stdout output: identical bytes, in every format.
#[test]
fn encoder_threads_never_change_output() {
    let dir = std::env::temp_dir().join(format!("pauditd-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.log");
    std::fs::write(&input, corpus()).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = |workers: u32, format: &str| -> Vec<u8> {
        let cfg = dir.join(format!("c{workers}.yaml"));
        std::fs::write(
            &cfg,
            format!("output: {{ stdout: {{ enabled: true }} }}\nengine: {{ encode_workers: {workers} }}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .arg("replay")
            .arg("--config")
            .arg(&cfg)
            .arg("--passwd")
            .arg(root.join("tests/data/passwd"))
            .args(["--format", format])
            .arg(&input)
            .env("PAUDITD_LOG", "warn")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    for format in ["pauditd", "enriched", "ecs"] {
        let inline = run(0, format);
        assert!(inline.len() > 10_000);
        for workers in [1, 3] {
            assert!(
                run(workers, format) == inline,
                "{format}: {workers} encoder thread(s) differ"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
