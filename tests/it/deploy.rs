//! deploy/: the install script, the unit, and mosquitto's mesh.conf with its ACL.

use crate::common::*;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `root` with its mode and content, for comparing two installs.
fn snapshot(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = e.metadata().unwrap().permissions().mode();
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    mode,
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_twice_into_a_scratch_root_gives_the_same_result() {
    let s = Scratch::new("deploy-install");
    let root = s.path("root");
    let install = || {
        let st = Command::new("sh")
            .arg(manifest().join("deploy/install.sh"))
            .arg(env!("CARGO_BIN_EXE_meshnode"))
            .env("DESTDIR", &root)
            .status()
            .unwrap();
        assert!(st.success());
    };
    install();
    let first = snapshot(&root);
    let names: Vec<&str> = first.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "usr/local/bin/meshnode",
        "etc/systemd/system/meshnode.service",
        "usr/lib/sysusers.d/meshnode.conf",
        "etc/meshnode/meshnode.conf",
        "etc/mosquitto/conf.d/mesh.conf",
        "etc/mosquitto/mesh.acl",
    ] {
        assert!(names.contains(&want), "{want} installed: {names:?}");
    }
    // a local edit survives a second install
    let conf = root.join("etc/meshnode/meshnode.conf");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("# edited by the operator\n");
    std::fs::write(&conf, &edited).unwrap();
    let before = snapshot(&root);
    install();
    assert_eq!(snapshot(&root), before, "the second run changes nothing");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(first
        .iter()
        .any(|(n, mode, _)| n == "etc/meshnode/meshnode.conf" && mode & 0o777 == 0o640));
}

#[test]
fn the_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is needed (Debian package systemd)");
    }
    let s = Scratch::new("deploy-unit");
    // the same unit, its ExecStart pointing at the binary just built
    let unit = std::fs::read_to_string(manifest().join("deploy/meshnode.service"))
        .unwrap()
        .replace("/usr/local/bin/meshnode", env!("CARGO_BIN_EXE_meshnode"));
    let path = s.path("meshnode.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
}

/// The alert rules an operator pages on (`deploy/prometheus`): each fires on the
/// series meant to raise it, after its `for`, and not on healthy ones
/// (`promtool test rules`, the rules' own unit tests).
#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let dir = manifest().join("deploy/prometheus");
    let out = Command::new("promtool")
        .args(["test", "rules", "meshnode-rules.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
}

/// The generated man pages render without a warning (`groff -ww`, as `man -l` would);
/// that they are current is the unit test `the_generated_reference_is_current`.
#[test]
fn the_man_pages_render_without_warnings() {
    for page in ["docs/man/meshnode.8", "docs/man/meshnode.conf.5"] {
        let out = Command::new("groff")
            // plain text: no bold or underline by overstriking
            .args(["-ww", "-man", "-Tutf8", "-P-cbou"])
            .arg(manifest().join(page))
            .output()
            .expect("groff (Debian package groff-base; scripts/test installs it)");
        let warnings = String::from_utf8_lossy(&out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && warnings.trim().is_empty(),
            "{page}: {warnings}"
        );
        assert!(
            text.contains("SEE ALSO") && text.contains("broker"),
            "{page}"
        );
    }
}

/// Publishes one message as `user`; the broker's answer (None: no answer in time).
fn publish_as(port: u16, user: &str, password: &str, topic: &str) -> Option<PubAckReason> {
    let mut o = MqttOptions::new(format!("{user}-{}", free_port()), "127.0.0.1", port);
    o.set_credentials(user, password);
    let (client, mut conn) = Client::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, b"x".to_vec())
        .unwrap();
    for _ in 0..50 {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => return Some(a.reason),
            Ok(Err(_)) => return None,
            _ => {}
        }
    }
    None
}

#[test]
fn mosquitto_mesh_conf_lets_owner_publish_and_guest_only_read() {
    let s = Scratch::new("deploy-mosquitto");
    let port = free_port();
    // the shipped file, with this test's port and paths
    let conf = std::fs::read_to_string(manifest().join("deploy/mosquitto/mesh.conf"))
        .unwrap()
        .replace("listener 1883", &format!("listener {port} 127.0.0.1"))
        .replace(
            "/etc/mosquitto/pwfile",
            &s.path("pwfile").display().to_string(),
        )
        .replace(
            "/etc/mosquitto/mesh.acl",
            &manifest()
                .join("deploy/mosquitto/mesh.acl")
                .display()
                .to_string(),
        )
        + &format!("persistence_location {}/\n", s.0.display());
    std::fs::write(s.path("mesh.conf"), conf).unwrap();
    for (i, (user, pw)) in [("owner", "ownerpw"), ("guest", "guestpw")]
        .iter()
        .enumerate()
    {
        let mut c = Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        let st = c
            .arg("-b")
            .arg(s.path("pwfile"))
            .arg(user)
            .arg(pw)
            .stdout(Stdio::null())
            .status();
        assert!(st
            .expect("mosquitto_passwd (Debian package mosquitto)")
            .success());
    }
    let mosquitto = meshnode::app::mosquitto::find().expect("mosquitto installed");
    let mut broker = Command::new(mosquitto)
        .arg("-c")
        .arg(s.path("mesh.conf"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(10, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let owner = publish_as(port, "owner", "ownerpw", "xpublic/v03/post/a");
    let guest = publish_as(port, "guest", "guestpw", "xpublic/v03/post/a");
    let outside = publish_as(port, "owner", "ownerpw", "elsewhere/a");
    let stranger = publish_as(port, "nobody", "x", "xpublic/v03/post/a");
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        matches!(
            owner,
            Some(PubAckReason::Success | PubAckReason::NoMatchingSubscribers)
        ),
        "owner publishes: {owner:?}"
    );
    assert_eq!(
        guest,
        Some(PubAckReason::NotAuthorized),
        "guest may not publish"
    );
    assert_eq!(
        outside,
        Some(PubAckReason::NotAuthorized),
        "owner only under xpublic/#"
    );
    assert_eq!(stranger, None, "unknown users are not let in");
}
