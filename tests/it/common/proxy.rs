//! A TCP proxy on loopback that delays every byte by a fixed time each way, as a long
//! link does (round trip = twice the delay). Bandwidth is not limited: only latency.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    pub port: u16,
    /// Connections open now, and the most ever open at once.
    pub open: Arc<AtomicUsize>,
    pub most_open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Forwards 127.0.0.1:`port` (a new free one) to 127.0.0.1:`target`, `one_way` later.
    pub fn start(target: u16, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let (st, op, most) = (stop.clone(), open.clone(), most_open.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue; // the client sees its connection closed, as with a dead server
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let now = op.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                pipe(client, server, one_way, Some(op.clone()));
                pipe(s2, c2, one_way, None);
            }
        });
        DelayProxy {
            port,
            open,
            most_open,
            stop,
        }
    }

    /// `url` (an `scheme://127.0.0.1:port...` of the target) through this proxy.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; closes `to`'s write side
/// (late too) when `from` ends, then counts the connection closed in `open`.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, open: Option<Arc<AtomicUsize>>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            // a link passes segments on; it does not hold acknowledgements back, as
            // this relay's own TCP would (a server's Nagle then waits up to 40 ms)
            let _ = rustix::net::sockopt::set_tcp_quickack(&from, true);
            let due = Instant::now() + delay;
            if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
    thread::spawn(move || {
        let _counted = open.map(Closed);
        for (due, chunk) in rx {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if chunk.is_empty() || to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Write);
                break;
            }
        }
    });
}

/// Counts a connection closed when dropped.
struct Closed(Arc<AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
