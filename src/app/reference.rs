//! The reference generated from the one option table (as ripgrep makes `rg.1` from its
//! flag definitions): `meshnode(8)`, `meshnode.conf(5)` and `docs/options.md`, every
//! option with its value, default, commands or sections, and help. The files in the
//! tree are checked against these by a test (stale: it fails; `MESHNODE_BLESS=1 cargo
//! test reference` writes them again).

use super::options::{Command, Opt, Scope, COMMANDS, OPTIONS};

/// Makes one generated file's text.
type Make = fn() -> String;

/// Where each generated file lives in the repository.
pub const FILES: [(&str, Make); 3] = [
    ("docs/man/meshnode.8", man_meshnode),
    ("docs/man/meshnode.conf.5", man_conf),
    ("docs/options.md", options_md),
];

/// Text for roff: backslashes and hyphens escaped, no line starting a request.
fn roff(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The commands and config sections that take `o`.
fn places(o: &Opt) -> Vec<&'static str> {
    let mut p: Vec<&'static str> = COMMANDS
        .iter()
        .filter(|c| c.scope.is_some_and(|s| o.scope.has(s)))
        .map(|c| c.name)
        .collect();
    for (scope, name) in [
        (Scope::NODE, "config: node"),
        (Scope::FLOW, "config: flow"),
        (Scope::CHANNEL, "config: channel"),
    ] {
        if o.scope.has(scope) {
            p.push(name);
        }
    }
    p
}

fn option_entry(out: &mut String, o: &Opt, prefix: &str) {
    out.push_str(".TP\n");
    if o.value.is_empty() {
        out.push_str(&format!(".B {}{}\n", roff(prefix), roff(o.name)));
    } else {
        out.push_str(&format!(
            ".BI \"{}{} \" \"{}\"\n",
            roff(prefix),
            roff(o.name),
            roff(o.value).replace('"', "\\(dq")
        ));
    }
    out.push_str(&roff(o.help));
    out.push_str(".\n.br\nDefault: ");
    out.push_str(&roff(o.default));
    out.push_str(".\n");
    if !o.aliases.is_empty() {
        let also: Vec<String> = o.aliases.iter().map(|a| format!("{prefix}{a}")).collect();
        out.push_str(&format!(".br\nAlso spelled: {}.\n", roff(&also.join(", "))));
    }
}

fn command_options(c: &Command) -> Vec<&'static Opt> {
    match c.scope {
        Some(s) => OPTIONS.iter().filter(|o| o.scope.has(s)).collect(),
        None => Vec::new(),
    }
}

/// `meshnode(8)`.
pub fn man_meshnode() -> String {
    let mut m = format!(
        ".\\\" generated from src/app/options.rs by src/app/reference.rs: do not edit\n\
         .TH MESHNODE 8 \"\" \"meshnode {}\" \"System Administration\"\n\
         .SH NAME\nmeshnode \\- a full peer of a weather\\-data mesh, for small machines\n\
         .SH SYNOPSIS\n.nf\n",
        version()
    );
    for c in COMMANDS {
        m.push_str(&roff(c.usage));
        m.push('\n');
    }
    m.push_str(&roff(
        "meshnode help [COMMAND] | meshnode COMMAND --help | meshnode --version",
    ));
    m.push_str("\n.fi\n.SH DESCRIPTION\n");
    m.push_str(&roff(
        "meshnode subscribes to announcements of files from its peers over MQTT, downloads \
         what it lacks, checks each file's checksum, stores it in the same tree and announces \
         it again on its own broker; it serves its tree over HTTP, takes products published \
         into channels, and replicates removals the same way. A whole node runs as one \
         process with meshnode run and a configuration file (see meshnode.conf(5)).",
    ));
    m.push_str("\n.SH COMMANDS\n");
    for c in COMMANDS {
        m.push_str(&format!(".TP\n.B {}\n{}.\n", roff(c.name), roff(c.about)));
    }
    m.push_str(".SH OPTIONS\n");
    m.push_str(&roff(
        "Options are written --name VALUE or --name=VALUE; a flag takes no value (--flag=no \
         turns it off). The demo's spellings (post_baseUrl, clean_session) are accepted too.",
    ));
    m.push('\n');
    for c in COMMANDS {
        let opts = command_options(c);
        if opts.is_empty() {
            continue;
        }
        m.push_str(&format!(".SS \"meshnode {}\"\n", roff(c.name)));
        for o in opts {
            option_entry(&mut m, o, "--");
        }
    }
    m.push_str(
        ".SH FILES\n.TP\n.I /etc/meshnode/meshnode.conf\nthe configuration of meshnode run \
         (see meshnode.conf(5)).\n.TP\n.I /var/lib/meshnode\nthe data tree and the node's \
         state, under the systemd unit.\n.SH EXIT STATUS\n0 when the command did what it was \
         asked; 1 otherwise, with one line saying why.\n.SH SEE ALSO\n\
         .BR meshnode.conf (5),\n.BR mosquitto (8),\n.BR systemd.service (5)\n",
    );
    m
}

