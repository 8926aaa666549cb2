//! A mosquitto of the test's own: own config, own port, persistence in its directory;
//! started by the library's launcher (`app::mosquitto`), as the demo's are.

use meshnode::app::mosquitto::Mosquitto;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    m: Mosquitto,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        Self::start_with(dir, "allow_anonymous true\n")
    }

    /// A broker whose listener has `settings` (TLS, a password file...) besides the usual.
    pub fn start_with(dir: &Path, listener: &str) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let port = super::free_port();
        let settings = format!(
            "{listener}persistence true\npersistence_location {dir}/\n\
             max_inflight_messages 1000\nmax_queued_messages 1000000\nupgrade_outgoing_qos true\n\
             log_dest file {dir}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            dir = dir.display()
        );
        let m = Mosquitto::start(dir, "mosquitto", port, &settings)
            .unwrap_or_else(|e| panic!("{e} (scripts/test installs mosquitto)"));
        Broker {
            port,
            dir: dir.to_path_buf(),
            m,
        }
    }

    fn launch(&mut self) {
        self.m.launch().unwrap();
    }

    pub fn url(&self) -> String {
        self.m.url()
    }

    /// Stops the broker cleanly (it saves its sessions) and starts it again.
    pub fn restart(&mut self, pause: Duration) {
        self.stop();
        thread::sleep(pause);
        self.launch();
    }

    /// Kills the broker without letting it save (a crash).
    pub fn crash(&mut self) {
        self.m.kill();
    }

    /// Starts it again with its saved state wiped: every session is lost.
    pub fn forget_and_start(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("mosquitto.db"));
        self.launch();
    }

    pub fn stop(&mut self) {
        self.m.stop();
    }
}
