//! Retention: removing hour directories (`YYYYMMDDHH`, or the demo's `YYYYMMDDTHH`)
//! older than a number of hours, as the demo's old_hour_dirs.py does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Hours since the Unix epoch of an hour directory's name, or `None` if the name is not
/// one.
pub fn hour_of(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    let (date, hour) = match b.len() {
        10 => (&b[..8], &b[8..]),
        11 if b[8] == b'T' => (&b[..8], &b[9..]),
        _ => return None,
    };
    if !date.iter().chain(hour).all(u8::is_ascii_digit) {
        return None;
    }
    let num = |s: &[u8]| s.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0'));
    let (y, m, d, h) = (
        num(&date[..4]),
        num(&date[4..6]),
        num(&date[6..8]),
        num(hour),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some(crate::core::time::days_from_civil(y, m, d) * 24 + h)
}

/// True when hour directory `name` is older than `hours` at `now` (epoch seconds): its
/// hour is before the hour `hours` ago, as old_hour_dirs.py compares them.
pub fn expired(name: &str, now: f64, hours: u32) -> bool {
    let cutoff = (now / 3600.0).floor() as i64 - i64::from(hours);
    hour_of(name).is_some_and(|h| h < cutoff)
}

/// Removes the expired hour directories directly under `dir`; returns them.
/// Symlinks are never followed (a link named like an hour is removed as a link).
pub fn clean(dir: &Path, hours: u32, now: f64) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !expired(name, now, hours) {
            continue;
        }
        let path = e.path();
        let kind = e.file_type()?;
        if kind.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hour_names() {
        assert_eq!(hour_of("1970010100"), Some(0));
        assert_eq!(hour_of("1970010201"), Some(25));
        assert_eq!(hour_of("19700102T01"), Some(25));
        for bad in [
            "197001010",
            "1970010124",
            "19701301TT",
            "data",
            "20261123",
            "2026112310x",
        ] {
            assert_eq!(hour_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn expires_like_old_hour_dirs() {
        // now = 2026-11-23 10:30 UTC; 2 hours: 08 stays (cutoff hour), 07 goes
        let now =
            (crate::core::time::days_from_civil(2026, 11, 23) * 24 + 10) as f64 * 3600.0 + 1800.0;
        assert!(!expired("2026112310", now, 2));
        assert!(!expired("2026112308", now, 2));
        assert!(expired("2026112307", now, 2));
        assert!(expired("20261122T23", now, 2));
        assert!(!expired("20261123T09", now, 2));
        assert!(!expired("notanhour", now, 0));
    }

    #[test]
    fn cleans_a_tree_of_dated_dirs() {
        let d = std::env::temp_dir().join(format!("meshnode-clean-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for name in [
            "2026112301/GTS/a",
            "2026112309/GTS/b",
            "20261123T02/x",
            "keep/2026010100",
            "README",
        ] {
            fs::create_dir_all(d.join(name)).unwrap();
        }
        fs::write(d.join("2026112301/GTS/a/f.txt"), b"x").unwrap();
        let now = (crate::core::time::days_from_civil(2026, 11, 23) * 24 + 10) as f64 * 3600.0;
        let removed = clean(&d, 3, now).unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["2026112301", "20261123T02"]);
        assert!(d.join("2026112309/GTS/b").is_dir());
        assert!(
            d.join("keep/2026010100").is_dir(),
            "only the top level is looked at"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
