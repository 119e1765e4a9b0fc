//! One JSON-RPC message as a client or an upstream sends it to the gateway: parsed
//! strictly (no batches), refused with a code or accepted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_mcp::Message;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
});
