//! meshnode: thin entry point. Finds the command, answers help and version, runs the
//! command (`app::commands`) and maps how it ended to an exit status: 0 done, 1 failed
//! (or some items failed), 2 not run (command line, config, or could not start).

use meshnode::app::{commands, options};
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(cmd) = args.next() else {
        eprint!("{}", options::usage());
        return ExitCode::from(2);
    };
    let rest: Vec<OsString> = args.collect();
    let name = cmd.to_str().unwrap_or("");
    // `meshnode COMMAND --help` (or -h) anywhere before a `--`
    let asks_help = rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h");
    match (name, options::command(name)) {
        (_, Some(c)) if asks_help => {
            print!("{}", options::help(c));
            ExitCode::SUCCESS
        }
        ("--version" | "-V" | "version", _) => {
            println!(
                "meshnode {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("MESHNODE_TARGET")
            );
            ExitCode::SUCCESS
        }
        ("--help" | "-h" | "help", _) => help(rest.first().and_then(|c| c.to_str())),
        _ => match commands::run(name, rest) {
            Some(Ok(())) => ExitCode::SUCCESS,
            Some(Err(failure)) => {
                // once a command has started its logger, the journal gets the line
                if log::max_level() == log::LevelFilter::Off {
                    eprintln!("meshnode {name}: {failure}");
                } else {
                    log::error!("{failure}");
                }
                ExitCode::from(failure.exit_status())
            }
            None => {
                eprint!("meshnode: unknown command {cmd:?}\n{}", options::usage());
                ExitCode::from(2)
            }
        },
    }
}

/// `meshnode help [COMMAND]`.
fn help(command: Option<&str>) -> ExitCode {
    match command.map(|n| (n, options::command(n))) {
        None => print!("{}", options::usage()),
        Some((_, Some(c))) => print!("{}", options::help(c)),
        Some((n, None)) => {
            eprintln!("meshnode help: unknown command {n:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
