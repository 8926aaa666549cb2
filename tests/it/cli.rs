//! The command line: help for every command, and unknown options named with the nearest
//! known one.

use std::process::{Command, Output};

fn meshnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(args)
        .output()
        .expect("meshnode runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_command_has_help_that_exits_0() {
    // each command, and options its help must list with their defaults
    let cases: &[(&str, &[&str])] = &[
        (
            "peer",
            &[
                "--broker URL",
                "--lag-drop SECONDS",
                "default 7200",
                "--retry-time",
            ],
        ),
        (
            "post",
            &[
                "--post-broker URL",
                "--post-basedir DIR",
                "--header NAME=VALUE",
            ],
        ),
        ("serve", &["--dir DIR", "--listen ADDR:PORT", "default 64"]),
        ("run", &["--config FILE"]),
        ("demo", &["--keep"]),
        ("clean", &["meshnode clean HOURS DIR"]),
        ("passwd", &["meshnode passwd FILE USER"]),
        ("shove", &["meshnode shove CONFIG"]),
    ];
    for (cmd, wants) in cases {
        for flag in ["--help", "-h"] {
            let o = meshnode(&[cmd, flag]);
            assert!(o.status.success(), "meshnode {cmd} {flag}: {o:?}");
            let text = stdout(&o);
            for w in *wants {
                assert!(
                    text.contains(w),
                    "meshnode {cmd} {flag} lacks {w:?}:\n{text}"
                );
            }
        }
        let o = meshnode(&["help", cmd]);
        assert!(o.status.success(), "meshnode help {cmd}");
        assert!(
            stdout(&o).starts_with("usage: meshnode "),
            "meshnode help {cmd}"
        );
    }
    for top in [&["help"][..], &["--help"], &["-h"]] {
        let o = meshnode(top);
        assert!(o.status.success(), "meshnode {top:?}");
        let text = stdout(&o);
        for (cmd, _) in cases {
            assert!(
                text.contains(&format!("meshnode {cmd}")),
                "{top:?} lacks {cmd}"
            );
        }
    }
}

#[test]
fn an_unknown_option_names_the_nearest_known_one() {
    let o = meshnode(&["peer", "--brokr", "mqtt://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown option --brokr (did you mean --broker?)"),
        "{err}"
    );
    // an option of another command is not taken
    let o = meshnode(&["post", "--listen", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option --listen"));
}
