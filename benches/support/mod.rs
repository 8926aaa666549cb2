//! What the benchmarks share: what they measure of a running process (from /proc),
//! their settings from the environment, the files they announce.

use std::process::Command;

fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (user seconds, sys seconds, peak RSS kB) of a live process.
pub fn usage(pid: u32) -> (f64, f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let (user, sys) = (field(11) / ticks_per_sec(), field(12) / ticks_per_sec());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (user, sys, hwm)
}

/// Context switches (voluntary and not) of all the threads of process `pid` alive now.
#[allow(dead_code)] // the drain bench only
pub fn context_switches(pid: u32) -> u64 {
    switches_by_thread(pid).iter().map(|(_, n)| n).sum()
}

/// Context switches of each thread of process `pid` alive now, by thread name.
#[allow(dead_code)]
pub fn switches_by_thread(pid: u32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        let n = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
        all.push((name, n));
    }
    all
}

/// `MESHNODE_BENCH_N` (how many messages), or `default`.
pub fn bench_n(default: usize) -> usize {
    std::env::var("MESHNODE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Size of the files the drains announce.
#[allow(dead_code)] // the taker bench has its own products
pub const FILE_SIZE: usize = 2048;

/// File `i` of a drain: text, so it can travel inline as utf-8.
#[allow(dead_code)]
pub fn bulletin(i: usize) -> Vec<u8> {
    let mut p = format!("bulletin {i} ").into_bytes();
    p.resize(FILE_SIZE, b'x');
    p
}
