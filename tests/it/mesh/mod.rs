//! The mesh peer against real mosquitto brokers, with real HTTP downloads: what a
//! flow does with each message (flow), and how it rides out failures (resilience).

mod chaos;
mod engine;
mod flow;
mod resilience;
mod servers;

use crate::common::*;
use std::path::PathBuf;

pub const WAIT: u64 = 60;

pub fn subscribed(node: &Node, n: usize) -> bool {
    wait_until(WAIT, || node.log_text().matches("subscribed").count() >= n)
}

/// Three brokers and three trees for a ring of inline nodes, 1 <- 3 <- 2 <- 1 (node
/// `i` follows broker `up` and announces on broker `i`).
pub struct Ring<'s> {
    s: &'s Scratch,
    pub brokers: Vec<Broker>,
    pub trees: Vec<PathBuf>,
}

impl<'s> Ring<'s> {
    pub fn new(s: &'s Scratch) -> Ring<'s> {
        Ring {
            s,
            brokers: (1..=3)
                .map(|i| Broker::start(&s.path(&format!("b{i}"))))
                .collect(),
            trees: (1..=3).map(|i| s.path(&format!("node{i}"))).collect(),
        }
    }

    /// Starts node `i` (0-based) following broker `up`.
    pub fn start(&self, i: usize, up: usize) -> Node {
        Node::start(
            &self.s.path(&format!("n{}.log", i + 1)),
            &peer_args(
                &[&self.brokers[up]],
                &self.brokers[i],
                &self.trees[i],
                "http://127.0.0.1:9/",
                &["--verbose", "1", "--inline"],
            ),
        )
    }
}

/// The usual arrangement: an upstream broker, a watched local broker, and a node
/// (storing in `s/node`, with `extra` options) subscribed between them.
pub fn node_between(s: &Scratch, extra: &[&str]) -> (Broker, Broker, Watcher, PathBuf, Node) {
    node_between_env(s, extra, &[])
}

/// `node_between`, the node started with `env` added to its environment.
pub fn node_between_env(
    s: &Scratch,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Broker, Broker, Watcher, PathBuf, Node) {
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "xpublic/#");
    let dir = s.path("node");
    let node = Node::start_env(
        &s.path("node.log"),
        &peer_args(&[&up], &local, &dir, "http://127.0.0.1:9/data", extra),
        env,
    );
    assert!(subscribed(&node, 1));
    (up, local, watch, dir, node)
}

/// Inline announcements of the files `dir/f{i}.txt`, `i` in `range`, holding `{tag}{i}`.
pub fn inline_batch(dir: &str, tag: &str, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            let rel = format!("{dir}/f{i}.txt");
            let data = format!("{tag}{i}\n");
            let a = announcement("http://127.0.0.1:1/data", &rel, data.as_bytes(), true);
            (topic_of(&rel), a)
        })
        .collect()
}

/// (downloads, inline writes) from a node's totals line.
pub fn totals(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("totals:"))
        .expect("a totals line");
    let field = |name: &str| -> u64 {
        let rest = &line[line
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + name.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("downloads "), field("inline "))
}

/// Stored files, and announcements seen, among `rels`.
pub fn arrived(dir: &std::path::Path, watch: &Watcher, rels: &[String]) -> (usize, usize) {
    let stored = rels.iter().filter(|r| dir.join(r).is_file()).count();
    // each announcement read once (a lookup per relPath in them all was quadratic)
    let seen: std::collections::HashSet<String> = watch
        .snapshot()
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .filter_map(|v| v["relPath"].as_str().map(str::to_string))
        .collect();
    let announced = rels.iter().filter(|r| seen.contains(r.as_str())).count();
    (stored, announced)
}

/// Files `rel(i)` holding `content(i)` for `i` in `0..n`, put in `origin` and announced
/// for download from `base` (inline content for those `inline(i)` says):
/// (announcements, relPaths).
pub fn files(
    origin: &std::path::Path,
    base: &str,
    n: usize,
    rel: impl Fn(usize) -> String,
    content: impl Fn(usize) -> String,
    inline: impl Fn(usize) -> bool,
) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut batch = Vec::with_capacity(n);
    let mut rels = Vec::with_capacity(n);
    for i in 0..n {
        let (r, data) = (rel(i), content(i));
        put(origin, &r, data.as_bytes());
        batch.push((
            topic_of(&r),
            announcement(base, &r, data.as_bytes(), inline(i)),
        ));
        rels.push(r);
    }
    (batch, rels)
}