/// `meshnode.conf(5)`.
pub fn man_conf() -> String {
    let mut m = format!(
        ".\\\" generated from src/app/options.rs by src/app/reference.rs: do not edit\n\
         .TH MESHNODE.CONF 5 \"\" \"meshnode {}\" \"File Formats\"\n\
         .SH NAME\nmeshnode.conf \\- the configuration of a meshnode node\n.SH DESCRIPTION\n",
        version()
    );
    m.push_str(&roff(
        "meshnode run --config FILE reads one option per line: the option's name as on the \
         command line without its dashes, a space, its value. # starts a comment. Options \
         before the first flow or channel line belong to the node; flow options given there \
         apply to every flow. A line flow NAME starts a flow (a set of upstream brokers and \
         what to do with their announcements); a line channel NAME starts a channel of the \
         taker. Every option and its default is also in the example file shipped with the \
         node.",
    ));
    m.push('\n');
    for (scope, title, about) in [
        (Scope::NODE, "THE NODE", "Before the first section."),
        (
            Scope::FLOW,
            "A FLOW",
            "After a flow NAME line, or before the first section for every flow.",
        ),
        (Scope::CHANNEL, "A CHANNEL", "After a channel NAME line."),
    ] {
        m.push_str(&format!(".SH {title}\n{}\n", roff(about)));
        for o in OPTIONS.iter().filter(|o| o.scope.has(scope)) {
            option_entry(&mut m, o, "");
        }
    }
    m.push_str(
        ".SH EXAMPLE\n.nf\ndir /var/lib/meshnode/data\nlisten 0.0.0.0:8000\n\
         post\\-broker mqtt://owner:OWNERPW@localhost\npost\\-baseUrl http://pi1:8000\n\
         flow peers\nbroker mqtt://guest:GUESTPW@pi2\nsubtopic #\n.fi\n\
         .SH SEE ALSO\n.BR meshnode (8)\n",
    );
    m
}

