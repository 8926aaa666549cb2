//! Temporaries left in the data tree by a process that died mid-download (SIGKILL, a
//! power cut): `.meshnode.<pid>.<n>.tmp` beside the file it was to become. Swept once
//! when a flow starts, in the background (a tree can hold many files), keeping those
//! of processes still alive (another flow, `post`, a node sharing the tree).

use super::tree::TEMP_PREFIX;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

/// This process's pid and start (its /proc directory's time), for `sweep_temporaries`.
pub fn this_process() -> (u32, SystemTime) {
    let started = fs::metadata("/proc/self")
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (std::process::id(), started)
}

/// Directories looked into at most (a bound on a runaway tree).
const MAX_DIRS: usize = 1_000_000;

/// The pid in a temporary's name, when it is one of ours.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(".tmp")?;
    let (pid, n) = rest.split_once('.')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` is alive (it has a /proc entry).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the temporaries under `root` whose process is gone; returns how many.
/// `own`: this process's pid and when it started: a temporary of that number older
/// than that is a dead process's (a pid comes round again after a reboot); a younger
/// one is another flow's of this process, at work.
pub fn sweep_temporaries(root: &Path, own: (u32, SystemTime)) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        seen += 1;
        if seen > MAX_DIRS {
            break;
        }
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                dirs.push(e.path());
                continue;
            }
            let name = e.file_name();
            let Some(pid) = temp_pid(&name.to_string_lossy()) else {
                continue;
            };
            let dead = if pid == own.0 {
                let modified = e.metadata().and_then(|m| m.modified());
                modified.is_ok_and(|t| t < own.1)
            } else {
                !alive(pid)
            };
            if kind.is_file() && dead && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dead_processes_temporaries_go() {
        let root = std::env::temp_dir().join(format!("meshnode-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("a/b")).unwrap();
        // a process that was and is no more
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let live = std::process::id();
        let dead_tmp = root.join(format!("a/b/.meshnode.{dead}.3.tmp"));
        let live_tmp = root.join(format!("a/.meshnode.{live}.0.tmp"));
        for p in [&dead_tmp, &live_tmp] {
            fs::write(p, b"").unwrap();
        }
        fs::write(root.join("a/b/.meshnode.notes"), b"kept").unwrap();
        fs::write(root.join("a/b/file.txt"), b"kept").unwrap();
        let long_ago = SystemTime::UNIX_EPOCH;
        assert_eq!(sweep_temporaries(&root, (1, long_ago)), 1);
        assert!(!dead_tmp.exists());
        assert!(live_tmp.exists(), "a live process's temporary stays");
        assert!(root.join("a/b/file.txt").exists() && root.join("a/b/.meshnode.notes").exists());
        // this process's own, made since it started: another flow's at work
        assert_eq!(sweep_temporaries(&root, (live, long_ago)), 0);
        assert!(live_tmp.exists());
        // older than the process: a dead process's of the same number
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(sweep_temporaries(&root, (live, later)), 1);
        assert!(!live_tmp.exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn temporary_names() {
        assert_eq!(temp_pid(".meshnode.123.4.tmp"), Some(123));
        assert_eq!(temp_pid(".meshnode.123.tmp"), None);
        assert_eq!(temp_pid("meshnode.123.4.tmp"), None);
        assert_eq!(temp_pid(".meshnode.x.4.tmp"), None);
    }
}
