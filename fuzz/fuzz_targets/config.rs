//! The configuration file (`mandate serve --config FILE`): TOML, every table refusing
//! unknown keys, then each setting checked and settled. The production loader
//! (`Config::load`) reads the fuzzer's file with an empty environment and no flags;
//! it refuses or settles, never panics.
//!
//! The `mandate` crate is a binary with no library, so this target compiles its
//! `src/config.rs` (and `src/config/enterprise.rs`) as a module of its own: the same
//! source, not a copy. That file may use only the crates this workspace lists.
//! `Config::load` reads the file from disk, so each input is written to one file per
//! process under the temporary directory first.
#![no_main]

// An inline module standing for `crates/mandate/src`, so that `config.rs` is read as
// there (its `mod enterprise;` is `config/enterprise.rs`).
#[path = "../../crates/mandate/src"]
mod mandate_src {
    #[allow(dead_code, reason = "the target calls the loader only")]
    pub mod config;
}

use mandate_src::config;

// `config.rs` settles `trusted_proxies` with `crate::forwarded` (the same source too).
#[path = "../../crates/mandate/src/forwarded.rs"]
#[allow(dead_code, reason = "the target calls the loader only")]
mod forwarded;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("mandate-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if std::fs::write(path(), data).is_err() {
        return;
    }
    let flags = config::Overrides {
        config: Some(path().clone()),
        ..config::Overrides::default()
    };
    let env: BTreeMap<&str, &str> = BTreeMap::new();
    let _ = config::Config::load(&flags, &env);
});
