//! Where the outside vectors live: `shared/conformance/jose/` beside the
//! repository when it is there, else the vendored copy in `tests/vectors/`.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The shared conformance directory (`<repo>/../shared/conformance/jose`).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/jose")
}

/// The vendored copy.
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The path of a fixture, preferring the shared copy.
pub fn fixture(rel: &str) -> PathBuf {
    let shared = shared_dir().join(rel);
    if shared.is_file() {
        shared
    } else {
        vendored_dir().join(rel)
    }
}

/// Reads and parses a JSON fixture.
pub fn load(rel: &str) -> Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    eprintln!("reading {}", path.display());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
