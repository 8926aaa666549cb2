//! The mesh peer against real mosquitto brokers, with real HTTP downloads: what a
//! flow does with each message (flow), and how it rides out failures (resilience).

mod engine;
mod flow;
mod resilience;

use crate::common::*;
use std::path::PathBuf;

pub const WAIT: u64 = 60;

pub fn subscribed(node: &Node, n: usize) -> bool {
    wait_until(WAIT, || node.log_text().matches("subscribed").count() >= n)
}

/// The usual arrangement: an upstream broker, a watched local broker, and a node
/// (storing in `s/node`, with `extra` options) subscribed between them.
pub fn node_between(s: &Scratch, extra: &[&str]) -> (Broker, Broker, Watcher, PathBuf, Node) {
    let up = Broker::start(&s.path("up"));
    let local = Broker::start(&s.path("local"));
    let watch = Watcher::start(&local, "xpublic/#");
    let dir = s.path("node");
    let node = Node::start(
        &s.path("node.log"),
        &peer_args(&[&up], &local, &dir, "http://127.0.0.1:9/data", extra),
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
