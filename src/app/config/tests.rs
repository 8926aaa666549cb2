use super::*;

static TWO_FLOWS: &str = "\
# a Pi node: warnings first, the rest after
dir /var/lib/meshnode
listen 0.0.0.0:8000
retention 12
post-broker mqtt://owner:ownerpw@localhost
post_baseUrl http://pi1:8000

flow warnings
broker mqtt://guest:guestpw@peer1
subtopic +/WMO/+/W/#
inline
inline-max 4096

flow rest
broker mqtt://guest:guestpw@peer1
broker mqtt://guest:guestpw@peer2
select reject .*/W/.*
lag_warn 300
";

#[test]
fn reads_flows_with_shared_options() {
    let n = parse(TWO_FLOWS, "node.conf").unwrap();
    assert_eq!(n.dir, PathBuf::from("/var/lib/meshnode"));
    assert_eq!(n.http.listen, Some("0.0.0.0:8000".parse().unwrap()));
    assert_eq!(n.retention_hours, 12);
    assert_eq!(n.flows.len(), 2);
    let (w, r) = (&n.flows[0], &n.flows[1]);
    assert_eq!((w.name.as_str(), r.name.as_str()), ("warnings", "rest"));
    assert_eq!(w.subtopics, ["+/WMO/+/W/#"]);
    assert!(w.inline && !r.inline);
    assert_eq!(w.inline_max, 4096);
    assert_eq!(r.brokers.len(), 2);
    assert_eq!(r.lag_warn, 300.0);
    assert_eq!(w.post_base_url, "http://pi1:8000");
    assert_eq!(r.dir, PathBuf::from("/var/lib/meshnode"));
    assert_eq!(
        r.post_broker.as_ref().unwrap().user.as_deref(),
        Some("owner")
    );
    assert_ne!(w.default_client_id(), r.default_client_id());
}

#[test]
fn one_flow_without_sections() {
    let n = parse(
        "broker mqtt://h\npost-broker none\nlisten 127.0.0.1:8080\n",
        "c",
    )
    .unwrap();
    assert_eq!(n.flows.len(), 1);
    assert_eq!(n.flows[0].name, "main");
    assert!(n.flows[0].post_base_url.ends_with(":8080"));
}

#[test]
fn errors_name_file_line_and_reason() {
    let cases = [
        (
            "broker mqtt://h\npost-broker none\nfrobnicate 3\n",
            "c:3: unknown option --frobnicate",
        ),
        (
            "broker mqtt://h\npost-broker none\nlag-warn soon\n",
            "c:3: --lag-warn: \"soon\" is not a valid number",
        ),
        ("broker http://h\n", "c:1: broker \"http://h\": scheme"),
        (
            "post-broker none\nflow a\nsubtopic #\n",
            "c:2: flow a: give at least one --broker",
        ),
        (
            "broker mqtt://h\npost-broker none\nflow a\nlisten 1.2.3.4:5\n",
            "c:4: listen is a node option",
        ),
        (
            "broker mqtt://h\npost-broker none\nflow a\nflow a\n",
            "c:4: flow a is defined twice",
        ),
        (
            "broker mqtt://h\npost-broker none\nlisten nowhere\n",
            "c:3: listen: \"nowhere\"",
        ),
        (
            "broker mqtt://h\npost-broker none\nretention\n",
            "c:3: option retention needs a value",
        ),
        (
            "broker mqtt://h\npost-broker none\nselect accept (\n",
            "c:3: select \"accept (\": bad regular expression",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text, "c").unwrap_err();
        assert!(e.starts_with(want), "{text:?}: got {e:?}");
    }
}

