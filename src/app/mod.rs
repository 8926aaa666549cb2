//! The application: options (one table for the command line, help and the config
//! file), the config file, a whole node (`run`), the demo, the logger.

pub mod args;
pub mod commands;
pub mod config;
pub mod demo;
pub mod logger;
pub mod metrics;
pub mod mosquitto;
pub mod node;
pub mod notify;
pub mod options;
pub mod reference;
pub mod status;
