//! Container and service attribution from a process's cgroup path, with no runtime API.
//!
//! Owns the reading of `/proc/<pid>/cgroup` (cgroup v1 and v2 lines alike) into what it says
//! about the process: the container id and its runtime (docker, containerd/CRI, CRI-O,
//! podman, LXC), the Kubernetes pod uid and QoS class (systemd and cgroupfs drivers), and the
//! systemd unit. Results are cached per (pid, start time), so a reused pid never gets another
//! process's answer; the cache is bounded. It must never call a container runtime or block
//! on anything but procfs, and never guess: a path it does not recognise gives nothing.

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
/// wins: a container id from any of them, the unit from the name=systemd or v2 line).
pub fn parse_cgroup(text: &str) -> Attribution {
    let mut a = Attribution::default();
    for line in text.lines() {
        // hierarchy-id:controllers:path
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let mut one = Attribution::default();
        from_path(path, &mut one);
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
    a
}

/// The start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid, it names one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Attribution per process, cached by (pid, start time), bounded.
pub struct ContainerCache {
    entries: FxHashMap<(u32, u64), Arc<Attribution>>,
    capacity: usize,
    /// Lookups whose process was already gone (a short-lived process).
    pub misses: u64,
}

impl ContainerCache {
    pub fn new(capacity: usize) -> Self {
        ContainerCache {
            entries: FxHashMap::default(),
            capacity: capacity.max(1),
            misses: 0,
        }
    }

    /// The attribution of the running process `pid` (`None` if it is gone).
    pub fn lookup(&mut self, pid: u32) -> Option<Arc<Attribution>> {
        let Some(start) = start_time(pid) else {
            self.misses += 1;
            return None;
        };
        if let Some(a) = self.entries.get(&(pid, start)) {
            return Some(a.clone());
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            self.misses += 1;
            return None;
        };
        // The pid may have been reused between the two reads: check it is still the same.
        if start_time(pid) != Some(start) {
            self.misses += 1;
            return None;
        }
        if self.entries.len() >= self.capacity {
            // Simple and bounded: start over (entries are cheap to rebuild from procfs).
            self.entries.clear();
        }
        let a = Arc::new(parse_cgroup(&text));
        self.entries.insert((pid, start), a.clone());
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1b3e7c9a2d5b8e0f6a1c3d7e9b2a4c6d8f0e1a3b5c7d9e2f4a6b8c0d1e3f5a";

    #[test]
    fn each_runtime_by_its_cgroup_path() {
        let cases = [
            (format!("0::/system.slice/docker-{ID}.scope"), Some("docker"), Some(format!("docker-{ID}.scope"))),
            (format!("12:pids:/docker/{ID}"), Some("docker"), None),
            (format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/cri-containerd-{ID}.scope"), Some("containerd"), Some(format!("cri-containerd-{ID}.scope"))),
            (format!("0::/kubepods.slice/kubepods-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/crio-{ID}.scope"), Some("cri-o"), Some(format!("crio-{ID}.scope"))),
            (format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"), Some("podman"), Some(format!("libpod-{ID}.scope"))),
            (format!("11:memory:/kubepods/burstable/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8/{ID}"), Some("containerd"), None),
        ];
        for (text, runtime, unit) in cases {
            let a = parse_cgroup(&text);
            if runtime.is_some() {
                assert_eq!(a.container_id.as_deref(), Some(ID), "{text}");
            }
            assert_eq!(a.runtime, runtime, "{text}");
            if unit.is_some() {
                assert_eq!(a.unit, unit, "{text}");
            }
        }
        let lxc = parse_cgroup("0::/lxc.payload.web01/system.slice/nginx.service");
        assert_eq!(
            (
                lxc.container_id.as_deref(),
                lxc.runtime,
                lxc.unit.as_deref()
            ),
            (Some("web01"), Some("lxc"), Some("nginx.service"))
        );
        let lxc1 = parse_cgroup("4:memory:/lxc/db01");
        assert_eq!(
            (lxc1.container_id.as_deref(), lxc1.runtime),
            (Some("db01"), Some("lxc"))
        );
    }

    #[test]
    fn kubernetes_pod_and_qos() {
        let a = parse_cgroup(&format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(
            a.pod_uid.as_deref(),
            Some("1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8")
        );
        assert_eq!(a.qos, Some("Burstable"));
        let g = parse_cgroup(&format!(
            "0::/kubepods.slice/kubepods-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/crio-{ID}.scope"
        ));
        assert_eq!(g.qos, Some("Guaranteed"));
        let b = parse_cgroup(&format!(
            "11:memory:/kubepods/besteffort/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8/{ID}"
        ));
        assert_eq!(
            b.pod_uid.as_deref(),
            Some("1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8")
        );
        assert_eq!(b.qos, Some("BestEffort"));
    }

    #[test]
    fn services_sessions_and_nothing() {
        let s = parse_cgroup("0::/system.slice/nginx.service");
        assert_eq!(s.unit.as_deref(), Some("nginx.service"));
        assert_eq!(s.container_id, None);
        let v1 = parse_cgroup("9:name=systemd:/user.slice/user-1000.slice/session-3.scope\n8:pids:/user.slice/user-1000.slice/session-3.scope\n4:memory:/");
        assert_eq!(v1.unit.as_deref(), Some("session-3.scope"));
        assert!(parse_cgroup("0::/\n").is_empty());
        assert!(parse_cgroup("garbage").is_empty());
        assert!(parse_cgroup("").is_empty());
        // A 64-hex name outside any runtime's layout is an id without a runtime.
        let odd = parse_cgroup(&format!("0::/something/{ID}"));
        assert_eq!((odd.container_id.as_deref(), odd.runtime), (Some(ID), None));
    }

    #[test]
    fn our_own_process_is_looked_up_and_cached_by_start_time() {
        let me = std::process::id();
        let mut cache = ContainerCache::new(8);
        let a = cache.lookup(me).expect("we are running");
        let b = cache.lookup(me).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached");
        assert!(start_time(me).is_some());
        assert_eq!(cache.lookup(u32::MAX - 1), None);
        assert_eq!(cache.misses, 1);
    }
}
