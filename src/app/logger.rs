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
        line.push_str(&r.args().to_string());
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    fn flush(&self) {}
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
