//! The commands: options parsed and checked into a configuration, then the work run.
//! Each returns how it failed, and `main` maps that to an exit status.

use super::args::{post_option, PeerArgs};
use super::config::HttpOptions;
use super::options::{self, parse_args, Scope};
use crate::channels::credentials;
use crate::http::files::Files;
use crate::http::server::Server;
use crate::mesh::fetch::Timeouts;
use crate::mesh::post::PostConfig;
use crate::mesh::request::{self, Request};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was done: a wrong command line or config, or the work could not start
    /// (exit status 2).
    NotRun(String),
    /// It ran, and failed or left some items undone (exit status 1).
    Failed(String),
}

impl Failure {
    pub fn exit_status(&self) -> u8 {
        match self {
            Failure::NotRun(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotRun(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

type Outcome = Result<(), Failure>;

fn not_run(e: impl ToString) -> Failure {
    Failure::NotRun(e.to_string())
}

fn failed(e: impl ToString) -> Failure {
    Failure::Failed(e.to_string())
}

fn no_positional(v: OsString) -> Result<(), String> {
    Err(format!("unexpected argument {v:?}"))
}

/// Runs command `name` with its arguments; `None`: no such command.
pub fn run(name: &str, args: Vec<OsString>) -> Option<Outcome> {
    Some(match name {
        "peer" => peer(args),
        "post" => post(args),
        "clean" => clean(args),
        "passwd" => passwd(args),
        "shove" => shove(args),
        "serve" => serve(args),
        "run" => node(args),
        "status" => status(args),
        "demo" => demo(args),
        _ => return None,
    })
}

/// SIGTERM and SIGINT set the flag: the work stops cleanly.
fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("meshnode: cannot handle signal {sig}: {e}");
        }
    }
    // SIGHUP (systemctl reload) never ends the process: the server reads its TLS
    // certificate again on it, nothing else has anything to reload
    if let Err(e) = signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        Arc::new(AtomicBool::new(false)),
    ) {
        eprintln!("meshnode: cannot handle SIGHUP: {e}");
    }
    stop
}

fn peer(args: Vec<OsString>) -> Outcome {
    let mut a = PeerArgs::new();
    parse_args(args, Scope::PEER, |n, v| a.apply(n, v), no_positional).map_err(not_run)?;
    let (cfg, verbose) = a.finish().map_err(not_run)?;
    super::logger::init(verbose);
    crate::mesh::flow::run(cfg, stop_on_signals()).map_err(failed)?;
    Ok(())
}

fn post(args: Vec<OsString>) -> Outcome {
    let mut a = PostConfig::default();
    let mut files = Vec::new();
    let parsed = parse_args(
        args,
        Scope::POST,
        |n, v| post_option(&mut a, n, v),
        |v| {
            files.push(v.into());
            Ok(())
        },
    );
    parsed.map_err(not_run)?;
    a.files = files;
    super::logger::init(a.verbose);
    match crate::mesh::post::run(&a).map_err(not_run)? {
        0 => Ok(()),
        n => Err(failed(format!("{n} file(s) not announced"))),
    }
}

fn clean(args: Vec<OsString>) -> Outcome {
    let [hours, dir] = args.as_slice() else {
        return Err(not_run("expected HOURS DIR (see meshnode clean --help)"));
    };
    let Some(hours) = hours.to_str().and_then(|h| h.parse::<u32>().ok()) else {
        return Err(not_run(format!(
            "HOURS {hours:?} is not a whole number of hours"
        )));
    };
    let dir = Path::new(dir);
    let removed = crate::store::retention::clean(dir, hours, crate::sys::unix_now())
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    for p in removed {
        println!("removed {}", p.display());
    }
    Ok(())
}

fn serve(args: Vec<OsString>) -> Outcome {
    let mut http = HttpOptions {
        listen: Some(SocketAddr::from(([0, 0, 0, 0], 8000))),
        ..HttpOptions::default()
    };
    let mut dir = PathBuf::from("data");
    let mut verbose = 1u8;
    let parsed = parse_args(
        args,
        Scope::SERVE,
        |n, v| {
            match n {
                "dir" => dir = v.into(),
                "verbose" => verbose = v.parse().map_err(|_| format!("--verbose: {v:?}"))?,
                n if HttpOptions::has(n) => http.apply(n, v).map_err(|e| format!("--{e}"))?,
                _ => return Err(options::unknown(n, Scope::SERVE)),
            }
            Ok(())
        },
        no_positional,
    );
    parsed.map_err(not_run)?;
    let files = Files::open(&dir).map_err(failed)?;
    let cfg = http
        .server(vec![Arc::new(files)])
        .map_err(|e| not_run(format!("--{e}")))?;
    super::logger::init(verbose);
    let stop = stop_on_signals();
    let mut server = Server::start(cfg).map_err(failed)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    server.shutdown();
    Ok(())
}

/// Where a node's config says its server is, as this machine reaches it.
fn status_url(http: &HttpOptions) -> Option<String> {
    let local = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
        } else {
            a
        }
    };
    let plain = http
        .listen
        .filter(|_| http.tls_cert.is_none() || http.listen_tls.is_some());
    match (plain, http.listen_tls.or(http.listen)) {
        (Some(a), _) => Some(format!("http://{}/status.json", local(a))),
        (None, Some(a)) => Some(format!("https://{}/status.json", local(a))),
        _ => None,
    }
}

