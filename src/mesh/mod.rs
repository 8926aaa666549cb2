//! The mesh: flows that follow upstream brokers, fetch, store, re-announce and
//! acknowledge; `post` for local files.

mod apply;
pub mod fetch;
pub mod flow;
pub mod mqtt;
pub mod post;
pub mod recent;
pub mod stats;
