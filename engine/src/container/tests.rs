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
    let a = cache.lookup(me, None).expect("we are running");
    let b = cache.lookup(me, None).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "cached");
    assert!(start_time(me).is_some());
    assert_eq!(cache.lookup(u32::MAX - 1, None), None);
    assert_eq!(cache.misses, 1);
    // An event from before we started: the pid is taken as reused, nothing attached.
    assert_eq!(cache.lookup(me, Some(1_000)), None);
    assert_eq!(cache.reused, 1);
    let now = boot_epoch_ms().unwrap() + start_time(me).unwrap() * 1000 / ticks_per_sec();
    assert!(
        cache.lookup(me, Some(now)).is_some(),
        "an event of ours now"
    );
}

#[test]
fn event_times_in_milliseconds() {
    assert_eq!(event_ms(b"1524242704.387"), Some(1_524_242_704_387));
    assert_eq!(event_ms(b"1.5"), Some(1_500));
    assert_eq!(event_ms(b"7"), Some(7_000));
    assert_eq!(event_ms(b"x.1"), None);
    assert_eq!(event_ms(b"99999999999999999999.1"), None);
}

/// A runtime- or unit-shaped name below the trusted part of a path is only a claim.
#[test]
fn names_below_the_trusted_part_are_claims_not_attribution() {
    let forged =
        format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope");
    // Made by root down to user@1000.service (delegated: chowned to the user), so what
    // is below it is the user's.
    let a = parse_cgroup_trusting(&forged, |_, _| 3);
    assert_eq!(
        (a.container_id.as_deref(), a.runtime, a.unit.as_deref()),
        (None, None, Some("user@1000.service"))
    );
    let u = a.untrusted.as_deref().unwrap();
    assert_eq!(u.container_id.as_deref(), Some(ID));
    assert_eq!(u.runtime, Some("docker"));
    assert_eq!(u.unit, Some(format!("docker-{ID}.scope")));
    let svc = parse_cgroup_trusting(
        "0::/user.slice/user-1000.slice/user@1000.service/backup.service",
        |_, _| 3,
    );
    assert_eq!(svc.unit.as_deref(), Some("user@1000.service"));
    assert_eq!(
        svc.untrusted.unwrap().unit.as_deref(),
        Some("backup.service")
    );
    let lxc = parse_cgroup_trusting("0::/delegated/lxc.payload.web01", |_, _| 0);
    assert_eq!(lxc.container_id, None);
    assert_eq!(
        lxc.untrusted.unwrap().container_id.as_deref(),
        Some("web01")
    );
    // The same path all root's: attributed, no claim.
    let ok = parse_cgroup_trusting(&forged, |_, _| usize::MAX);
    assert_eq!(ok.container_id.as_deref(), Some(ID));
    assert!(ok.untrusted.is_none());
    // A trusted container with a user's sub-cgroup: the container stands, the unit
    // below it is a claim.
    let inner = parse_cgroup_trusting(
        &format!("0::/system.slice/docker-{ID}.scope/x.service"),
        |_, _| 2,
    );
    assert_eq!(inner.container_id.as_deref(), Some(ID));
    assert_eq!(inner.unit, Some(format!("docker-{ID}.scope")));
    assert_eq!(inner.untrusted.unwrap().unit.as_deref(), Some("x.service"));
}

/// On a directory tree standing in for a hierarchy: a name counts while its parent is
/// root's alone; a chowned (delegated) directory's own name counts, its children don't;
/// a group-writable one ends the trusted part the same way.
#[test]
fn trust_ends_below_a_directory_someone_else_may_write() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let base = std::env::temp_dir().join(format!("pauditd-cgtrust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("sys.slice/user@1.service/app/x.service")).unwrap();
    std::fs::create_dir_all(base.join("open/docker-x.scope")).unwrap();
    for d in ["", "sys.slice", "open"] {
        std::fs::set_permissions(base.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(base.join("sys.slice/user@1.service"), Some(65534), None).unwrap();
    std::fs::set_permissions(base.join("open"), std::fs::Permissions::from_mode(0o775)).unwrap();
    let m = Mounts {
        v2: Some(base.clone()),
        v1: Vec::new(),
    };
    assert_eq!(
        trusted_depth(&m, "", "/sys.slice/user@1.service/app/x.service"),
        2
    );
    assert_eq!(trusted_depth(&m, "", "/sys.slice"), 1);
    assert_eq!(trusted_depth(&m, "", "/open/docker-x.scope"), 1);
    assert_eq!(trusted_depth(&m, "", "/"), 0);
    assert_eq!(trusted_depth(&m, "", "/sys.slice/../open"), 1);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_hierarchies_here_are_root_owned_and_found() {
    let m = Mounts::read();
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrl, path) = (it.next(), it.next().unwrap(), it.next().unwrap());
        if m.base(ctrl).is_some() {
            let depth = trusted_depth(&m, ctrl, path);
            assert!(depth <= path.split('/').filter(|p| !p.is_empty()).count());
        }
    }
    assert_eq!(trusted_depth(&m, "no-such-controller", "/x"), 0);
}