/// `meshnode status`: one line per flow of the running node, like `sr3 status`; exit 1
/// when a flow is disconnected or lagging beyond its lag-warn (or the node is not there).
fn status(args: Vec<OsString>) -> Outcome {
    let mut file = "/etc/meshnode/meshnode.conf".to_string();
    let parsed = parse_args(
        args,
        Scope::RUN,
        |_, v| {
            file = v.to_string();
            Ok(())
        },
        no_positional,
    );
    parsed.map_err(not_run)?;
    let text = std::fs::read_to_string(&file).map_err(|e| not_run(format!("{file}: {e}")))?;
    let cfg = super::config::parse(&text, &file).map_err(not_run)?;
    let url = match cfg.metrics_listen {
        Some(a) => status_url(&HttpOptions {
            listen: Some(a),
            ..HttpOptions::default()
        }),
        None => status_url(&cfg.http),
    }
    .ok_or_else(|| not_run(format!("{file}: the node has no HTTP server (listen)")))?;
    let answer = request::send(Request {
        method: "GET",
        url: &url,
        headers: &[(
            "User-Agent",
            concat!("meshnode/", env!("CARGO_PKG_VERSION")),
        )],
        body: None,
        proxy: None,
        tls: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(10),
            per_read: Duration::from_secs(10),
            ..Timeouts::default()
        },
    })
    .map_err(|e| failed(format!("{url}: {e} (is the node running?)")))?;
    if answer.status != 200 {
        return Err(failed(format!("{url}: HTTP status {}", answer.status)));
    }
    let body = String::from_utf8_lossy(&answer.body);
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| failed(format!("{url}: {e}")))?;
    print!("{}", super::status::lines(&v));
    let troubled: Vec<&str> = v["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| matches!(f["state"].as_str(), Some("disconnected" | "lagging")))
        .filter_map(|f| f["name"].as_str())
        .collect();
    if troubled.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "flows disconnected or lagging: {}",
            troubled.join(", ")
        )))
    }
}

fn node(args: Vec<OsString>) -> Outcome {
    let mut file = None;
    let parsed = parse_args(
        args,
        Scope::RUN,
        |_, v| {
            file = Some(v.to_string()); // --config, the only option of `run`
            Ok(())
        },
        no_positional,
    );
    parsed.map_err(not_run)?;
    let file = file.ok_or_else(|| not_run("give --config FILE"))?;
    let text = std::fs::read_to_string(&file).map_err(|e| not_run(format!("{file}: {e}")))?;
    let cfg = super::config::parse(&text, &file).map_err(not_run)?;
    super::logger::init(cfg.verbose);
    super::node::run(cfg, stop_on_signals()).map_err(failed)
}

fn demo(args: Vec<OsString>) -> Outcome {
    let mut keep = false;
    parse_args(
        args,
        Scope::DEMO,
        |_, v| {
            keep = super::args::boolean("keep", v)?; // --keep, the only option
            Ok(())
        },
        no_positional,
    )
    .map_err(not_run)?;
    super::logger::init(0);
    match super::demo::run(keep).map_err(not_run)? {
        true => Ok(()),
        false => Err(failed("not every node holds every bulletin")),
    }
}

fn shove(args: Vec<OsString>) -> Outcome {
    let [config, ctype, files @ ..] = args.as_slice() else {
        return Err(not_run(
            "expected CONFIG 'CONTENT-TYPE; cid=CHANNEL' FILE...",
        ));
    };
    let files: Vec<PathBuf> = files.iter().map(Into::into).collect();
    let refused = crate::channels::shove::run(config.as_ref(), &ctype.to_string_lossy(), &files)
        .map_err(not_run)?;
    match refused {
        0 => Ok(()),
        n => Err(failed(format!("{n} of {} refused", files.len()))),
    }
}

fn passwd(args: Vec<OsString>) -> Outcome {
    let [file, user] = args.as_slice() else {
        return Err(not_run(
            "expected FILE USER (the password is read from standard input)",
        ));
    };
    let (file, user) = (Path::new(file), user.to_string_lossy());
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err()
        || password.trim_end_matches(['\r', '\n']).is_empty()
    {
        return Err(not_run("no password on standard input"));
    }
    let password = password.trim_end_matches(['\r', '\n']);
    let line = credentials::hash_line(&user, password, credentials::DEFAULT_ITERATIONS)
        .map_err(not_run)?;
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let new = credentials::set_user(&old, &user, &line);
    credentials::Credentials::parse(&new, &file.display().to_string()).map_err(not_run)?;
    // written whole under a temporary name, then renamed: never a half-written file
    let tmp = file.with_extension("tmp");
    let written = std::fs::write(&tmp, new).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
        std::fs::rename(&tmp, file)
    });
    written.map_err(|e| failed(format!("{}: {e}", file.display())))
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn status_asks_the_server_where_this_machine_reaches_it() {
        let mut h = HttpOptions {
            listen: Some("0.0.0.0:8000".parse().unwrap()),
            ..HttpOptions::default()
        };
        assert_eq!(status_url(&h).unwrap(), "http://127.0.0.1:8000/status.json");
        h.tls_cert = Some("c.pem".into());
        h.tls_key = Some("k.pem".into());
        assert_eq!(
            status_url(&h).unwrap(),
            "https://127.0.0.1:8000/status.json"
        );
        h.listen_tls = Some("10.0.0.1:8443".parse().unwrap());
        assert_eq!(status_url(&h).unwrap(), "http://127.0.0.1:8000/status.json");
        h.listen = None;
        assert_eq!(status_url(&h).unwrap(), "https://10.0.0.1:8443/status.json");
    }
}
