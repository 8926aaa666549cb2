//! The store's tree: writing, verifying, renaming, the checksum cache.

use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshnode-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

#[test]
fn writes_verifies_renames_and_caches() {
    let root = scratch("write");
    let mut s = Store::open(&root, "user.sr_integrity").unwrap();
    let want = integrity::digest_of(Method::Md5, b"hello\n").unwrap();
    let mut t = s.begin("a/b/c.txt", Method::Md5, 100).unwrap();
    t.write_all(b"hello\n").unwrap();
    let (m, d) = s.commit(t, "a/b/c.txt", Some(&want)).unwrap();
    assert_eq!((m, &d), (Method::Md5, &want));
    assert_eq!(fs::read(root.join("a/b/c.txt")).unwrap(), b"hello\n");
    assert_eq!(
        s.local_digest("a/b/c.txt", Method::Md5).unwrap(),
        Some(want)
    );
    assert_eq!(s.local_digest("a/b/nope", Method::Md5).unwrap(), None);
    let names: Vec<_> = fs::read_dir(root.join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["c.txt"], "no temporary file left");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_longest_temporary_name_fits_its_buffer() {
    use std::fmt::Write as _;
    let longest = format!("{TEMP_PREFIX}{}.{}.tmp", u32::MAX, u64::MAX);
    let mut b = TempName::new();
    write!(b, "{TEMP_PREFIX}{}.{}.tmp", u32::MAX, u64::MAX).unwrap();
    assert_eq!(b.as_str(), longest);
    let mut b = TempName::new();
    push_temp_name(&mut b);
    assert!(b.as_str().starts_with(TEMP_PREFIX) && b.as_str().ends_with(".tmp"));
}

#[test]
fn the_checksum_cache_value_is_sr3s_json_for_the_longest_digest_too() {
    for method in [Method::Md5, Method::Sha3_512] {
        let d = integrity::digest_of(method, b"hello\n").unwrap();
        let v = xattr_value(method, &d);
        let want = format!(
            r#"{{"method":"{}","value":"{}"}}"#,
            method.name(),
            d.to_base64()
        );
        assert_eq!(std::str::from_utf8(v.as_str().as_bytes()).unwrap(), want);
    }
}

#[test]
fn a_committed_file_has_the_modification_time_asked_for() {
    let root = scratch("mtime");
    let mut s = Store::open(&root, "user.sr_integrity").unwrap();
    let mut t = s.begin("a/f", Method::Md5, 100).unwrap();
    t.set_modified(Some(1_700_000_000.25));
    t.write_all(b"x").unwrap();
    s.commit(t, "a/f", None).unwrap();
    let m = fs::metadata(root.join("a/f")).unwrap().modified().unwrap();
    let secs = m
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((secs - 1_700_000_000.25).abs() < 1e-6, "{secs}");
    // the checksum cache is set on the open file too
    assert!(xattr::get(root.join("a/f"), "user.sr_integrity")
        .unwrap()
        .is_some());
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn mismatch_leaves_nothing_and_keeps_old_file() {
    let root = scratch("mismatch");
    let mut s = Store::open(&root, "user.sr_integrity").unwrap();
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d/f"), b"old").unwrap();
    let want = integrity::digest_of(Method::Md5, b"good").unwrap();
    let mut t = s.begin("d/f", Method::Md5, 100).unwrap();
    t.write_all(b"evil").unwrap();
    assert!(matches!(
        s.commit(t, "d/f", Some(&want)),
        Err(CommitError::Mismatch { .. })
    ));
    assert_eq!(fs::read(root.join("d/f")).unwrap(), b"old");
    assert_eq!(fs::read_dir(root.join("d")).unwrap().count(), 1);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_directory_removed_behind_its_back_is_made_again() {
    let root = scratch("removed");
    let mut s = Store::open(&root, "user.sr_integrity").unwrap();
    let t = s.begin("2026112301/a/f", Method::Md5, 10).unwrap();
    s.commit(t, "2026112301/a/f", None).unwrap();
    fs::remove_dir_all(root.join("2026112301")).unwrap();
    let t = s.begin("2026112301/a/g", Method::Md5, 10).unwrap();
    s.commit(t, "2026112301/a/g", None).unwrap();
    assert!(root.join("2026112301/a/g").is_file());
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn size_limit_and_symlinks_refused() {
    let root = scratch("limits");
    let outside = scratch("outside");
    fs::create_dir_all(&outside).unwrap();
    let mut s = Store::open(&root, "user.sr_integrity").unwrap();
    let mut t = s.begin("big", Method::Md5, 4).unwrap();
    assert!(t.write_all(b"12345").is_err());
    drop(t);
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let e = s.begin("link/x", Method::Md5, 4).err().unwrap();
    assert!(e.to_string().contains("symlink"), "{e}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&root).unwrap().count(), 1, "only the link");
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}
