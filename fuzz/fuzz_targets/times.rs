//! Every time the node reads, written again, reads as the same instant: pubTimes,
//! RFC 3339 (to whole seconds) and HTTP dates.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::core::time;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = time::parse_time(s) {
        let mut out = String::new();
        time::format_time(&mut out, t);
        let again = time::parse_time(&out).unwrap_or_else(|| panic!("{s:?} -> {out:?}"));
        assert!((again - t).abs() < 1e-3, "{s:?} -> {out:?}: {t} vs {again}");
        if let Some(r) = time::pub_time_to_rfc3339(&out) {
            let back = time::parse_rfc3339(&r).unwrap_or_else(|| panic!("{out:?} -> {r:?}"));
            assert!((back - t).abs() < 1e-3, "{out:?} -> {r:?}");
        }
    }
    if let Some(t) = time::parse_rfc3339(s) {
        let out = time::rfc3339(t);
        let again = time::parse_rfc3339(&out).unwrap_or_else(|| panic!("{s:?} -> {out:?}"));
        assert_eq!(again, t.floor(), "{s:?} -> {out:?}");
    }
    if let Some(t) = time::parse_http_date(s) {
        let out = time::http_date(t);
        assert_eq!(time::parse_http_date(&out), Some(t), "{s:?} -> {out:?}");
    }
});
