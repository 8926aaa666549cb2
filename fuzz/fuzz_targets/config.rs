//! Any configuration file (node options, flows, channel definitions) is read or
//! refused with a line; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = meshnode::app::config::parse(s, "fuzz.conf") {
        assert!(!e.is_empty());
    }
});
