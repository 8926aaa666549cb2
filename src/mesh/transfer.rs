//! The download client's words, shared by the one-by-one path (`fetch`) and the
//! pipelined connections (`pipeline`): timeouts by phase, what can go wrong, the read
//! size. A leaf, so that neither imports the other for them.

use std::io;
use std::time::Duration;

/// Timeouts of one download, by phase. No total deadline: a large file on a slow link
/// may take long as long as bytes keep coming.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    /// Longest wait for any single read of the body.
    pub per_read: Duration,
    /// A body arriving slower than this (bytes per second, averaged over `rate_window`)
    /// is abandoned, to be tried again; 0: any rate will do.
    pub min_rate: u64,
    pub rate_window: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
            per_read: Duration::from_secs(30),
            min_rate: 1024,
            rate_window: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
pub enum FetchError {
    /// The server answered with a status other than 200.
    Status(u16),
    /// Nobody listens at the server's port.
    Refused,
    /// Connecting, sending or receiving failed.
    Transport(String),
    /// Writing the body locally failed (disk full, size limit...).
    Write(io::Error),
    /// The body came slower than the minimum rate: abandoned, to be tried again.
    TooSlow { bytes: u64, secs: u64 },
    /// The node is stopping: the transfer was abandoned.
    Stopped,
}

impl FetchError {
    /// A 4xx answer, or a file over the size limit, will not change by asking again;
    /// a server away, a 5xx or a full disk may.
    pub fn is_permanent(&self) -> bool {
        match self {
            FetchError::Status(s) => (400..500).contains(s) && *s != 408 && *s != 429,
            FetchError::Write(e) => e.kind() == io::ErrorKind::Other,
            FetchError::Refused
            | FetchError::Transport(_)
            | FetchError::TooSlow { .. }
            | FetchError::Stopped => false,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::Refused => write!(f, "connection refused"),
            FetchError::Transport(e) => write!(f, "{e}"),
            FetchError::Write(e) => write!(f, "writing the download: {e}"),
            FetchError::TooSlow { bytes, secs } => write!(
                f,
                "too slow: {bytes} bytes in {secs} s, under the minimum rate (--min-rate)"
            ),
            FetchError::Stopped => write!(f, "abandoned: the node is stopping"),
        }
    }
}

/// Bytes read from the network at a time.
pub const READ_CHUNK: usize = 16 * 1024;
