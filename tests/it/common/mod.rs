//! Test harness, by concern: real mosquitto brokers on free loopback ports, a small HTTP
//! server over a directory, meshnode nodes as child processes, an MQTT watcher,
//! fixtures, a raw HTTP client.
// shared by the tests and the benchmarks: each uses a part of it
#![allow(dead_code, unused_imports)]

mod broker;
mod certs;
mod fixtures;
mod http;
mod nginx;
mod node;
mod proxy;
mod scratch;
mod watcher;
mod web;

pub use broker::*;
pub use certs::*;
pub use fixtures::*;
pub use http::*;
pub use nginx::*;
pub use node::*;
pub use proxy::*;
pub use scratch::*;
pub use watcher::*;
pub use web::*;
