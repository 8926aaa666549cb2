//! `meshnode run`: everything a Pi node needs but the broker, in one process: the HTTP
//! server on its own thread, one thread per flow, and hourly retention.

use super::metrics::Metrics;
use super::notify::{Notifier, Watch};
use super::status::Status;
use crate::app::config::NodeConfig;
use crate::channels::announcer::Announcer;
use crate::channels::credentials::Credentials;
use crate::channels::taker::Taker;
use crate::channels::Channels;
use crate::http::files::Files;
use crate::http::server::{ServeConfig, Server};
use crate::http::Handler;
use crate::mesh::stats::Board;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Between two retention passes.
pub const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// Runs until `stop` is set (SIGTERM, SIGINT) or every flow has ended.
pub fn run(cfg: NodeConfig, stop: Arc<AtomicBool>) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| format!("data directory {}: {e}", cfg.dir.display()))?;
    let taker = if cfg.channels.is_empty() {
        None
    } else {
        if !cfg.http.serves() {
            return Err("channels are taken on the HTTP server: give listen ADDR:PORT".into());
        }
        let t = Arc::new(taker(&cfg, stop.clone())?);
        let t2 = t.clone();
        thread::Builder::new()
            .name("announce-own".into())
            .spawn(move || {
                let n = t2.announce_own();
                log::info!("channels: {n} products published here announced again");
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Some(t)
    };
    // where the flows post their counters, for /metrics and /status
    let board = Board::default();
    let operators: Vec<Arc<dyn Handler>> = vec![
        Arc::new(Metrics {
            board: board.clone(),
            taker: taker.clone(),
            dir: cfg.dir.clone(),
        }),
        Arc::new(Status {
            board: board.clone(),
            taker: taker.clone(),
            dir: cfg.dir.clone(),
        }),
    ];
    // their own server (a loopback address, say), or the node's
    let mut operators_server = match cfg.metrics_listen {
        Some(addr) => {
            let s = ServeConfig::new(addr, operators.clone());
            Some(Server::start(s).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let mut server = if cfg.http.serves() {
        let mut handlers = if operators_server.is_some() {
            Vec::new()
        } else {
            operators
        };
        // the channel interface before the tree: its paths are not the tree's
        if let Some(t) = taker {
            handlers.push(t);
        }
        handlers.push(Arc::new(Files::open(&cfg.dir).map_err(|e| e.to_string())?));
        let s = cfg.http.server(handlers)?;
        Some(Server::start(s).map_err(|e| e.to_string())?)
    } else {
        None
    };
    if server.is_none() && cfg.flows.is_empty() {
        return Err("nothing to do: no flow and no listen".into());
    }
    let mut flows = Vec::new();
    for mut flow in cfg.flows {
        flow.board = Some(board.clone());
        let name = flow.name.clone();
        let st = stop.clone();
        let counted = Some(name.clone());
        let t = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _counted = crate::sys::flows::join(counted);
                crate::mesh::flow::run(flow, st)
            })
            .map_err(|e| format!("flow {name}: cannot start: {e}"))?;
        flows.push((name, t));
    }
    let mut next_retention = Instant::now();
    // systemd (Type=notify): ready, the flows' state, the watchdog
    let notifier = Notifier::from_env();
    let mut watch = notifier
        .as_ref()
        .and_then(|n| n.watchdog)
        .map_or_else(Watch::default, Watch::new);
    let mut next_ping = Instant::now();
    let mut notify_failed = false;
    // a node that serves runs until told to stop; one that only relays, while it relays
    while !stop.load(Ordering::Relaxed)
        && (server.is_some() || flows.iter().any(|(_, t)| !t.is_finished()))
    {
        if cfg.retention_hours > 0 && Instant::now() >= next_retention {
            retention(&cfg.dir, cfg.retention_hours);
            next_retention = Instant::now() + RETENTION_PERIOD;
        }
        if let Some(n) = &notifier {
            let now = Instant::now();
            let ping = n.watchdog.is_some_and(|_| now >= next_ping);
            if ping {
                next_ping = now + n.watchdog.unwrap_or_default() / 2;
            }
            // a flow that ended (its error logged) is not waited for
            let names: Vec<String> = flows
                .iter()
                .filter(|(_, t)| !t.is_finished())
                .map(|(n, _)| n.clone())
                .collect();
            let text = watch.tick(&board, &names, now, ping);
            if !text.is_empty() {
                if let Err(e) = n.send(&text) {
                    if !std::mem::replace(&mut notify_failed, true) {
                        log::warn!("systemd notification socket: {e}");
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    if let Some(n) = &notifier {
        let _ = n.send("STOPPING=1\n");
    }
    stop.store(true, Ordering::SeqCst);
    let mut failed = Vec::new();
    for (name, t) in flows {
        match t.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                log::error!("flow {name}: {e}");
                failed.push(name);
            }
            Err(_) => failed.push(name),
        }
    }
    for s in [server.as_mut(), operators_server.as_mut()]
        .into_iter()
        .flatten()
    {
        s.shutdown();
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("flows that failed: {}", failed.join(", ")))
    }
}

/// The channel interface: channels on disk, the users, the announcer.
fn taker(cfg: &NodeConfig, stop: Arc<AtomicBool>) -> Result<Taker, String> {
    let format = cfg
        .channel_post
        .as_ref()
        .map_or(crate::core::message::Format::WmoMesh, |p| p.format);
    let channels = Channels::open(
        cfg.channels.clone(),
        &cfg.dir,
        &cfg.node_id,
        format.xattr_name(),
        cfg.product_max,
    )?;
    let credentials = match &cfg.password_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("password-file {}: {e}", f.display()))?;
            Some(Credentials::parse(&text, &f.display().to_string())?)
        }
        None => None,
    };
    // a misspelt name in a rights list locks its user out without a word: say it now
    let known: Vec<&str> = credentials.iter().flat_map(|c| c.users()).collect();
    for (channel, list, user) in crate::channels::defs::unknown_users(&cfg.channels, &known) {
        log::warn!(
            "channel {channel}: {list} names user {user:?}, who is not in the password file{}",
            if credentials.is_none() {
                " (none given)"
            } else {
                ""
            }
        );
    }
    let announcer = cfg.channel_post.clone().map(|p| {
        let id = format!("meshnode-channels-{}", cfg.node_id);
        // `p.dir` is the node's tree: its state is beside it
        let journal = p.state_root().join("channels").join("removals.log");
        Announcer::start(p, id, journal, stop)
    });
    if announcer.is_none() {
        log::warn!("channels: no post-broker before the first section: products are not announced to the mesh");
    }
    for d in &cfg.channels {
        log::info!(
            "channel {}: {}, capacity {}, {}",
            d.id,
            if d.is_feed() { "feed" } else { "stored" },
            d.capacity,
            if d.open { "open" } else { "restricted" }
        );
    }
    Ok(Taker::new(channels, credentials, announcer))
}

fn retention(dir: &std::path::Path, hours: u32) {
    let now = crate::sys::unix_now();
    match crate::store::retention::clean(dir, hours, now) {
        Ok(removed) => {
            for p in removed {
                log::info!("retention: removed {}", p.display());
            }
        }
        Err(e) => log::error!("retention in {}: {e}", dir.display()),
    }
}
