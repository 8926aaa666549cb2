//! The node's HTTP/1.1 server and its parts. The server is handed its handlers: it
//! knows neither the file handler nor the taker.

mod admission;
pub mod body;
mod deadlines;
pub mod files;
pub mod multipart;
pub mod refusals;
pub mod request;
pub mod response;
pub mod server;
pub mod tls;

pub use request::Request;
pub use response::{Piece, Reply};

use std::io::{self, Read};

/// Answers the requests of some paths.
pub trait Handler: Send + Sync {
    /// What it serves, for the start-up log line.
    fn name(&self) -> String;
    /// Whether requests for `path` are this handler's.
    fn handles(&self, path: &str) -> bool;
    /// Whether answering `req` may wait (a lock, a disk sync, a request body): such
    /// requests are answered on a worker thread, the others on the event loop at once.
    fn blocking(&self, _req: &Request) -> bool {
        true
    }
    /// Answers one request; `body` is its body as it arrives (empty when it has none).
    /// An error is answered 500 and logged.
    fn answer(&self, req: &Request, body: &mut dyn Read, peer: &str) -> io::Result<Reply>;
}
