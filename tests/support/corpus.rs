//! The shared corpus (`../shared/corpus/laurel`, read-only) as benches and tests load it.

use std::path::PathBuf;

/// Every corpus log, sorted by name so inputs are the same on every machine.
pub fn files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/laurel");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus not found at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}
