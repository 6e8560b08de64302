//! Allocations on the event path, counted per thread by a counting global allocator: the
//! JSON encoder allocates nothing per event once its buffer has grown (before this, sorting
//! `uid_map` allocated a vector per event). The engine's per-event allocations are measured
//! and printed; making them zero is open work (issue #13).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::BufReader;
use std::path::PathBuf;

use pauditd_engine::replay::{self, ReplayOptions};
use pauditd_engine::{
    CachePolicy, Event, FilterSet, Processor, ProcessorConfig, UserDb, UserSource,
};

struct Counting;

thread_local! {
    // Per thread, so tests running beside each other do not count each other's allocations.
    // Const-initialised: touching it never allocates.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn events() -> Vec<Event> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut input = Vec::new();
    for f in std::fs::read_dir(root.join("tests/data/go-libaudit")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            input.extend(std::fs::read(p).unwrap());
            input.push(b'\n');
        }
    }
    input.extend(std::fs::read(root.join("tests/data/edge-cases.log")).unwrap());
    let mut p = Processor::new(
        ProcessorConfig::replay_defaults(1000),
        FilterSet::default(),
        UserDb::new(
            UserSource::passwd_file(&root.join("tests/data/passwd")).unwrap(),
            CachePolicy::Fresh(std::time::Duration::from_secs(1)),
        ),
    );
    let mut all = Vec::new();
    replay::run(
        BufReader::new(&input[..]),
        &mut p,
        &ReplayOptions {
            batch: 256,
            ..Default::default()
        },
        |ev| all.append(ev),
    )
    .unwrap();
    all
}

#[test]
fn encoding_a_finished_event_allocates_nothing() {
    // The engine's allocations per event are not zero yet (issue #13): measured and printed.
    let before = allocs();
    let evs = events();
    let engine = allocs() - before;
    eprintln!(
        "engine: {engine} allocations for {} events ({:.1} per event, reading and setup included)",
        evs.len(),
        engine as f64 / evs.len() as f64
    );
    assert!(evs.len() > 40);
    assert!(
        evs.iter().any(|e| e.uid_count() > 1),
        "events with several uids"
    );
    let mut out = Vec::with_capacity(1 << 20);
    // Warm-up: the buffer reaches its size.
    for e in &evs {
        pauditd_sinks::json::encode_event(e, &mut out);
    }
    let before = allocs();
    for _ in 0..100 {
        out.clear();
        for e in &evs {
            pauditd_sinks::json::encode_event(e, &mut out);
        }
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations for {} encodings", 100 * evs.len());
}
