//! Container and service attribution from a process's cgroup path, with no runtime API.
//!
//! Owns the reading of `/proc/<pid>/cgroup` (cgroup v1 and v2 lines alike) into what it says
//! about the process: the container id and its runtime (docker, containerd/CRI, CRI-O,
//! podman, LXC), the Kubernetes pod uid and QoS class (systemd and cgroupfs drivers), and the
//! systemd unit. A cgroup's name proves nothing by itself: a user with a delegated subtree
//! (every systemd user session has one) can create `docker-<id>.scope` or `backup.service`
//! in it. So a name is trusted only where a runtime could have made it: where its parent and
//! every ancestor up to its hierarchy's root are owned by root and writable by no one else
//! (making a cgroup takes write access to its parent; [`trusted_depth`]). What the
//! trusted part of the path says is the [`Attribution`]; what only the rest says is kept
//! apart ([`Attribution::untrusted`]) and never used by a filter. Results are cached per
//! (pid, start time), and given only when the process started no later than its event
//! ([`start_time_at`]), so a reused pid never gets another process's answer; the cache is
//! bounded. It must never call a container runtime or block on anything but procfs and
//! cgroupfs, and never guess: a path it does not recognise gives nothing.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// What a cgroup path tells about a process.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// 64 hex digits (docker, containerd, CRI-O, podman) or the LXC container's name.
    pub container_id: Option<String>,
    pub runtime: Option<&'static str>,
    /// The Kubernetes pod's uid (dashes restored from the systemd driver's underscores).
    pub pod_uid: Option<String>,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    pub qos: Option<&'static str>,
    /// The systemd unit (`nginx.service`, `session-3.scope`, `docker-<id>.scope`).
    pub unit: Option<String>,
    /// What cgroups someone other than root could have made claim (a container id or a unit
    /// that a user could have named): reported as such, never trusted.
    pub untrusted: Option<Box<Untrusted>>,
}

/// A container id or unit claimed by a cgroup that someone other than root could have made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub container_id: Option<String>,
    pub runtime: Option<&'static str>,
    pub unit: Option<String>,
}

