//! The mesh: flows that follow upstream brokers, fetch, store, re-announce and
//! acknowledge; `post` for local files.

pub mod announced;
mod apply;
pub mod audit;
mod engine;
pub mod fetch;
pub mod flow;
pub mod links;
pub mod mqtt;
pub mod peer;
mod pipeline;
mod pool;
pub mod post;
pub mod recent;
pub mod request;
mod requeue;
pub mod retry;
pub mod roots;
pub mod seen;
pub mod servers;
mod sessions;
pub mod stats;
mod stream;
mod transfer;
mod verdicts;
mod window;
pub mod workers;

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What stops a flow or `post` before it runs, and what a broker URL can get wrong.
/// Failures of single files are not here: they are counted and logged, never fatal.
#[derive(Debug)]
pub enum Error {
    /// The data tree cannot be opened or created.
    DataDir { dir: PathBuf, source: io::Error },
    /// The state directory (the retry queue) cannot be opened or created.
    StateDir { dir: PathBuf, source: io::Error },
    /// A broker URL that cannot be used; `why` says what is wrong with it.
    BrokerUrl { url: String, why: String },
    /// An option the command cannot do without (`--post-broker`...); says which.
    Missing(&'static str),
    /// The broker did not take an announcement.
    NotAnnounced { rel: String, why: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DataDir { dir, source } => {
                write!(f, "data directory {}: {source}", dir.display())
            }
            Error::StateDir { dir, source } => {
                write!(f, "state directory {}: {source}", dir.display())
            }
            Error::BrokerUrl { url, why } => write!(f, "broker {url:?}: {why}"),
            Error::Missing(what) => write!(f, "give {what}"),
            Error::NotAnnounced { rel, why } => write!(f, "{rel}: cannot announce: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
