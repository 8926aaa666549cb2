//! Admission: the server's caps on connections, in all and per client address. A
//! connection holds a `Slot` while it is open; one more than a cap is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The caps and the connections open under them.
pub struct Admission {
    max_connections: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

/// Connections open, in all and per client address.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Connections open in this process's servers, for the metrics.
static OPEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// A connection's place under the caps, given back when it ends.
pub struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        OPEN.fetch_sub(1, Ordering::Relaxed);
        if let Some(n) = open.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub fn new(max_connections: usize, max_per_address: usize) -> Admission {
        Admission {
            max_connections,
            max_per_address,
            open: Mutex::new(Open::default()),
        }
    }

    /// A place for a new connection, or why there is none.
    pub fn admit(self: &Arc<Admission>, ip: IpAddr) -> Result<Slot, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_connections {
            return Err(format!("{} connections open already", self.max_connections));
        }
        let mine = open.by_address.entry(ip).or_insert(0);
        if *mine >= self.max_per_address {
            return Err(format!(
                "{} connections open from {ip} already",
                self.max_per_address
            ));
        }
        *mine += 1;
        open.total += 1;
        OPEN.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }
}
