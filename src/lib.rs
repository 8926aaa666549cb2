//! meshnode: a full peer of a weather-data mesh, small enough for a first-generation
//! Raspberry Pi. See README.md for the picture.

pub mod integrity;
pub mod message;
pub mod relpath;
pub mod topic;
