//! The process's own figures a scrape reads from the kernel, for the operator's "near the
//! limit" alerts: the descriptor limit, the resident memory, and the memory limit of the
//! relay's cgroup. Each is one system call or one small file, cheap enough for every scrape
//! on core 0. Open descriptors are not counted: listing `/proc/self/fd` costs about a
//! microsecond per descriptor (tens of milliseconds of core 0's media at tens of thousands),
//! so the monitoring rules estimate them from the connection gauges instead
//! (deploy/monitoring/).

use std::fs;

/// The soft limit on open descriptors (RLIMIT_NOFILE) in force now.
pub(crate) fn max_fds() -> u64 {
    crate::sys::nofile_limit()
}

/// Resident memory in bytes (`VmRSS` of `/proc/self/status`), 0 if it cannot be read.
pub(crate) fn resident_memory_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| vm_rss_bytes(&status))
        .unwrap_or(0)
}

/// The `memory.max` of the relay's cgroup (v2) in bytes: where the kernel's OOM killer ends the
/// process (systemd `MemoryMax=`, a container's memory limit). 0 when there is none, or no
/// cgroup v2 to read it from.
pub(crate) fn memory_limit_bytes() -> u64 {
    let Some(path) = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|cgroups| cgroup_v2_path(&cgroups).map(str::to_owned))
    else {
        return 0;
    };
    fs::read_to_string(format!(
        "/sys/fs/cgroup{}/memory.max",
        path.trim_end_matches('/')
    ))
    .ok()
    .and_then(|max| memory_max_bytes(&max))
    .unwrap_or(0)
}

/// The `VmRSS:   1234 kB` line of `/proc/<pid>/status`, in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The path of the unified (v2) hierarchy's line, `0::/system.slice/moose-relay.service`, of
/// `/proc/<pid>/cgroup`. Inside a container with its own cgroup namespace it is `/`.
fn cgroup_v2_path(cgroups: &str) -> Option<&str> {
    cgroups.lines().find_map(|line| line.strip_prefix("0::"))
}

/// A `memory.max` file's value: a number of bytes, or `max` for no limit (`None`).
fn memory_max_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_comes_from_the_status_line_in_bytes() {
        let status = "Name:\tmoose-relay\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn the_unified_hierarchy_names_the_cgroup() {
        let cgroups = "12:cpu:/old\n0::/system.slice/moose-relay.service\n";
        assert_eq!(
            cgroup_v2_path(cgroups),
            Some("/system.slice/moose-relay.service")
        );
        assert_eq!(cgroup_v2_path("0::/\n"), Some("/"));
        assert_eq!(cgroup_v2_path("3:memory:/x\n"), None);
    }

    #[test]
    fn memory_max_is_bytes_or_no_limit() {
        assert_eq!(memory_max_bytes("536870912\n"), Some(536_870_912));
        assert_eq!(memory_max_bytes("max\n"), None);
    }

    #[test]
    fn this_process_has_resident_memory_and_a_descriptor_limit() {
        assert!(resident_memory_bytes() > 1024 * 1024);
        assert!(max_fds() >= 64);
    }
}
