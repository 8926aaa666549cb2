//! A download as the engine sees it: the job it hands to a downloader, and what the
//! downloader says became of it. The downloaders (`mesh::workers`) are the driver's.

use crate::core::integrity::{Digest, Method};
use std::sync::Arc;

/// Files larger than this (as announced, or as an answer's head says) are not
/// pipelined with others: behind a large file, small ones would wait for it.
pub const PIPELINE_SMALL: u64 = 64 * 1024;

/// One file to download.
#[derive(Debug)]
pub struct Job {
    /// The message's place in the flow's window.
    pub slot: u64,
    /// Shared (as `origin`) by the window's records of the job: copied there, no
    /// allocation each.
    pub rel: Arc<str>,
    pub url: String,
    /// Where the URL points (`scheme://host:port`): connections are limited per origin.
    pub origin: Arc<str>,
    /// The checksum to compute while writing.
    pub method: Method,
    /// The announced checksum, when it can verify the bytes.
    pub expected: Option<Digest>,
    /// The announced size, when given.
    pub size: Option<u64>,
    /// The batch it is downloaded in (set by the window): one connection, pipelined.
    pub batch: u64,
    /// The message's pubTime (epoch seconds): the stored file's modification time.
    pub pub_time: Option<f64>,
}

/// What became of a job.
#[derive(Debug)]
pub struct Done {
    pub job: Job,
    /// Stored: (method, digest, size). `None`: given up, or abandoned (stopping).
    pub stored: Option<(Method, Digest, u64)>,
    /// Checksum mismatches met on the way.
    pub mismatches: u64,
    /// Not stored because of the local disk (full, failing, read-only): why. The
    /// message waits for the disk, it is not given up.
    pub trouble: Option<String>,
    /// Not stored because the server failed (refused, reset, timeout, 5xx, 429, too
    /// slow) through the short budget of attempts: why. The message goes to the retry
    /// queue.
    pub transient: Option<String>,
    /// Not tried: its server is marked down.
    pub diverted: bool,
    /// Given back unanswered: the connection it was pipelined on is held by a large
    /// answer, or ends after one. It waits again, first, for another connection.
    pub returned: bool,
    /// Given back because the server closed a new connection after its first answer
    /// (HTTP/1.0, `Connection: close`): not to be pipelined to for a while.
    pub closes_after_one: bool,
}

impl Done {
    pub fn stored(job: Job, stored: (Method, Digest, u64)) -> Done {
        Done {
            stored: Some(stored),
            ..Done::given_up(job)
        }
    }

    /// Given up (logged already), or abandoned when stopping.
    pub fn given_up(job: Job) -> Done {
        Done {
            job,
            stored: None,
            mismatches: 0,
            trouble: None,
            transient: None,
            diverted: false,
            returned: false,
            closes_after_one: false,
        }
    }

    /// A job given back unanswered, to be asked for on another connection.
    pub fn returned(job: Job) -> Done {
        Done {
            returned: true,
            ..Done::given_up(job)
        }
    }

    pub fn trouble(job: Job, why: String) -> Done {
        Done {
            trouble: Some(why),
            ..Done::given_up(job)
        }
    }

    pub fn transient(job: Job, why: String) -> Done {
        Done {
            transient: Some(why),
            ..Done::given_up(job)
        }
    }

    /// A job not even tried: its server is down.
    pub fn diverted(job: Job) -> Done {
        Done {
            diverted: true,
            ..Done::transient(job, "server marked down".into())
        }
    }
}
