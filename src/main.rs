//! meshnode: thin entry point; the work is in the library.

use meshnode::app::args::{post_option, PeerArgs};
use meshnode::app::options::{self, parse_args, Scope};
use meshnode::mesh::post::PostConfig;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    args.next();
    let Some(cmd) = args.next() else {
        eprint!("{}", options::usage());
        return ExitCode::from(2);
    };
    let rest: Vec<OsString> = args.collect();
    // `meshnode COMMAND --help` (or -h) anywhere before a `--`
    let asks_help = rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h");
    if let Some(c) = cmd.to_str().and_then(options::command) {
        if asks_help {
            print!("{}", options::help(c));
            return ExitCode::SUCCESS;
        }
    }
    match cmd.to_str() {
        Some("peer") => peer(rest),
        Some("post") => post(rest),
        Some("clean") => clean(rest),
        Some("passwd") => passwd(rest),
        Some("shove") => shove(rest),
        Some("serve") => serve(rest),
        Some("run") => run(rest),
        Some("demo") => demo(rest),
        Some("--version" | "-V" | "version") => {
            println!("meshnode {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => match rest.first().and_then(|c| c.to_str()) {
            None => {
                print!("{}", options::usage());
                ExitCode::SUCCESS
            }
            Some(name) => match options::command(name) {
                Some(c) => {
                    print!("{}", options::help(c));
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("meshnode help: unknown command {name:?}");
                    ExitCode::from(2)
                }
            },
        },
        _ => {
            eprint!("meshnode: unknown command {cmd:?}\n{}", options::usage());
            ExitCode::from(2)
        }
    }
}

fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("meshnode: cannot handle signal {sig}: {e}");
        }
    }
    stop
}

