//! A relPath the node accepts never leaves the data tree: no `..` component, no leading
//! `/`, no NUL.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::core::relpath;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rel) = relpath::validate(s) {
        assert!(!rel.starts_with('/'), "{rel:?}");
        assert!(!rel.contains('\0'), "{rel:?}");
        assert!(rel.split('/').all(|c| c != ".."), "{rel:?}");
    }
});