#[test]
fn reads_channels() {
    let text = "\
listen 127.0.0.1:8000
password-file /etc/meshnode/passwd
product-max 10M
node-id pi1
post-broker mqtt://owner:pw@localhost
channel MEMO
title Memos to all
capacity 5
access open
writers dave
channel 21
kind feed
feed-dir /sample/observation
min-free 100M
access restricted
writers ops
";
    let n = parse(text, "c").unwrap();
    assert!(
        n.flows.is_empty(),
        "no broker, no flow: serve and take only"
    );
    assert_eq!(n.channels.len(), 2);
    let (m, f) = (&n.channels[0], &n.channels[1]);
    assert_eq!(
        (m.title.as_str(), m.capacity, m.open),
        ("Memos to all", 5, true)
    );
    assert!(m.may_delete(Some("dave")) && !m.may_delete(Some("eve")));
    assert!(f.is_feed() && !f.open && f.may_write(Some("ops")));
    assert_eq!((n.product_max, n.node_id.as_str()), (10 << 20, "pi1"));
    let post = n.channel_post.as_ref().expect("announced");
    assert!(post.post_base_url.ends_with(":8000"));
    let cases = [
        ("channel a/b\n", "c:1: channel id \"a/b\""),
        ("channel A\nchannel A\n", "c:2: channel A is defined twice"),
        ("channel A\ncapacity none\n", "c:2: channel A: capacity"),
        (
            "channel A\nlisten 1.2.3.4:5\n",
            "c:2: channel A: unknown channel option",
        ),
        (
            "channel A\nkind feed\n",
            "c: channel A: kind feed needs feed-dir",
        ),
        ("node-id a.b\n", "c:1: node-id"),
        ("product-max lots\n", "c:1: product-max"),
    ];
    for (text, want) in cases {
        let e = parse(text, "c").unwrap_err();
        assert!(e.starts_with(want), "{text:?}: got {e:?}");
    }
}

#[test]
fn every_documented_option_is_accepted() {
    // mosquitto.conf's convention: `# prose`, `#option value` (a default, commented
    // out). Uncommenting every option must give a valid file: the example documents
    // exactly what the parser takes.
    let text = include_str!("../../../deploy/meshnode.conf");
    let mut all = String::new();
    let mut options = 0;
    for line in text.lines() {
        match line.strip_prefix('#') {
            Some(opt) if opt.starts_with(|c: char| c.is_ascii_lowercase()) => {
                all.push_str(opt);
                options += 1;
            }
            Some(_) => continue,
            None => all.push_str(line),
        }
        all.push('\n');
    }
    assert!(
        options >= 30,
        "{options} commented-out options in the example"
    );
    let n = parse(&all, "all-options").unwrap_or_else(|e| panic!("{e}\n{all}"));
    assert_eq!((n.retention_hours, n.flows.len()), (13, 3));
    assert_eq!(n.flows[1].select.len(), 2, "both select lines of flow rest");
    let wis2 = &n.flows[2];
    assert_eq!(wis2.format, crate::core::message::Format::Wis2);
    assert!(wis2.brokers[0].tls && wis2.brokers[0].user.as_deref() == Some("everyone"));
    assert_eq!(
        crate::core::topic::subscription(&wis2.exchange, &wis2.topic_prefix, &wis2.subtopics[0]),
        "cache/a/wis2/+/data/core/weather/surface-based-observations/#"
    );
    assert_eq!(n.channels.len(), 2, "both example channels");
    assert!(n.channels[1].is_feed() && n.password_file.is_some());
}

#[test]
fn the_example_documents_every_option_of_the_table() {
    let text = include_str!("../../../deploy/meshnode.conf");
    let documented: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        // `#name value` (a default) or `# name: prose`
        .map(|w| normalize(w.trim_end_matches(':')))
        .collect();
    let file_scopes = Scope::NODE.or(Scope::FLOW).or(Scope::CHANNEL);
    let missing: Vec<&str> = options::OPTIONS
        .iter()
        .filter(|o| o.scope.has(file_scopes))
        .filter(|o| !documented.iter().any(|d| d == o.name))
        .map(|o| o.name)
        .collect();
    assert!(
        missing.is_empty(),
        "not in deploy/meshnode.conf: {missing:?}"
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../../deploy/meshnode.conf");
    let n = parse(text, "deploy/meshnode.conf").unwrap();
    assert!(!n.flows.is_empty());
}