impl Attribution {
    pub fn is_empty(&self) -> bool {
        *self == Attribution::default()
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Read one cgroup path's components.
fn from_path(path: &str, a: &mut Attribution) {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        // systemd driver: <prefix>-<id>.scope
        if let Some(scope) = part.strip_suffix(".scope") {
            for (prefix, runtime) in [
                ("docker-", "docker"),
                ("cri-containerd-", "containerd"),
                ("crio-", "cri-o"),
                ("libpod-", "podman"),
            ] {
                if let Some(id) = scope.strip_prefix(prefix) {
                    if is_container_id(id) {
                        a.container_id = Some(id.to_string());
                        a.runtime = Some(runtime);
                    }
                }
            }
        }
        // cgroupfs driver: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>, /libpod_parent/...
        if is_container_id(part) {
            let runtime = match parts.get(i.wrapping_sub(1)).copied() {
                Some("docker") => Some("docker"),
                Some(p) if p.starts_with("pod") => Some("containerd"),
                Some(p) if p.starts_with("libpod") => Some("podman"),
                _ => None,
            };
            if runtime.is_some() || a.container_id.is_none() {
                a.container_id = Some(part.to_string());
                a.runtime = runtime.or(a.runtime);
            }
        }
        // LXC: /lxc/<name> (v1) or /lxc.payload.<name> (v2)
        if let Some(name) = part.strip_prefix("lxc.payload.") {
            a.container_id = Some(name.to_string());
            a.runtime = Some("lxc");
        } else if *part == "lxc" {
            if let Some(name) = parts.get(i + 1) {
                a.container_id = Some(name.to_string());
                a.runtime = Some("lxc");
            }
        }
        // Kubernetes: kubepods[-<qos>]-pod<uid>.slice (systemd) or pod<uid> (cgroupfs).
        let pod = part
            .strip_suffix(".slice")
            .and_then(|s| s.rsplit_once("-pod").map(|(_, uid)| uid.replace('_', "-")))
            .or_else(|| {
                part.strip_prefix("pod")
                    .filter(|uid| uid.len() == 36 && uid.matches('-').count() == 4)
                    .map(str::to_string)
            });
        if let Some(uid) = pod.filter(|_| path.contains("kubepods")) {
            a.pod_uid = Some(uid);
        }
        if part.ends_with(".service") || part.ends_with(".scope") {
            a.unit = Some(part.to_string());
        }
    }
    // A pod's QoS class is in its path; under `kubepods` with no class it is Guaranteed.
    if a.pod_uid.is_some() {
        a.qos = Some(if path.contains("besteffort") {
            "BestEffort"
        } else if path.contains("burstable") {
            "Burstable"
        } else {
            "Guaranteed"
        });
    }
}

/// What `/proc/<pid>/cgroup`'s text says (every hierarchy's line is read; the most specific
/// wins: a container id from any of them, the unit from the name=systemd or v2 line),
/// trusting every path (for logs and tests; the daemon uses [`parse_cgroup_trusting`]).
pub fn parse_cgroup(text: &str) -> Attribution {
    parse_cgroup_trusting(text, |_, _| usize::MAX)
}

/// As [`parse_cgroup`], trusting of each line's path only its first `trusted(controllers,
/// path)` components: what the rest adds (a container id or unit the trusted part does not
/// give) goes to [`Attribution::untrusted`].
pub fn parse_cgroup_trusting(
    text: &str,
    mut trusted: impl FnMut(&str, &str) -> usize,
) -> Attribution {
    let mut a = Attribution::default();
    let mut claims = Untrusted::default();
    for line in text.lines() {
        // hierarchy-id:controllers:path
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let depth = trusted(ctrl, path);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut one = Attribution::default();
        if depth >= parts.len() {
            from_path(path, &mut one);
        } else {
            from_path(&parts[..depth].join("/"), &mut one);
            let mut all = Attribution::default();
            from_path(path, &mut all);
            if all.container_id.is_some() && all.container_id != one.container_id {
                claims.container_id = all.container_id;
                claims.runtime = all.runtime;
            }
            if all.unit.is_some() && all.unit != one.unit {
                claims.unit = all.unit;
            }
        }
        if one.container_id.is_some() {
            a.container_id = one.container_id;
            a.runtime = one.runtime;
        }
        if one.pod_uid.is_some() {
            a.pod_uid = one.pod_uid;
            a.qos = one.qos;
        }
        // The unit comes from systemd's own hierarchy when there is one.
        if one.unit.is_some() && (ctrl.is_empty() || ctrl == "name=systemd" || a.unit.is_none()) {
            a.unit = one.unit;
        }
    }
    if claims != Untrusted::default() {
        a.untrusted = Some(Box::new(claims));
    }
    a
}

/// Where each cgroup hierarchy is mounted, from `/proc/self/mountinfo`: the cgroup2 mount,
/// and each v1 mount by its controllers as `/proc/<pid>/cgroup` names them (`pids`,
/// `cpu,cpuacct`, `name=systemd`).
#[derive(Debug, Default, Clone)]
pub struct Mounts {
    v2: Option<std::path::PathBuf>,
    v1: Vec<(String, std::path::PathBuf)>,
}

impl Mounts {
    pub fn read() -> Mounts {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut m = Mounts::default();
        for line in text.lines() {
            // id parent major:minor root mountpoint options [optional...] - fstype source super
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(point), Some(fstype)) =
                (fields.get(3), fields.get(4), right.first())
            else {
                continue;
            };
            // A bind mount of a sub-tree would make paths relative to it: not ours to guess.
            if *root != "/" {
                continue;
            }
            let point = std::path::PathBuf::from(point.replace("\\040", " "));
            match *fstype {
                "cgroup2" => {
                    m.v2.get_or_insert(point);
                }
                "cgroup" => {
                    let ctrls: Vec<&str> = right
                        .get(2)
                        .map(|o| {
                            o.split(',')
                                .filter(|o| {
                                    *o != "rw" && *o != "ro" && !o.starts_with("release_agent")
                                })
                                .filter(|o| {
                                    !matches!(
                                        *o,
                                        "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode"
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    m.v1.push((ctrls.join(","), point));
                }
                _ => {}
            }
        }
        m
    }

    /// The directory of hierarchy `ctrl` (`""`: cgroup v2).
    fn base(&self, ctrl: &str) -> Option<&std::path::Path> {
        if ctrl.is_empty() {
            return self.v2.as_deref();
        }
        let mut want: Vec<&str> = ctrl.split(',').collect();
        want.sort_unstable();
        self.v1
            .iter()
            .find(|(c, _)| {
                let mut have: Vec<&str> = c.split(',').collect();
                have.sort_unstable();
                have == want
            })
            .map(|(_, p)| p.as_path())
    }
}

/// How many leading components of cgroup `path` (of hierarchy `ctrl`) only root could have
/// made: a component counts when its parent and every ancestor up to the hierarchy's root
/// are owned by uid 0 and writable by no one else (making a cgroup, or renaming one, takes
/// write access to its parent). Its own owner does not matter: systemd makes a delegated
/// `user@1000.service` (or a runtime a user-namespaced container's scope) and then chowns
/// it, and that name is theirs; what its user makes below it is not. Anything that cannot
/// be checked (a hierarchy not mounted here, a directory already gone) ends the trusted part.
pub fn trusted_depth(mounts: &Mounts, ctrl: &str, path: &str) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Some(base) = mounts.base(ctrl) else {
        return 0;
    };
    let root_only = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
    };
    if !root_only(base) {
        return 0;
    }
    let mut dir = base.to_path_buf();
    let mut depth = 0;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            return depth;
        }
        // Its parent (`dir`) is root's alone: only root could have made this one.
        depth += 1;
        dir.push(part);
        if !root_only(&dir) {
            return depth;
        }
    }
    depth
}

/// The start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid, it names one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(19)?.parse().ok()
}

/// What `/proc/<pid>` says about the process that held `pid` at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedAt {
    /// No such process now.
    Gone,
    /// The pid's process now started after that time: the pid was reused since.
    Later,
    /// Its start time (clock ticks since boot), no later than that time.
    Started(u64),
}

