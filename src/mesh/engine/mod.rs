//! The flow's state machine without I/O: each part decides from what happened and
//! `now` (an argument), and says what is to be done; the driver (`flow.rs`, `apply.rs`,
//! `requeue.rs`) owns the sockets, files, threads and clocks, judges messages against
//! the data tree and does it. So each rule is unit-tested with fixtures and simulated
//! time (rumqttc's `state.rs`, smoltcp's `poll_at` are the models). `messages` holds
//! the whole: the window of messages (`super::window`), the post ledger, the disk
//! stall, the retry queue's pace and what becomes of a retried download; `pace` is the
//! loop's; `download` is the job handed to a downloader and what became of it.

pub mod download;
pub mod ledger;
pub mod messages;
pub mod pace;
pub mod retries;
#[cfg(test)]
pub(crate) mod simulation;
pub mod stall;
