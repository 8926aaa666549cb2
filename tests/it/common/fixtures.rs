//! Announcements, checksums and files made for tests.

use std::io::Read;
use std::path::Path;

pub fn md5_b64(data: &[u8]) -> String {
    meshnode::core::integrity::digest_of(meshnode::core::integrity::Method::Md5, data)
        .unwrap()
        .to_base64()
}

/// A pubTime of now (a fixed date would age past --lag-drop and be dropped).
pub fn pub_time_now() -> String {
    let mut t = String::new();
    meshnode::core::time::format_time(&mut t, meshnode::sys::unix_now());
    t
}

/// A v03 (demo dialect) announcement of `data` at `rel`.
pub fn announcement(base_url: &str, rel: &str, data: &[u8], inline: bool) -> Vec<u8> {
    let t = pub_time_now();
    let mut v = serde_json::json!({
        "pubTime": t, "baseUrl": base_url, "relPath": rel,
        "integrity": {"method": "md5", "value": md5_b64(data)},
        "source": "test-centre",
    });
    if inline {
        v["content"] = serde_json::json!({"encoding": "utf-8", "value": String::from_utf8(data.to_vec()).unwrap()});
    }
    serde_json::to_vec(&v).unwrap()
}

pub fn topic_of(rel: &str) -> String {
    match rel.rfind('/') {
        Some(i) => format!("xpublic/v03/post/{}", &rel[..i]),
        None => "xpublic/v03/post".into(),
    }
}

/// Writes `data` at `root/rel`.
pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

pub fn read(root: &Path, rel: &str) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(root.join(rel))
        .ok()?
        .read_to_end(&mut v)
        .ok()?;
    Some(v)
}

/// Files in a tree, temporary (hidden) ones left out.
pub fn walk_count(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                n += 1;
            }
        }
    }
    n
}
