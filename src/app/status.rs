//! What the node is doing, for its operator: `GET /status.json` (read by
//! `meshnode status`) and `GET /status`, one small HTML page from the same figures (no
//! external resources, readable on a phone).

use super::metrics::{cpu_seconds, free_bytes, rss_bytes};
use crate::channels::taker::Taker;
use crate::http::{Handler, Reply, Request};
use crate::mesh::stats::Board;
use serde_json::{json, Value};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Status {
    pub board: Board,
    pub taker: Option<Arc<Taker>>,
    pub dir: PathBuf,
}

impl Handler for Status {
    fn name(&self) -> String {
        "status".into()
    }
    fn handles(&self, path: &str) -> bool {
        matches!(path.split('?').next(), Some("/status" | "/status.json"))
    }
    fn answer(&self, req: &Request, _body: &mut dyn Read, _peer: &str) -> io::Result<Reply> {
        if !req.method_ok {
            return Ok(Reply::new(405).header("allow", "GET, HEAD"));
        }
        let v = self.snapshot();
        if req.path.starts_with("/status.json") {
            let mut body = serde_json::to_vec_pretty(&v).expect("JSON serializes");
            body.push(b'\n');
            return Ok(Reply::new(200).bytes("application/json", body));
        }
        Ok(Reply::new(200)
            .header("cache-control", "no-store")
            .bytes("text/html; charset=utf-8", page(&v)))
    }
}

