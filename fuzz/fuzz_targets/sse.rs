//! An upstream's event stream, cut into chunks anywhere: the bounded SSE parser
//! yields events or refuses, never panics or grows past its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_mcp::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses where the input is cut into chunks.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut parser = SseParser::new(64 * 1024);
    for chunk in rest.chunks(step) {
        if parser.push(chunk).is_err() {
            return;
        }
    }
});
