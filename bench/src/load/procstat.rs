//! The server's CPU time, when it runs on this machine: `utime + stime` from
//! `/proc/PID/stat`, and the PID found from the listening port when not given.
//!
//! `/proc` reports CPU time in clock ticks of `USER_HZ`, which the kernel fixes at 100 per
//! second for user space on every architecture Linux runs on (it is part of the ABI,
//! whatever `CONFIG_HZ` is), so the resolution is 10 ms: enough over a run of seconds.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

/// `USER_HZ`: clock ticks per second in `/proc/PID/stat`.
const TICKS_PER_SECOND: u64 = 100;
/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// CPU time (user + system, all threads) of process `pid` so far, in ns.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks * (1_000_000_000 / TICKS_PER_SECOND))
}

/// `utime + stime` in ticks from the text of `/proc/PID/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid` now, in KiB: `VmRSS` from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_status_rss_kib(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS` in KiB from the text of `/proc/PID/status` (a line `VmRSS:     1234 kB`).
fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let kib = fields.next()?.parse().ok()?;
    (fields.next()? == "kB").then_some(kib)
}

/// The process listening on TCP `target`'s port on this machine, if exactly one does (on
/// the target's address or on a wildcard address).
pub fn find_listener(target: SocketAddr) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, target));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let mut owners = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if owns_any_socket(&entry.path(), &inodes) && !owners.contains(&pid) {
            owners.push(pid);
        }
    }
    match owners[..] {
        [pid] => Some(pid),
        _ => None,
    }
}

fn owns_any_socket(proc_dir: &Path, inodes: &[u64]) -> bool {
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|link| {
            link.to_str()
                .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// Inodes of the sockets in a `/proc/net/tcp{,6}` table listening on `target`'s port, on
/// its address or a wildcard one.
fn listening_inodes(table: &str, target: SocketAddr) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != TCP_LISTEN {
                return None;
            }
            let (addr_hex, port_hex) = local.split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let wildcard = addr_hex.bytes().all(|b| b == b'0');
            let same = addr_matches(addr_hex, target);
            (port == target.port() && (wildcard || same)).then(|| inode.parse().ok())?
        })
        .collect()
}

/// Whether the kernel's hex address (IPv4: one little-endian u32; IPv6: four of them) is
/// `target`'s IP. Loopback targets match any loopback listener.
fn addr_matches(addr_hex: &str, target: SocketAddr) -> bool {
    match (addr_hex.len(), target) {
        (8, SocketAddr::V4(t)) => u32::from_str_radix(addr_hex, 16)
            .is_ok_and(|v| std::net::Ipv4Addr::from(v.swap_bytes()) == *t.ip()),
        (32, SocketAddr::V6(t)) => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                let Ok(word) = u32::from_str_radix(&addr_hex[i * 8..i * 8 + 8], 16) else {
                    return false;
                };
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            std::net::Ipv6Addr::from(octets) == *t.ip()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (moose relay) (x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 37 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(187));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn our_own_cpu_time_is_readable_and_grows() {
        let pid = std::process::id();
        let before = cpu_ns(pid).expect("own stat");
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_ns(pid).expect("own stat") >= before);
    }

    #[test]
    fn resident_memory_is_read_from_the_status_text() {
        let status = "Name:\tmoose-relay\nVmPeak:\t  90000 kB\nVmRSS:\t   36176 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(36176));
        assert_eq!(parse_status_rss_kib("Name:\tx\n"), None);
        assert_eq!(parse_status_rss_kib("VmRSS:\t12 pages\n"), None);
        // Our own resident memory is some and grows when we touch more pages.
        let before = rss_kib(std::process::id()).expect("own status");
        let touched = vec![1u8; 16 << 20];
        let after = rss_kib(std::process::id()).expect("own status");
        assert!(std::hint::black_box(&touched).iter().all(|&b| b == 1));
        assert!(after >= before + 8 * 1024, "{before} -> {after} KiB");
    }

    #[test]
    fn listeners_are_matched_by_port_and_address() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
           1: 00000000:1E62 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n\
           2: 0100007F:1E61 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(listening_inodes(table, lo(7777)), vec![111]);
        assert_eq!(listening_inodes(table, lo(7778)), vec![222]);
        let other = SocketAddr::from(([10, 0, 0, 1], 7777));
        assert_eq!(listening_inodes(table, other), Vec::<u64>::new());
    }

    #[test]
    fn finds_the_process_listening_on_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert_eq!(find_listener(addr), Some(std::process::id()));
        drop(listener);
        assert_eq!(find_listener(addr), None);
    }
}
