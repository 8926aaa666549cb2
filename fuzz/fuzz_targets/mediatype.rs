//! A media type the node accepts is written back in a form it reads as the same type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::core::mediatype::MediaType;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = MediaType::parse(s) {
        let written = m.to_string();
        let again =
            MediaType::parse(&written).unwrap_or_else(|e| panic!("{s:?} -> {written:?}: {e}"));
        assert_eq!(again, m, "{s:?} -> {written:?}");
    }
});
