//! The flow's state machine without I/O, grown in steps: each part decides from what
//! happened and `now` (an argument), and says what is to be done; the driver
//! (`flow.rs`) owns the sockets, files, threads and clocks and does it. So each rule is
//! unit-tested with fixtures and simulated time (rumqttc's `state.rs`, smoltcp's
//! `poll_at` are the models). The window of messages (`super::window`) is the first
//! such part; here: the pace of the loop, the post ledger, the disk stall, the retry queue's pace
//! and what becomes of a retried download.

pub mod ledger;
pub mod pace;
pub mod retries;
pub mod stall;
