//! One thread for all the MQTT connections of a flow (its upstream sessions, its post
//! session, its audit session): a current-thread runtime whose tasks are the
//! connections' loops. Before, each connection had a thread and a runtime of its own,
//! and each woke on its own (the drain benchmark counted 0.87 context switches per
//! message in the three connection threads).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The thread and runtime of a flow's connections. Dropping it ends the tasks still
/// running (the flow joins them first).
pub struct Links {
    handle: tokio::runtime::Handle,
    end: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A connection's loop running on `Links`.
pub struct Task {
    ended: std::sync::mpsc::Receiver<()>,
}

impl Task {
    /// Waits until the loop has ended (or its runtime is gone).
    pub fn join(self) {
        let _ = self.ended.recv();
    }
}

impl Links {
    /// Starts the thread, named `name` after the flow's thread (see `thread_name`).
    pub fn start(name: &str) -> Links {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the MQTT connections");
        let handle = rt.handle().clone();
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let flow = crate::sys::flows::current();
        let thread = thread::Builder::new()
            .name(thread_name(name))
            .spawn(move || {
                let _counted = crate::sys::flows::join(flow);
                rt.block_on(async {
                    let _ = ended.await;
                });
            })
            .expect("spawning a thread");
        Links {
            handle,
            end: Some(end),
            thread: Some(thread),
        }
    }

    /// Runs a connection's loop on the thread.
    pub fn spawn(&self, run: impl Future<Output = ()> + Send + 'static) -> Task {
        let (done, ended) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            run.await;
            let _ = done.send(());
        });
        Task { ended }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            let _ = end.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `what`, prefixed with the name of the flow's thread when it has one (`run` names
/// its flows), so log lines say which flow they belong to.
pub fn thread_name(what: &str) -> String {
    match thread::current().name() {
        Some(flow) if flow != "main" => format!("{flow}/{what}"),
        _ => what.to_string(),
    }
}

/// Sleeps `d`, or less if `stop` is set meanwhile (looked at every 100 ms).
pub async fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let now = left.min(step);
        tokio::time::sleep(now).await;
        left -= now;
    }
}
