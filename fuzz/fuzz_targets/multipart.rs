//! A multipart body of any shape ends (no hang), reading no more than it was given,
//! with a bounded number of parts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshnode::http::multipart::Multipart;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    // the first byte picks the boundary's length; the body follows it
    let len = usize::from(n % 16) + 1;
    if rest.len() < len {
        return;
    }
    let (b, body) = rest.split_at(len);
    let Ok(boundary) = std::str::from_utf8(b) else {
        return;
    };
    let Ok(mut m) = Multipart::new(body, boundary) else {
        return;
    };
    let mut total = 0usize;
    for _ in 0..=body.len() + 1 {
        match m.next_part() {
            Ok(Some(_)) => {
                let mut sink = Vec::new();
                match m.part().read_to_end(&mut sink) {
                    Ok(n) => total += n,
                    Err(_) => return,
                }
                assert!(total <= body.len(), "more bytes out than in");
            }
            Ok(None) | Err(_) => {
                let _ = m.finish(1024);
                return;
            }
        }
    }
    panic!("more parts than bytes: no end");
});