impl Status {
    pub fn snapshot(&self) -> Value {
        let board = self.board.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let cpu = crate::sys::flows::cpu_seconds();
        let flows: Vec<Value> = board
            .iter()
            .map(|(name, r)| {
                json!({
                    "name": name,
                    "state": r.state(),
                    "cpu_seconds": cpu.get(name).copied().unwrap_or(0.0),
                    "rate": r.rate,
                    "lag_mean": r.lag_mean,
                    "lag_max": r.lag_max,
                    "lag_warn": r.lag_warn,
                    "retry_queue": r.stats.retry_depth,
                    "downloading": r.stats.downloading,
                    "servers_down": r.stats.servers_down,
                    "messages": r.stats.messages,
                    "last_message": r.last_message,
                    "brokers": r.brokers.iter().map(|(b, up, n)| json!({"broker": b, "connected": up, "connections": n})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let channels: Vec<Value> = match &self.taker {
            Some(t) => t
                .channels
                .defs
                .iter()
                .filter(|d| !d.is_feed())
                .map(|d| json!({"id": d.id, "products": t.channels.list(d).map(|l| l.len()).ok()}))
                .collect(),
            None => Vec::new(),
        };
        let problems: Vec<Value> = super::logger::problems()
            .iter()
            .rev()
            .map(|p| json!({"time": p.time, "level": p.level, "thread": p.thread, "text": p.text}))
            .collect();
        json!({
            "now": crate::sys::unix_now(),
            "rss_bytes": rss_bytes(),
            "cpu_seconds": cpu_seconds(),
            "http_connections": crate::http::server::open_connections(),
            "free_bytes": free_bytes(&self.dir),
            "flows": flows,
            "channels": channels,
            "problems": problems,
        })
    }
}

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ago(now: f64, t: Option<f64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0.0);
            if s < 120.0 {
                format!("{s:.0} s ago")
            } else if s < 7200.0 {
                format!("{:.0} min ago", s / 60.0)
            } else {
                format!("{:.1} h ago", s / 3600.0)
            }
        }
    }
}

fn mb(v: &Value) -> String {
    v.as_f64()
        .map_or("?".into(), |b| format!("{:.1} MB", b / 1e6))
}

/// The status page: flows, channels, the last problems; refreshes itself each 15 s.
fn page(v: &Value) -> String {
    let now = v["now"].as_f64().unwrap_or(0.0);
    let mut h = String::with_capacity(4096);
    h.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta http-equiv=\"refresh\" content=\"15\"><title>meshnode status</title><style>",
        "body{font-family:sans-serif;margin:1em;max-width:60em}",
        "table{border-collapse:collapse;width:100%;margin-bottom:1em}",
        "th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ccc}",
        ".running,.idle{color:#060}.lagging,.retrying{color:#a60}.disconnected{color:#b00}",
        "</style></head><body><h1>meshnode</h1>",
    ));
    h.push_str(&format!(
        "<p>memory {} · CPU {:.1} s · HTTP connections {} · free space {}</p>",
        mb(&v["rss_bytes"]),
        v["cpu_seconds"].as_f64().unwrap_or(0.0),
        v["http_connections"],
        mb(&v["free_bytes"]),
    ));
    h.push_str("<h2>Flows</h2><table><tr><th>flow</th><th>state</th><th>msgs/s</th><th>lag mean / max</th><th>retry queue</th><th>last message</th><th>CPU</th></tr>");
    for f in v["flows"].as_array().into_iter().flatten() {
        let state = f["state"].as_str().unwrap_or("?");
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{:.1}</td><td>{:.1} s / {:.1} s</td><td>{}</td><td>{}</td><td>{:.1} s</td></tr>",
            esc(f["name"].as_str().unwrap_or("")),
            f["rate"].as_f64().unwrap_or(0.0),
            f["lag_mean"].as_f64().unwrap_or(0.0),
            f["lag_max"].as_f64().unwrap_or(0.0),
            f["retry_queue"],
            ago(now, f["last_message"].as_f64()),
            f["cpu_seconds"].as_f64().unwrap_or(0.0),
        ));
    }
    h.push_str("</table>");
    if let Some(ch) = v["channels"].as_array().filter(|c| !c.is_empty()) {
        h.push_str("<h2>Channels</h2><table><tr><th>channel</th><th>products</th></tr>");
        for c in ch {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(c["id"].as_str().unwrap_or("")),
                c["products"]
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Last problems</h2>");
    match v["problems"].as_array().filter(|p| !p.is_empty()) {
        None => h.push_str("<p>none</p>"),
        Some(ps) => {
            h.push_str("<table><tr><th>when</th><th>where</th><th>what</th></tr>");
            for p in ps {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}: {}</td></tr>",
                    ago(now, p["time"].as_f64()),
                    esc(p["thread"].as_str().unwrap_or("")),
                    esc(p["level"].as_str().unwrap_or("")),
                    esc(p["text"].as_str().unwrap_or("")),
                ));
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// `meshnode status`: the node's figures, then one line per flow.
pub fn lines(v: &Value) -> String {
    let now = v["now"].as_f64().unwrap_or(0.0);
    let mut s = format!(
        "node: memory {}, CPU {:.1} s, HTTP connections {}, free space {}\n",
        mb(&v["rss_bytes"]),
        v["cpu_seconds"].as_f64().unwrap_or(0.0),
        v["http_connections"],
        mb(&v["free_bytes"]),
    );
    s.push_str(&format!(
        "{:<16} {:<12} {:>9} {:>17} {:>7} {:>14} {:>9}\n",
        "flow", "state", "msgs/s", "lag mean/max (s)", "retry", "last message", "CPU (s)"
    ));
    for f in v["flows"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{:<16} {:<12} {:>9.1} {:>17} {:>7} {:>14} {:>9.1}\n",
            f["name"].as_str().unwrap_or(""),
            f["state"].as_str().unwrap_or("?"),
            f["rate"].as_f64().unwrap_or(0.0),
            format!(
                "{:.1}/{:.1}",
                f["lag_mean"].as_f64().unwrap_or(0.0),
                f["lag_max"].as_f64().unwrap_or(0.0)
            ),
            f["retry_queue"],
            ago(now, f["last_message"].as_f64()),
            f["cpu_seconds"].as_f64().unwrap_or(0.0),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let v = json!({
            "now": 1000.0, "rss_bytes": 5e6, "cpu_seconds": 1.5, "http_connections": 2,
            "free_bytes": 1e9,
            "flows": [{"name": "<script>", "state": "lagging", "rate": 2.0, "lag_mean": 200.0,
                       "lag_max": 300.0, "retry_queue": 3, "last_message": 990.0}],
            "channels": [{"id": "MEMO", "products": 4}],
            "problems": [{"time": 900.0, "level": "error", "thread": "main", "text": "disk <full>"}],
        });
        let h = page(&v);
        assert!(h.contains("&lt;script&gt;") && !h.contains("<script>"));
        assert!(h.contains("class=\"lagging\">lagging") && h.contains("10 s ago"));
        assert!(h.contains("disk &lt;full&gt;") && h.contains("<td>MEMO</td><td>4</td>"));
    }
}
