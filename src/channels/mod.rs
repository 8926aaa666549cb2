//! Metcast channels: named, bounded collections of annotated products, taken over HTTP
//! (the taker), announced to the mesh, published with `shove`.

pub mod announcer;
pub mod credentials;
pub mod defs;
pub mod feeds;
pub mod products;
mod read;
mod reply;
mod routes;
pub mod shove;
pub mod taker;
mod upload;

pub use defs::{parse_size, ChannelDef, Kind, Reason, Refusal, Users, ANONYMOUS, DEFAULT_CAPACITY};
pub use products::{Channels, Product, Published};
