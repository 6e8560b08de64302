//! Allocations on the event path, counted per thread by a counting global allocator: the
//! JSON encoder allocates nothing per event once its buffer has grown (before this, sorting
//! `uid_map` allocated a vector per event), and the engine allocates nothing per event once
//! written events come back to it for reuse (before this, ~8 per event).

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

fn input() -> Vec<u8> {
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
    input
}

/// `uncached`: pauditd's default user lookups (names reused for a second, then looked up
/// afresh: a cost per second, not per event); else names kept until the passwd file changes.
fn processor_with(uncached: bool) -> Processor<UserDb> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let passwd = root.join("tests/data/passwd");
    Processor::new(
        ProcessorConfig::replay_defaults(1000),
        FilterSet::default(),
        UserDb::new(
            UserSource::passwd_file(&passwd).unwrap(),
            if uncached {
                CachePolicy::Fresh(std::time::Duration::from_secs(1))
            } else {
                CachePolicy::UntilModified(passwd.clone())
            },
        ),
    )
}

fn processor() -> Processor<UserDb> {
    processor_with(true)
}

fn events() -> Vec<Event> {
    let input = input();
    let mut p = processor();
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
        pauditd_sinks::pauditd_json::encode_event(e, &mut out);
    }
    let before = allocs();
    for _ in 0..100 {
        out.clear();
        for e in &evs {
            pauditd_sinks::pauditd_json::encode_event(e, &mut out);
        }
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations for {} encodings", 100 * evs.len());
}

/// The input `copies` times over, each copy's serials moved past the previous copy's, so
/// every copy is new events (not records joining the previous copy's).
fn copies(input: &[u8], copies: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(input);
    let mut out = String::with_capacity(input.len() * copies as usize);
    for k in 0..copies {
        for line in text.lines() {
            // audit(SECONDS.MILLIS:SERIAL)
            match line.find("audit(").and_then(|i| {
                let colon = i + line[i..].find(':')?;
                let close = colon + line[colon..].find(')')?;
                let serial: u64 = line[colon + 1..close].parse().ok()?;
                Some((colon, close, serial))
            }) {
                Some((colon, close, serial)) => {
                    out.push_str(&line[..=colon]);
                    out.push_str(&(serial + k * 100_000_000).to_string());
                    out.push_str(&line[close..]);
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
    }
    out.into_bytes()
}

#[test]
fn the_engine_allocates_nothing_per_event_once_events_come_back() {
    let input = input();
    // Cached names: the default's once-a-second lookups would add allocations by the clock.
    let mut p = processor_with(false);
    let pool = p.event_pool();
    let opts = ReplayOptions {
        batch: 256,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1 << 20);
    // The writer's part: encode each batch, give it back.
    let mut run = |p: &mut Processor<UserDb>, text: &[u8]| -> (u64, u64) {
        let mut n = 0u64;
        let before = allocs();
        replay::run(BufReader::new(text), p, &opts, |ev| {
            out.clear();
            for e in ev.iter() {
                pauditd_sinks::pauditd_json::encode_event(e, &mut out);
            }
            n += ev.len() as u64;
            pool.give_back(std::mem::take(ev));
        })
        .unwrap();
        (allocs() - before, n)
    };
    let small = copies(&input, 20);
    let large = copies(&input, 60);
    // Warm-up: buffers, maps and the pool reach their size (recycled events get room for
    // the common large events on their first reuse): until two runs in a row cost the same.
    let mut warm_up: Vec<u64> = Vec::new();
    while !matches!(warm_up[..], [.., a, b] if a == b) {
        assert!(warm_up.len() < 100, "no steady state: {warm_up:?}");
        warm_up.push(run(&mut p, &large).0);
    }
    eprintln!("warm-up: {} runs, allocations {warm_up:?}", warm_up.len());
    let (a_small, n_small) = run(&mut p, &small);
    let (a_large, n_large) = run(&mut p, &large);
    let per_event = (a_large as f64 - a_small as f64) / (n_large - n_small) as f64;
    eprintln!(
        "engine + encoder: {a_small} allocations for {n_small} events, {a_large} for {n_large}: {per_event:.3} per additional event (each run's reader setup included in both)"
    );
    assert!(n_large > 2 * n_small && n_small > 500);
    // What a run costs whatever its length (reader buffers) is the same for both runs; any
    // allocation per event shows up as a difference.
    assert!(
        a_large == a_small,
        "{} more allocations for {} more events",
        a_large as i64 - a_small as i64,
        n_large - n_small
    );
}
