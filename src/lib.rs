//! meshnode: a full peer of a weather-data mesh, small enough for a first-generation
//! Raspberry Pi. See README.md for the picture.

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
pub mod store;
pub mod topic;