/// How far a process's start may seem to follow its event's time and still be taken as the
/// same process: the start time counts 10 ms ticks (it is rounded down, so that is not it),
/// the event's time is the kernel's wall clock and the boot time is computed now, so a clock
/// slewed by NTP since the event moves them apart by up to 0.05%: 10 ms covers 20 s of lag.
/// A process that took a pid within this of an exited one's event cannot be told apart.
pub const START_SLACK_MS: u64 = 10;

/// The start time of `pid`, if its process started no later than `event_ms` (milliseconds
/// since the epoch, the event's `audit(SEC.MS:...)` time): otherwise the pid was reused
/// after the event and what `/proc/<pid>` says is about another process.
pub fn start_time_at(pid: u32, event_ms: Option<u64>) -> StartedAt {
    let Some(start) = start_time(pid) else {
        return StartedAt::Gone;
    };
    let Some(event_ms) = event_ms else {
        return StartedAt::Started(start);
    };
    match boot_epoch_ms() {
        Some(boot) if boot + start * 1000 / ticks_per_sec() > event_ms + START_SLACK_MS => {
            StartedAt::Later
        }
        _ => StartedAt::Started(start),
    }
}

/// `/proc/<pid>/stat`'s clock ticks per second (USER_HZ).
fn ticks_per_sec() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *HZ.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    })
}

/// The wall-clock time of boot in milliseconds since the epoch, as it stands now
/// (`CLOCK_REALTIME - CLOCK_BOOTTIME`: the clock process start times count from).
pub fn boot_epoch_ms() -> Option<u64> {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
            .then(|| ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128)
    };
    let real = now(libc::CLOCK_REALTIME)?;
    let boot = now(libc::CLOCK_BOOTTIME)?;
    u64::try_from((real - boot) / 1_000_000).ok()
}

/// An event's `audit(SEC.MS:SERIAL)` time (`SEC.MS`) in milliseconds since the epoch.
pub fn event_ms(timestamp: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(timestamp).ok()?;
    let (sec, ms) = s.split_once('.').unwrap_or((s, "0"));
    let ms: u64 = match ms.len() {
        0 => 0,
        1..=3 => ms.parse::<u64>().ok()? * 10u64.pow(3 - ms.len() as u32),
        _ => ms.get(..3)?.parse().ok()?,
    };
    sec.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(ms)
}

/// Attribution per process, cached by (pid, start time), bounded.
pub struct ContainerCache {
    entries: FxHashMap<(u32, u64), Arc<Attribution>>,
    capacity: usize,
    mounts: Mounts,
    /// [`trusted_depth`] per (hierarchy, path): processes share a few cgroups, and the walk
    /// stats every directory. Cleared with `entries`. A cgroup under a root-owned chain can
    /// only be re-made by root, so a cached answer stays right.
    depths: FxHashMap<(String, String), usize>,
    /// Lookups whose process was already gone (a short-lived process).
    pub misses: u64,
    /// Lookups whose pid now belongs to a process started after the event (reused).
    pub reused: u64,
    /// Attributions with an untrusted claim (a runtime- or unit-shaped cgroup not root's).
    pub untrusted: u64,
}

impl ContainerCache {
    pub fn new(capacity: usize) -> Self {
        ContainerCache {
            entries: FxHashMap::default(),
            capacity: capacity.max(1),
            mounts: Mounts::read(),
            depths: FxHashMap::default(),
            misses: 0,
            reused: 0,
            untrusted: 0,
        }
    }

    /// The attribution of the process `pid` that ran at `event_ms` (`None` if it is gone, or
    /// if the pid now belongs to a process started later).
    pub fn lookup(&mut self, pid: u32, event_ms: Option<u64>) -> Option<Arc<Attribution>> {
        let start = match start_time_at(pid, event_ms) {
            StartedAt::Started(s) => s,
            StartedAt::Gone => {
                self.misses += 1;
                return None;
            }
            StartedAt::Later => {
                self.reused += 1;
                return None;
            }
        };
        if let Some(a) = self.entries.get(&(pid, start)) {
            if a.untrusted.is_some() {
                self.untrusted += 1;
            }
            return Some(a.clone());
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            self.misses += 1;
            return None;
        };
        let (mounts, depths) = (&self.mounts, &mut self.depths);
        let a = parse_cgroup_trusting(&text, |ctrl, path| {
            *depths
                .entry((ctrl.to_string(), path.to_string()))
                .or_insert_with(|| trusted_depth(mounts, ctrl, path))
        });
        // The pid may have been reused between the reads: check it is still the same.
        if start_time(pid) != Some(start) {
            self.misses += 1;
            return None;
        }
        if self.entries.len() >= self.capacity {
            // Simple and bounded: start over (entries are cheap to rebuild from procfs).
            self.entries.clear();
        }
        if self.depths.len() >= self.capacity {
            self.depths.clear();
        }
        if a.untrusted.is_some() {
            self.untrusted += 1;
        }
        let a = Arc::new(a);
        self.entries.insert((pid, start), a.clone());
        Some(a)
    }
}

#[cfg(test)]
mod tests;
