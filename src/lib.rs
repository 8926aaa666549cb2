//! meshnode: a full peer of a weather-data mesh, small enough for a first-generation
//! Raspberry Pi. See README.md for the picture.

pub mod announcer;
pub mod body;
pub mod channels;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod fetch;
pub mod integrity;
pub mod logger;
pub mod mediatype;
pub mod message;
pub mod mqtt;
pub mod node;
pub mod peer;
pub mod post;
pub mod recent;
pub mod relpath;
pub mod retention;
pub mod select;
pub mod serve;
pub mod shove;
pub mod store;
pub mod taker;
pub mod topic;

/// Seconds since the Unix epoch, now. Only the edges read the clock; the core takes
/// `now` as an argument.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sleeps `d`, waking early when `stop` is set (checked every 50 ms).
pub fn sleep_unless(stop: &std::sync::atomic::AtomicBool, d: std::time::Duration) {
    use std::time::{Duration, Instant};
    let end = Instant::now() + d;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
}
