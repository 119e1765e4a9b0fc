//! oidc-provider (npm, pinned in `tests/oidc`) on loopback, for the tests that need a
//! real authorization server: the console's sign-in (`provider.mjs`) and an upstream
//! service's (`upstream.mjs`).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

/// A script of `tests/oidc` serving on 127.0.0.1, killed when dropped.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    // Kept open: the provider writes nothing more, but a closed pipe would kill it.
    _stdout: BufReader<ChildStdout>,
}

impl OidcProvider {
    /// Runs `script` with `args` until it prints `{"issuer": …}`.
    pub fn start(script: &str, args: &[&str]) -> OidcProvider {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci --prefix crates/mandate/tests/oidc` (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("oidc-provider did not start ({e}): {line:?}"));
        OidcProvider {
            child,
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            _stdout: stdout,
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
