#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]
//! `mandate demo`, the README's first command: the real binary runs its whole script
//! (its own server, bank and agents) and succeeds only if every step behaved.

use std::process::Command;

#[test]
fn the_demo_runs_every_step_and_prints_no_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("demo")
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mandate demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let lower = stdout.to_lowercase();
    for shown in [
        "allowed",
        "denied",
        "approval",
        "proposal",
        "delegation",
        "revocation",
        "rollback",
    ] {
        assert!(
            lower.contains(shown),
            "the timeline never mentions {shown}:\n{stdout}"
        );
    }
    assert!(stdout.contains("demo passed"), "{stdout}");
    for secret in ["mdt_", "eyJ"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a token ({secret}…) was printed:\n{stdout}\n{stderr}"
        );
    }
}