/// `docs/options.md`: every option in one table.
pub fn options_md() -> String {
    let mut d = String::from(
        "<!-- generated from src/app/options.rs by src/app/reference.rs: do not edit -->\n\
         # Options\n\nEvery option of every command and configuration section, from the one \
         option table (`src/app/options.rs`). On the command line `--name VALUE`; in the \
         configuration file (`meshnode run --config`) `name value`. The same text is in \
         `meshnode(8)`, `meshnode.conf(5)` and each command's `--help`.\n\n\
         | option | value | default | where | meaning |\n|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for o in OPTIONS {
        let mut name = format!("`{}`", o.name);
        for a in o.aliases {
            name.push_str(&format!(", `{a}`"));
        }
        let value = if o.value.is_empty() {
            "(flag)".to_string()
        } else {
            format!("`{}`", cell(o.value))
        };
        d.push_str(&format!(
            "| {name} | {value} | {} | {} | {} |\n",
            cell(o.default),
            places(o).join(", "),
            cell(o.help)
        ));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated files in the tree are what the table makes now.
    #[test]
    fn the_generated_reference_is_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let bless = std::env::var_os("MESHNODE_BLESS").is_some();
        let mut stale = Vec::new();
        for (path, make) in FILES {
            let want = make();
            let file = root.join(path);
            if bless {
                std::fs::create_dir_all(file.parent().expect("a parent")).expect("docs/");
                std::fs::write(&file, &want).expect("written");
            } else if std::fs::read_to_string(&file).ok().as_deref() != Some(want.as_str()) {
                stale.push(path);
            }
        }
        assert!(
            stale.is_empty(),
            "stale: {stale:?}; write them again with MESHNODE_BLESS=1 cargo test reference"
        );
    }

    /// The table's defaults are the node's: a peer or flow starts from them (applied
    /// through the parser, `PeerArgs::new`), and the library's `PeerConfig::default()`
    /// is the same. Node options (the server's) are set from the config file's parser:
    /// a config naming one with the default the table says reads as the same config
    /// without it. Fails when the code and the table drift.
    #[test]
    fn the_tables_defaults_are_the_codes() {
        use crate::app::args::PeerArgs;
        use crate::app::config::parse;
        let table = PeerArgs::new();
        assert_eq!(table.verbose, 1, "--verbose's default");
        assert_eq!(
            format!("{:?}", table.cfg),
            format!("{:?}", crate::mesh::peer::PeerConfig::default()),
            "PeerConfig::default() differs from the option table's defaults"
        );
        let applied = OPTIONS
            .iter()
            .filter(|o| o.scope.has(Scope::PEER) && o.default_value().is_some())
            .count();
        // 31 when written: most of a peer's defaults are values, each applied
        assert!(applied >= 28, "only {applied} defaults applied");
        let base = "post-broker none\nlisten none\nflow f\nbroker mqtt://h\n";
        let plain = format!("{:?}", parse(base, "c").expect("the base config"));
        let (mut checked, mut drift) = (Vec::new(), Vec::new());
        for o in OPTIONS
            .iter()
            .filter(|o| o.scope.has(Scope::NODE) && !o.scope.has(Scope::PEER))
        {
            let Some(value) = o.default_value() else {
                continue;
            };
            let Ok(with) = parse(&format!("{} {value}\n{base}", o.name), "c") else {
                continue; // a default written as words ("none", "the node's"), not a value
            };
            if format!("{with:?}") != plain {
                drift.push(format!("--{} (the table says {:?})", o.name, o.default));
            }
            checked.push(o.name);
        }
        assert!(drift.is_empty(), "the code's default differs: {drift:#?}");
        assert!(
            checked.len() >= 6,
            "only {} checked: {checked:?}",
            checked.len()
        );
    }

    /// deploy/meshnode.conf says each value it shows commented out is the default: it
    /// is the table's, for every default that is a value.
    #[test]
    fn the_example_configs_defaults_are_the_tables() {
        let text = include_str!("../../deploy/meshnode.conf");
        let mut wrong = Vec::new();
        let mut seen = 0;
        // a commented-out section (`#flow wis2-synop`, `#channel MEMO`) is an example,
        // its values chosen for it: until the next section, nothing there is a default
        let mut in_example = false;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix('#') else {
                if line.starts_with("flow ") || line.starts_with("channel ") {
                    in_example = false;
                }
                continue;
            };
            if rest.starts_with("flow ") || rest.starts_with("channel ") {
                in_example = true;
            }
            if in_example {
                continue;
            }
            let mut words = rest.split_whitespace();
            let (Some(name), Some(shown)) = (words.next(), words.next()) else {
                continue;
            };
            let name = super::super::options::normalize(name);
            let Some(o) = OPTIONS.iter().find(|o| o.name == name) else {
                continue; // prose
            };
            // a default that is a value, with no remark ("none (on the node's server)"
            // is shown with an example instead)
            let Some(value) = o.default_value().filter(|v| *v == o.default) else {
                continue;
            };
            seen += 1;
            if shown != value {
                wrong.push(format!("#{name} {shown} (the table: {:?})", o.default));
            }
        }
        assert!(wrong.is_empty(), "deploy/meshnode.conf: {wrong:#?}");
        assert!(seen >= 20, "{seen} defaults shown");
    }

    #[test]
    fn every_option_is_in_every_reference_with_its_default() {
        let (m8, m5, md) = (man_meshnode(), man_conf(), options_md());
        for o in OPTIONS {
            assert!(
                md.contains(&format!("`{}`", o.name)),
                "{} in options.md",
                o.name
            );
            let in_man = m8.contains(&roff(o.name)) || m5.contains(&roff(o.name));
            assert!(in_man, "{} in a man page", o.name);
            assert!(
                md.contains(&o.default.replace('|', "\\|")),
                "{}'s default",
                o.name
            );
        }
        assert_eq!(roff(".hidden -x \\"), "\\&.hidden \\-x \\e");
    }
}
