//! A small tmpfs for disk-full tests: mounted on a directory, unmounted when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a `size` tmpfs (mode 0700) on `dir`; `None` (after saying why) when that cannot
    /// be done here. Under CI it must: the test fails instead of skipping.
    pub fn mount(dir: &Path, size: &str, what: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let ok = root
            && std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} must run in CI (needs root to mount a tmpfs)"
            );
            eprintln!("skipping {what}: needs root to mount a small tmpfs");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
