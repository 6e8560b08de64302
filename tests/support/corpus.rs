//! The shared corpus (`../shared/corpus/laurel`, read-only) as benches and tests load it.
//!
//! The repository stands alone: without `../shared` beside it these inputs are absent, and
//! the tests over them say so and skip; under CI (`CI=true`) absence is a failure.

use std::path::PathBuf;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/laurel")
}

/// Whether the corpus is here; if not, says that `what` is skipped (or fails under CI).
#[allow(dead_code)]
pub fn present(what: &str) -> bool {
    if dir().is_dir() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}: the shared corpus must be at {} in CI",
        dir().display()
    );
    eprintln!(
        "skipping {what}: the shared corpus is not at {} (a clone of this repository alone)",
        dir().display()
    );
    false
}

/// Every corpus log, sorted by name so inputs are the same on every machine (empty when the
/// corpus is absent).
#[allow(dead_code)]
pub fn files() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir()) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    names.sort();
    names
}
