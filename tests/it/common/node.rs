//! meshnode nodes as child processes, and the options of a peer between two brokers.

use super::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

pub use meshnode::app::mosquitto::signal;

/// A meshnode process.
pub struct Node {
    pub child: Option<Child>,
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Node {
    pub fn start(log: &Path, args: &[String]) -> Node {
        Self::start_env(log, args, &[])
    }

    /// A node started with `env` added to its environment.
    pub fn start_env(log: &Path, args: &[String], env: &[(&str, &str)]) -> Node {
        let mut n = Node {
            child: None,
            log: log.to_path_buf(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        n.launch();
        n
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // MESHNODE_WRAP="strace -c -f -o /tmp/s" runs the node under a profiler (benchmarks)
        let wrap = std::env::var("MESHNODE_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        // MESHNODE_BIN: another build of the node (a benchmark's same-run comparison)
        let bin = std::env::var("MESHNODE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_meshnode").to_string());
        let mut cmd = match words.next() {
            Some(w) => {
                let mut c = Command::new(w);
                c.args(words).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = cmd
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn restart(&mut self) {
        self.launch();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn term(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id(), "TERM");
        c.wait().ok()?.code()
    }

    /// Sends `sig` (e.g. "STOP", "CONT") to the running node.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "---- log of node {}:\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Arguments of a peer subscribed to `upstream` brokers, posting to `post`.
pub fn peer_args(
    upstream: &[&Broker],
    post: &Broker,
    dir: &Path,
    base_url: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a = vec!["peer".to_string()];
    for b in upstream {
        a.push("--broker".into());
        a.push(b.url());
    }
    a.extend(
        [
            "--post-broker",
            &post.url(),
            "--post-baseUrl",
            base_url,
            "--dir",
            &dir.display().to_string(),
            "--verbose",
            "2",
        ]
        .map(String::from),
    );
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}
