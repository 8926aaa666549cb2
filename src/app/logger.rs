//! A small logger: one line per event on stderr. Under systemd (JOURNAL_STREAM set)
//! lines carry a `<N>` priority prefix and no timestamp, since journald stamps them.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Logger {
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) || !r.target().starts_with("meshnode") {
            return;
        }
        let mut line = String::with_capacity(128);
        if self.journal {
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            line.push_str(&format!("<{prio}>"));
        } else {
            let now = crate::sys::unix_now();
            crate::core::time::format_time(&mut line, now);
            line.push(' ');
            line.push_str(match r.level() {
                Level::Error => "ERROR ",
                Level::Warn => "WARN ",
                Level::Info => "INFO ",
                Level::Debug => "DEBUG ",
                Level::Trace => "TRACE ",
            });
        }
        if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
            line.push('[');
            line.push_str(name);
            line.push_str("] ");
        }
        let text = r.args().to_string();
        if r.level() <= Level::Warn {
            remember(r.level(), &text);
        }
        line.push_str(&text);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    fn flush(&self) {}
}

/// One warning or error, kept for the status page.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Unix seconds.
    pub time: f64,
    pub level: &'static str,
    /// The thread (a flow's name, `http`...).
    pub thread: String,
    pub text: String,
}

/// Problems kept, the newest last.
pub const PROBLEMS_KEPT: usize = 20;
static PROBLEMS: std::sync::Mutex<std::collections::VecDeque<Problem>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

fn remember(level: Level, text: &str) {
    let p = Problem {
        time: crate::sys::unix_now(),
        level: if level == Level::Error {
            "error"
        } else {
            "warning"
        },
        thread: std::thread::current().name().unwrap_or("main").to_string(),
        text: text.chars().take(300).collect(),
    };
    let mut q = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= PROBLEMS_KEPT {
        q.pop_front();
    }
    q.push_back(p);
}

/// The last warnings and errors logged, oldest first.
pub fn problems() -> Vec<Problem> {
    let q = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    q.iter().cloned().collect()
}

/// Installs the logger; verbose 0 = warnings and errors, 1 = +info, 2 = +each file,
/// 3 = +each decision.
pub fn init(verbose: u8) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if log::set_logger(Box::leak(Box::new(Logger { journal }))).is_ok() {
        log::set_max_level(match verbose {
            0 => LevelFilter::Warn,
            1 => LevelFilter::Info,
            2 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        });
    }
}
