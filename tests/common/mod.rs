//! Test harness: real mosquitto brokers on free loopback ports, a small HTTP server
//! over a directory, meshnode nodes as child processes, and an MQTT watcher.
#![allow(dead_code)]

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or `secs` pass; returns whether it held.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A scratch directory removed at the end of a passing test.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("meshnode-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !thread::panicking() && std::env::var_os("MESHNODE_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn mosquitto_bin() -> String {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

/// A mosquitto of the test's own: own config, own port, persistence in its directory.
pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Broker {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
                 max_inflight_messages 1000\nmax_queued_messages 1000000\nupgrade_outgoing_qos true\n\
                 log_dest file {dir}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
                port = self.port,
                dir = self.dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (scripts/test installs it)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(10, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "mosquitto did not start on {port}"
        );
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker cleanly (it saves its sessions) and starts it again.
    pub fn restart(&mut self, pause: Duration) {
        self.stop();
        thread::sleep(pause);
        self.launch();
    }

    /// Kills the broker without letting it save (a crash).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with its saved state wiped: every session is lost.
    pub fn forget_and_start(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("mosquitto.db"));
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Behaviour of the test web server.
#[derive(Clone, Default)]
pub struct WebOptions {
    /// Wait this long before answering each request.
    pub delay: Duration,
    /// On the first request only: send the head and this many body bytes, then stall
    /// for `stall` before the rest.
    pub stall_after: Option<usize>,
    pub stall: Duration,
}

/// A small HTTP/1.1 server over a directory (GET, keep-alive), counting requests.
pub struct WebServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl WebServer {
    pub fn start(root: &Path, opts: WebOptions) -> WebServer {
        Self::listen(TcpListener::bind("127.0.0.1:0").unwrap(), root, opts)
    }

    /// A server on a given port (one the test kept free until now).
    pub fn start_on(port: u16, root: &Path) -> WebServer {
        Self::listen(
            TcpListener::bind(("127.0.0.1", port)).unwrap(),
            root,
            WebOptions::default(),
        )
    }

    fn listen(listener: TcpListener, root: &Path, opts: WebOptions) -> WebServer {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, req, st) = (root.to_path_buf(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, req, opts) = (root.clone(), req.clone(), opts.clone());
                thread::spawn(move || serve(conn, &root, &req, &opts));
            }
        });
        WebServer {
            port,
            requests,
            stop,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/data", self.port)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, root: &Path, requests: &AtomicUsize, opts: &WebOptions) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let nth = requests.fetch_add(1, Ordering::SeqCst) + 1;
        thread::sleep(opts.delay);
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let rel = path.trim_start_matches("/data/");
        let file = root.join(rel);
        let resp = match (rel.contains(".."), std::fs::read(&file)) {
            (false, Ok(body)) => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                match opts.stall_after.filter(|_| nth == 1) {
                    Some(n) => {
                        let n = n.min(body.len());
                        r.extend_from_slice(&body[..n]);
                        if out.write_all(&r).is_err() {
                            return;
                        }
                        thread::sleep(opts.stall);
                        body[n..].to_vec()
                    }
                    None => {
                        r.extend_from_slice(&body);
                        r
                    }
                }
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if out.write_all(&resp).is_err() {
            return;
        }
    }
}

/// A meshnode process.
pub struct Node {
    pub child: Option<Child>,
    pub log: PathBuf,
    args: Vec<String>,
}

impl Node {
    pub fn start(log: &Path, args: &[String]) -> Node {
        let mut n = Node {
            child: None,
            log: log.to_path_buf(),
            args: args.to_vec(),
        };
        n.launch();
        n
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // MESHNODE_WRAP="strace -c -f -o /tmp/s" runs the node under a profiler (benchmarks)
        let wrap = std::env::var("MESHNODE_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(w) => {
                let mut c = Command::new(w);
                c.args(words).arg(env!("CARGO_BIN_EXE_meshnode"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_meshnode")),
        };
        let child = cmd
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn restart(&mut self) {
        self.launch();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn term(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id(), "TERM");
        c.wait().ok()?.code()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "---- log of node {}:\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Arguments of a peer subscribed to `upstream` brokers, posting to `post`.
pub fn peer_args(
    upstream: &[&Broker],
    post: &Broker,
    dir: &Path,
    base_url: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a = vec!["peer".to_string()];
    for b in upstream {
        a.push("--broker".into());
        a.push(b.url());
    }
    a.extend(
        [
            "--post-broker",
            &post.url(),
            "--post-baseUrl",
            base_url,
            "--dir",
            &dir.display().to_string(),
            "--verbose",
            "2",
        ]
        .map(String::from),
    );
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    pub content_type: Option<String>,
}

/// Records everything published on a broker under a filter.
pub struct Watcher {
    pub messages: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Watcher {
    pub fn start(broker: &Broker, filter: &str) -> Watcher {
        let id = format!("watch-{}-{}", broker.port, free_port());
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_max_packet_size(Some(2_000_000));
        // persistent, so a broker restart loses nothing of what the test watches
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(600));
        let (client, mut conn) = Client::new(o, 100);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (m, c, f) = (messages.clone(), client.clone(), filter.to_string());
        thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => m.lock().unwrap().push(Received {
                        topic: String::from_utf8_lossy(&p.topic).into(),
                        payload: String::from_utf8_lossy(&p.payload).into(),
                        content_type: p.properties.and_then(|p| p.content_type),
                    }),
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("watcher subscribed");
        Watcher { messages, client }
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages whose relPath is `rel`.
    pub fn for_rel(&self, rel: &str) -> Vec<serde_json::Value> {
        self.snapshot()
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
            .filter(|v| v["relPath"] == rel)
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes raw payloads (QoS 1) and waits until the broker acknowledged them all.
pub fn publish_raw(broker: &Broker, items: &[(String, Vec<u8>)]) {
    let id = format!("pub-{}-{}", broker.port, free_port());
    let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
    o.set_max_packet_size(Some(2_000_000));
    let (client, mut conn) = Client::new(o, items.len() + 10);
    for (t, p) in items {
        client
            .publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
            .unwrap();
    }
    let mut acked = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while acked < items.len() && Instant::now() < end {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            conn.recv_timeout(Duration::from_secs(1))
        {
            acked += 1;
        }
    }
    assert_eq!(
        acked,
        items.len(),
        "broker acknowledged every test publication"
    );
    let _ = client.disconnect();
    let _ = conn.recv_timeout(Duration::from_millis(200));
}

pub fn md5_b64(data: &[u8]) -> String {
    meshnode::core::integrity::digest_of(meshnode::core::integrity::Method::Md5, data)
        .unwrap()
        .to_base64()
}

/// A pubTime of now (a fixed date would age past --lag-drop and be dropped).
pub fn pub_time_now() -> String {
    let mut t = String::new();
    meshnode::core::time::format_time(&mut t, meshnode::sys::unix_now());
    t
}

/// A v03 (demo dialect) announcement of `data` at `rel`.
pub fn announcement(base_url: &str, rel: &str, data: &[u8], inline: bool) -> Vec<u8> {
    let t = pub_time_now();
    let mut v = serde_json::json!({
        "pubTime": t, "baseUrl": base_url, "relPath": rel,
        "integrity": {"method": "md5", "value": md5_b64(data)},
        "source": "test-centre",
    });
    if inline {
        v["content"] = serde_json::json!({"encoding": "utf-8", "value": String::from_utf8(data.to_vec()).unwrap()});
    }
    serde_json::to_vec(&v).unwrap()
}

pub fn topic_of(rel: &str) -> String {
    match rel.rfind('/') {
        Some(i) => format!("xpublic/v03/post/{}", &rel[..i]),
        None => "xpublic/v03/post".into(),
    }
}

/// Writes `data` at `root/rel`.
pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

pub fn read(root: &Path, rel: &str) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(root.join(rel))
        .ok()?
        .read_to_end(&mut v)
        .ok()?;
    Some(v)
}

/// Files in a tree, temporary (hidden) ones left out.
pub fn walk_count(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                n += 1;
            }
        }
    }
    n
}

/// An HTTP answer read whole.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}{}", self.head, String::from_utf8_lossy(&self.body)))
    }
    pub fn oid(&self) -> String {
        self.json()["results"][0]["oid"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

pub fn basic(user_pw: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(user_pw);
    format!("Basic {b64}")
}

/// One request on its own connection; the whole answer.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    Resp {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}