fn peer(args: Vec<OsString>) -> ExitCode {
    let mut a = PeerArgs::new();
    let parsed = parse_args(
        args,
        Scope::PEER,
        |n, v| a.apply(n, v),
        |v| Err(format!("unexpected argument {v:?}")),
    );
    let (cfg, verbose) = match parsed.and_then(|()| a.finish()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshnode peer: {e}");
            return ExitCode::from(2);
        }
    };
    meshnode::app::logger::init(verbose);
    match meshnode::mesh::flow::run(cfg, stop_on_signals()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn post(args: Vec<OsString>) -> ExitCode {
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
    if let Err(e) = parsed {
        eprintln!("meshnode post: {e}");
        return ExitCode::from(2);
    }
    a.files = files;
    meshnode::app::logger::init(a.verbose);
    match meshnode::mesh::post::run(&a) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            log::error!("{n} file(s) not announced");
            ExitCode::FAILURE
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

fn clean(args: Vec<OsString>) -> ExitCode {
    let [hours, dir] = args.as_slice() else {
        eprintln!("meshnode clean: expected HOURS DIR (see meshnode clean --help)");
        return ExitCode::from(2);
    };
    let Some(hours) = hours.to_str().and_then(|h| h.parse::<u32>().ok()) else {
        eprintln!("meshnode clean: HOURS {hours:?} is not a whole number of hours");
        return ExitCode::from(2);
    };
    let now = meshnode::sys::unix_now();
    match meshnode::store::retention::clean(std::path::Path::new(dir), hours, now) {
        Ok(removed) => {
            for p in removed {
                println!("removed {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "meshnode clean: {}: {e}",
                std::path::Path::new(dir).display()
            );
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Vec<OsString>) -> ExitCode {
    let mut cfg = meshnode::http::server::ServeConfig::new(
        std::net::SocketAddr::from(([0, 0, 0, 0], 8000)),
        Vec::new(),
    );
    let mut dir = std::path::PathBuf::from("data");
    let mut verbose = 1u8;
    let secs = |n: &str, v: &str| -> Result<std::time::Duration, String> {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("--{n}: {v:?} is not a number of seconds"))
    };
    let parsed = parse_args(
        args,
        Scope::SERVE,
        |n, v| {
            match n {
                "dir" => dir = v.into(),
                "listen" => {
                    cfg.listen = v
                        .parse()
                        .map_err(|_| format!("--listen: {v:?} is not ADDR:PORT"))?
                }
                "max-connections" => {
                    cfg.max_connections = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-connections: {v:?} is not a positive number")
                    })?
                }
                "header-timeout" => cfg.header_timeout = secs(n, v)?,
                "idle-timeout" => cfg.idle_timeout = secs(n, v)?,
                "verbose" => verbose = v.parse().map_err(|_| format!("--verbose: {v:?}"))?,
                _ => return Err(format!("unknown option --{n}")),
            }
            Ok(())
        },
        |v| Err(format!("unexpected argument {v:?}")),
    );
    if let Err(e) = parsed {
        eprintln!("meshnode serve: {e}");
        return ExitCode::from(2);
    }
    meshnode::app::logger::init(verbose);
    let stop = stop_on_signals();
    match meshnode::http::files::Files::open(&dir) {
        Ok(f) => cfg.handlers.push(std::sync::Arc::new(f)),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let mut server = match meshnode::http::server::Server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    server.shutdown();
    ExitCode::SUCCESS
}

fn run(args: Vec<OsString>) -> ExitCode {
    let mut file = None;
    let parsed = parse_args(
        args,
        Scope::RUN,
        |n, v| match n {
            "config" => {
                file = Some(v.to_string());
                Ok(())
            }
            _ => Err(format!("unknown option --{n}")),
        },
        |v| Err(format!("unexpected argument {v:?}")),
    );
    let file = match (parsed, file) {
        (Err(e), _) => {
            eprintln!("meshnode run: {e}");
            return ExitCode::from(2);
        }
        (Ok(()), None) => {
            eprintln!("meshnode run: give --config FILE");
            return ExitCode::from(2);
        }
        (Ok(()), Some(f)) => f,
    };
    let cfg = std::fs::read_to_string(&file)
        .map_err(|e| format!("{file}: {e}"))
        .and_then(|text| meshnode::app::config::parse(&text, &file));
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshnode run: {e}");
            return ExitCode::from(2);
        }
    };
    meshnode::app::logger::init(cfg.verbose);
    match meshnode::app::node::run(cfg, stop_on_signals()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: Vec<OsString>) -> ExitCode {
    let keep = match args
        .iter()
        .map(|a| a.to_str())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        [Some("--keep")] => true,
        _ => {
            eprintln!("meshnode demo: the only option is --keep (keep the temporary directory)");
            return ExitCode::from(2);
        }
    };
    meshnode::app::logger::init(0);
    match meshnode::app::demo::run(keep) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meshnode demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn shove(args: Vec<OsString>) -> ExitCode {
    let [config, ctype, files @ ..] = args.as_slice() else {
        eprintln!("meshnode shove: expected CONFIG 'CONTENT-TYPE; cid=CHANNEL' FILE...");
        return ExitCode::from(2);
    };
    let files: Vec<std::path::PathBuf> = files.iter().map(Into::into).collect();
    match meshnode::channels::shove::run(config.as_ref(), &ctype.to_string_lossy(), &files) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("meshnode shove: {n} of {} refused", files.len());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("meshnode shove: {e}");
            ExitCode::from(2)
        }
    }
}

fn passwd(args: Vec<OsString>) -> ExitCode {
    let [file, user] = args.as_slice() else {
        eprintln!("meshnode passwd: expected FILE USER (the password is read from standard input)");
        return ExitCode::from(2);
    };
    let (file, user) = (std::path::Path::new(file), user.to_string_lossy());
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err()
        || password.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("meshnode passwd: no password on standard input");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\r', '\n']);
    let line = match meshnode::channels::credentials::hash_line(
        &user,
        password,
        meshnode::channels::credentials::DEFAULT_ITERATIONS,
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meshnode passwd: {e}");
            return ExitCode::from(2);
        }
    };
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let new = meshnode::channels::credentials::set_user(&old, &user, &line);
    if let Err(e) =
        meshnode::channels::credentials::Credentials::parse(&new, &file.display().to_string())
    {
        eprintln!("meshnode passwd: {e}");
        return ExitCode::from(2);
    }
    // written whole under a temporary name, then renamed: never a half-written file
    let tmp = file.with_extension("tmp");
    let written = std::fs::write(&tmp, new).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
        std::fs::rename(&tmp, file)
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshnode passwd: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
