//! The integration tests, one binary (the harness compiles once): real mosquitto brokers
//! started by the tests on free loopback ports, real sockets, meshnode as a child process.

mod channels;
mod cli;
mod common;
mod deploy;
mod injection;
mod mesh;
mod metrics;
mod run;
mod serve;
mod tls;
mod wis2;
