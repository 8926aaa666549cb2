//! `meshnode demo`: three brokers and three nodes in a ring with a chord, on loopback,
//! in a temporary directory; bulletins posted on node 1 spread to every node. Exit
//! status 0 only when every node holds every file with the right checksum. Everything
//! started is stopped and removed at the end.

use super::mosquitto::{self, free_port, signal, Mosquitto};
use crate::core::integrity::{digest_of, Method};
use crate::mesh::mqtt::BrokerUrl;
use crate::mesh::post::PostConfig;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the bulletins get to reach every node.
pub const SPREAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Bulletins posted.
pub const BULLETINS: usize = 40;

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &mut Child) {
    signal(child.id(), "TERM");
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Node {
    name: String,
    dir: PathBuf,
    log: PathBuf,
    http_port: u16,
    process: Option<Guard>,
}

/// Figures a node printed in its totals line at exit.
#[derive(Default, Debug)]
struct Totals {
    downloads: u64,
    inline: u64,
    duplicates: u64,
    mean_lag: f64,
}

fn totals(log: &str) -> Totals {
    let mut t = Totals::default();
    for line in log.lines().filter(|l| l.contains("totals:")) {
        let num = |key: &str| -> f64 {
            line.find(key)
                .map(|i| &line[i + key.len()..])
                .and_then(|r| r.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0)
        };
        t.downloads += num("downloads ") as u64;
        t.inline += num("inline ") as u64;
        t.duplicates += num("duplicates ") as u64;
        t.mean_lag = t.mean_lag.max(num("mean lag "));
    }
    t
}

/// A GTS-like bulletin: (relPath, content). Short ones travel inline.
fn bulletin(i: usize, hour: &str) -> (String, Vec<u8>) {
    const CENTRES: [&str; 5] = ["CWAO", "KWBC", "EGRR", "AMMC", "RJTD"];
    const TYPES: [&str; 4] = ["SA", "SM", "FT", "WS"];
    let (cccc, tt) = (CENTRES[i % CENTRES.len()], TYPES[i % TYPES.len()]);
    let rel = format!(
        "{hour}/GTS/{cccc}/{tt}/{tt}XX{:02}_{cccc}_{}.txt",
        i % 100,
        &hour[6..]
    );
    let mut body = format!("{tt}XX{:02} {cccc} {}00\n", i % 100, &hour[6..]);
    // every third bulletin is long enough to go by download
    let lines = if i % 3 == 0 { 60 } else { 2 };
    for l in 0..lines {
        let _ = writeln!(body, "{cccc} {l:03} 12345 67890 {i}=");
    }
    (rel, body.into_bytes())
}

pub fn run(keep: bool) -> Result<bool, String> {
    if mosquitto::find().is_none() {
        return Err("mosquitto is not installed. On Debian or Raspberry Pi OS: sudo apt-get install -y mosquitto \
                    (or run ./scripts/demo, which installs it)"
            .into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let base = std::env::temp_dir().join(format!("meshnode-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let result = demo(&exe, &base);
    if keep {
        println!("kept {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

fn demo(exe: &Path, base: &Path) -> Result<bool, String> {
    let io = |e: std::io::Error| e.to_string();
    // three brokers
    let mut brokers = Vec::new();
    let mut broker_ports = Vec::new();
    for i in 1..=3 {
        let port = free_port().map_err(io)?;
        let settings = "allow_anonymous true\npersistence false\n\
                        max_inflight_messages 1000\nmax_queued_messages 1000000\nmax_packet_size 500000\n";
        brokers.push(Mosquitto::start(
            base,
            &format!("broker{i}"),
            port,
            settings,
        )?);
        broker_ports.push(port);
    }
    println!(
        "brokers: mosquitto on 127.0.0.1:{}, :{}, :{}",
        broker_ports[0], broker_ports[1], broker_ports[2]
    );

    // three nodes: 1 follows 3, 2 follows 1, 3 follows 2 and (the chord) 1
    let follows: [&[usize]; 3] = [&[2], &[0], &[1, 0]];
    let mut nodes = Vec::new();
    for (i, ups) in follows.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let dir = base.join(&name);
        let http_port = free_port().map_err(io)?;
        let mut conf = format!(
            "dir {}\nlisten 127.0.0.1:{http_port}\nretention 0\nverbose 1\nstats-interval 5\n\
             post-broker mqtt://127.0.0.1:{}\npost-baseUrl http://127.0.0.1:{http_port}\n",
            dir.display(),
            broker_ports[i]
        );
        for u in *ups {
            let _ = writeln!(conf, "broker mqtt://127.0.0.1:{}", broker_ports[*u]);
        }
        let conf_path = base.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).map_err(io)?;
        let log = base.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(io)?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let ups_text: Vec<String> = ups.iter().map(|u| format!("broker{}", u + 1)).collect();
        println!(
            "{name}: follows {}, announces on broker{}, serves http://127.0.0.1:{http_port}/",
            ups_text.join(" + "),
            i + 1
        );
        nodes.push(Node {
            name,
            dir,
            log,
            http_port,
            process: Some(Guard(child)),
        });
    }
    for (n, ups) in nodes.iter().zip(follows) {
        let end = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&n.log)
            .unwrap_or_default()
            .matches("subscribed")
            .count()
            < ups.len()
        {
            if Instant::now() > end {
                return Err(format!(
                    "{} did not subscribe: see its log below\n{}",
                    n.name,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // bulletins written on node 1 and announced there
    let now = crate::sys::unix_now() as i64;
    let (y, m, d) = crate::core::time::civil_from_days(now.div_euclid(86400));
    let hour = format!("{y:04}{m:02}{d:02}{:02}", now.rem_euclid(86400) / 3600);
    let files: Vec<(String, Vec<u8>)> = (0..BULLETINS).map(|i| bulletin(i, &hour)).collect();
    for (rel, data) in &files {
        let p = nodes[0].dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("a bulletin has a directory")).map_err(io)?;
        std::fs::write(&p, data).map_err(io)?;
    }
    let post = PostConfig {
        post_broker: Some(BrokerUrl::parse(&format!(
            "mqtt://127.0.0.1:{}",
            broker_ports[0]
        ))?),
        base_url: format!("http://127.0.0.1:{}", nodes[0].http_port),
        base_dir: nodes[0].dir.clone(),
        inline: true,
        inline_max: 256,
        files: files
            .iter()
            .map(|(rel, _)| nodes[0].dir.join(rel))
            .collect(),
        ..PostConfig::default()
    };
    let inline_count = files.iter().filter(|(_, d)| d.len() <= 256).count();
    println!(
        "posting {} bulletins on node1 ({} inline, {} by download)",
        files.len(),
        inline_count,
        files.len() - inline_count
    );
    let started = Instant::now();
    let failed = crate::mesh::post::run(&post)?;
    if failed > 0 {
        return Err(format!("{failed} bulletins could not be posted"));
    }

    // progress while they spread
    let holds = |n: &Node| {
        files
            .iter()
            .filter(|(rel, data)| std::fs::read(n.dir.join(rel)).is_ok_and(|got| got == *data))
            .count()
    };
    let mut last = String::new();
    loop {
        let counts: Vec<usize> = nodes.iter().map(holds).collect();
        let line = nodes
            .iter()
            .zip(&counts)
            .map(|(n, c)| format!("{} {c}/{}", n.name, files.len()))
            .collect::<Vec<_>>()
            .join("   ");
        if line != last {
            println!("  {:5.1}s  {line}", started.elapsed().as_secs_f64());
            let _ = std::io::stdout().flush();
            last = line;
        }
        if counts.iter().all(|c| *c == files.len()) || started.elapsed() > SPREAD_TIMEOUT {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // a moment for the last echoes round the ring, then stop the nodes for their totals
    std::thread::sleep(Duration::from_secs(1));
    for n in &mut nodes {
        if let Some(mut g) = n.process.take() {
            sigterm(&mut g.0);
        }
    }
    drop(brokers);

    // verify every file on every node against the checksum of the original
    println!();
    println!(
        "{:<7} {:>7} {:>9} {:>10} {:>7} {:>11} {:>9}",
        "node", "holds", "verified", "downloads", "inline", "duplicates", "mean lag"
    );
    let mut all_good = true;
    for n in &nodes {
        let verified = files
            .iter()
            .filter(|(rel, data)| {
                let want = digest_of(Method::Md5, data);
                std::fs::read(n.dir.join(rel)).is_ok_and(|got| digest_of(Method::Md5, &got) == want)
            })
            .count();
        let t = totals(&std::fs::read_to_string(&n.log).unwrap_or_default());
        all_good &= verified == files.len();
        println!(
            "{:<7} {:>7} {:>9} {:>10} {:>7} {:>11} {:>8.3}s",
            n.name,
            format!("{}/{}", holds(n), files.len()),
            verified,
            t.downloads,
            t.inline,
            t.duplicates,
            t.mean_lag
        );
    }
    println!();
    if all_good {
        println!(
            "every node holds every bulletin with the right checksum ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("FAILED: some node misses bulletins; node logs:");
        for n in &nodes {
            println!(
                "---- {}\n{}",
                n.name,
                std::fs::read_to_string(&n.log).unwrap_or_default()
            );
        }
    }
    Ok(all_good)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_totals_lines() {
        let log = "x\n20261123T000000.000 INFO [rest] totals: 7 messages (1.0/s), mean lag 0.25s, downloads 3, inline 4, duplicates 5, failures 0\n";
        let t = totals(log);
        assert_eq!((t.downloads, t.inline, t.duplicates), (3, 4, 5));
        assert!((t.mean_lag - 0.25).abs() < 1e-9);
    }

    #[test]
    fn bulletins_look_like_gts() {
        let (rel, data) = bulletin(3, "2026112311");
        assert_eq!(rel, "2026112311/GTS/AMMC/WS/WSXX03_AMMC_2311.txt");
        assert!(data.len() > 256, "every third goes by download");
        assert!(bulletin(1, "2026112311").1.len() <= 256);
        assert!(crate::core::relpath::validate(&rel).is_ok());
    }
}
