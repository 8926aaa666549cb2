//! The node's HTTP/1.1 server and its parts. The server is handed its handlers: it
//! knows neither the file handler nor the taker.

pub mod body;
pub mod files;
pub mod multipart;
pub mod request;
pub mod response;
pub mod server;

pub use request::Request;

use std::io;
use std::net::TcpStream;

/// Answers the requests of some paths.
pub trait Handler: Send + Sync {
    /// What it serves, for the start-up log line.
    fn name(&self) -> String;
    /// Whether requests for `path` are this handler's.
    fn handles(&self, path: &str) -> bool;
    /// Answers one request; `pre` holds bytes read after the head (the body's start).
    /// Returns (status, body bytes sent).
    fn answer(
        &self,
        stream: &mut TcpStream,
        req: &Request,
        pre: &[u8],
        peer: &str,
    ) -> io::Result<(u16, u64)>;
}
