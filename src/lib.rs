//! meshnode: a full peer of a weather-data mesh, small enough for a first-generation
//! Raspberry Pi. See README.md for the picture.
//!
//! The house, in layers; each imports only the layers below it:
//!
//! - `app`: options (one table), config file, `run`, demo, logger
//! - `channels`: Metcast channels: definitions and rights, products, taker, announcer
//! - `mesh`: flows (MQTT sessions, fetch, apply, acks), `post`
//! - `http`: the server (handed its handlers), requests, responses, files, bodies
//! - `store`: the data tree on disk, product sidecars, retention
//! - `core`: pure, no I/O, `now` passed in: messages, time, relPaths, integrity, topics,
//!   selection, media types, decisions, announcements
//! - `sys`: the clock, the host name, interruptible sleeps

pub mod app;
pub mod channels;
pub mod core;
pub mod http;
pub mod mesh;
pub mod store;
pub mod sys;
