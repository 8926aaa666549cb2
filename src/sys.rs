//! What the program asks of the system beside files and sockets: the clock, the host
//! name, sleeps that a stop request cuts short. The core never calls these: the edges do
//! and pass the answers in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sleeps `d`, waking early when `stop` is set (checked every 50 ms).
pub fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
}

/// This host's name (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A random (version 4) UUID, as WIS2 wants for each message's id.
pub fn uuid_v4() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // no system randomness (never seen on Linux): time and a counter still give
        // an id unique on this node
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        b[..8].copy_from_slice(&unix_now().to_bits().to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// User and system CPU seconds in a `/proc/.../stat` file (a process's or a thread's);
/// 0 when it cannot be read.
pub fn cpu_seconds_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // the command name, in parentheses, may hold spaces: count fields after it
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = rustix::param::clock_ticks_per_second() as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// CPU accounting per flow: the threads working for a flow (its own, its connection
/// threads, its downloaders) register under its name, so `meshnode status` can say
/// what each flow costs. Memory is one heap for the whole process: not per flow.
pub mod flows {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Registered threads: (thread id, flow).
    static THREADS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
    /// CPU seconds of the flows' threads that ended.
    static ENDED: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

    thread_local! {
        static FLOW: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// While alive, the current thread counts for `flow`.
    pub struct Member {
        tid: i32,
        flow: String,
    }

    /// Counts the current thread for `flow` (`None`: for no flow) until the returned
    /// guard drops.
    pub fn join(flow: Option<String>) -> Option<Member> {
        let flow = flow?;
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        FLOW.with(|f| *f.borrow_mut() = Some(flow.clone()));
        lock(&THREADS).push((tid, flow.clone()));
        Some(Member { tid, flow })
    }

    /// The flow the current thread works for: what a thread it starts joins.
    pub fn current() -> Option<String> {
        FLOW.with(|f| f.borrow().clone())
    }

    impl Drop for Member {
        fn drop(&mut self) {
            let spent = thread_cpu(self.tid);
            lock(&THREADS).retain(|(t, _)| *t != self.tid);
            let mut ended = lock(&ENDED);
            match ended.iter_mut().find(|(f, _)| *f == self.flow) {
                Some((_, s)) => *s += spent,
                None => ended.push((self.flow.clone(), spent)),
            }
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// User and system CPU seconds of thread `tid` of this process (0 when gone).
    pub fn thread_cpu(tid: i32) -> f64 {
        super::cpu_seconds_of(&format!("/proc/self/task/{tid}/stat"))
    }

    /// CPU seconds spent so far by each flow's threads, running and ended.
    pub fn cpu_seconds() -> HashMap<String, f64> {
        let mut by_flow: HashMap<String, f64> = lock(&ENDED).iter().cloned().collect();
        let threads = lock(&THREADS).clone();
        for (tid, flow) in threads {
            *by_flow.entry(flow).or_default() += thread_cpu(tid);
        }
        by_flow
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_flows_threads_are_counted_while_alive_and_after() {
            let name = format!("cpu-test-{}", std::process::id());
            let n = name.clone();
            std::thread::spawn(move || {
                let _m = join(Some(n.clone()));
                assert_eq!(current(), Some(n.clone()));
                // a child joins the flow of the thread that starts it
                let parent = current();
                std::thread::spawn(move || {
                    let _m = join(parent);
                    // busy until the flow has 0.15 s of CPU (a loaded machine gives a
                    // thread less than its wall time), 10 s at most
                    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    let mut x = 0u64;
                    while std::time::Instant::now() < end
                        && cpu_seconds().get(&n).copied().unwrap_or(0.0) < 0.15
                    {
                        for _ in 0..100_000 {
                            x = x.wrapping_mul(31).wrapping_add(7);
                        }
                        std::hint::black_box(x);
                    }
                    assert!(cpu_seconds()[&n] > 0.0, "counted while alive");
                    std::hint::black_box(x);
                })
                .join()
                .unwrap();
            })
            .join()
            .unwrap();
            let spent = cpu_seconds()[&name];
            assert!(spent >= 0.1, "kept after the threads ended: {spent}");
            assert!(join(None).is_none());
        }
    }
}
