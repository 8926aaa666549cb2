//! A mosquitto of our own, for the demo, the tests and the benchmarks: its own
//! configuration on a loopback port, started and waited for, stopped cleanly (SIGTERM:
//! it saves its sessions) or killed (a crash). One launcher, so the demo and the tests
//! start brokers the same way.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting broker gets to open its port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where mosquitto is, if anywhere (Debian installs it in /usr/sbin, often not on PATH).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts on 127.0.0.1:`port`.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends a signal by name (`TERM`, `KILL`...) through the kill command: no libc, no
/// `unsafe` here.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A running mosquitto, killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    bin: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes `dir/<name>.conf` (the listener on 127.0.0.1:`port`, then `settings`),
    /// starts mosquitto on it and waits for its port.
    pub fn start(dir: &Path, name: &str, port: u16, settings: &str) -> Result<Mosquitto, String> {
        let bin = find().ok_or(
            "mosquitto is not installed. On Debian or Raspberry Pi OS: sudo apt-get install -y mosquitto",
        )?;
        let conf = dir.join(format!("{name}.conf"));
        // mosquitto started as root runs as user `mosquitto`: without this it could
        // not write its persistence or log in `dir`, and would lose every session
        // on a restart
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}"))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let mut m = Mosquitto {
            port,
            bin,
            conf,
            child: None,
        };
        m.launch()?;
        Ok(m)
    }

    /// Starts it (again) on its configuration.
    pub fn launch(&mut self) -> Result<(), String> {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        if wait_port(self.port, START_TIMEOUT) {
            Ok(())
        } else {
            Err(format!(
                "mosquitto did not start on 127.0.0.1:{}",
                self.port
            ))
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it cleanly: SIGTERM, then waits (it saves its persistent sessions).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let _ = c.wait();
        }
    }

    /// Kills it without letting it save: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
