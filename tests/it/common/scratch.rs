//! Free ports, waiting for a condition, scratch directories.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    meshnode::app::mosquitto::free_port().unwrap()
}

/// Polls `cond` until it holds or `secs` pass; returns whether it held.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A scratch directory removed at the end of a passing test.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("meshnode-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !thread::panicking() && std::env::var_os("MESHNODE_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
