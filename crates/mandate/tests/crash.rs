#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The ledger under SIGKILL: a process appends under load through the group-commit
//! writer and is killed at a random moment, again and again on the same store. After
//! every kill, every event it acknowledged is present and the chain verifies.
//!
//! CI runs a few rounds; run it longer with `MANDATE_CRASH_ROUNDS=50 cargo test -p
//! mandate --test crash -- --nocapture`.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mandate");

/// A small deterministic generator, so a failing round can be replayed from its seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn killed_under_load_no_acknowledged_event_is_lost() {
    let rounds: u32 = std::env::var("MANDATE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut seed: u64 = std::env::var("MANDATE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    eprintln!("crash test: {rounds} rounds, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut total_acked = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(BIN)
            .args([
                "audit",
                "load",
                "--events",
                "100000000",
                "--concurrency",
                "64",
                "--tenants",
                "3",
                "--data",
            ])
            .arg(&data)
            .env("MANDATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                // Only whole lines: the kill may cut the last one short.
                if let Some(whole) = line.strip_suffix('\n')
                    && let Some((tenant, seq)) = whole.split_once(' ')
                {
                    acked.push((tenant.to_owned(), seq.parse::<u64>().unwrap()));
                }
                line.clear();
            }
            acked
        });
        let wait = 400 + next(&mut seed) % 1_200;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();

        let out = Command::new(BIN)
            .args(["audit", "verify", "--json", "--data"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round} (killed after {wait} ms): the chain does not verify:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let heads: HashMap<String, u64> = report
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["verification"]["result"], "intact", "{r}");
                (
                    r["tenant"].as_str().unwrap().to_owned(),
                    r["verification"]["head"]["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        // The chain is gap-free from 1 to its head, so an acknowledged seq at or below
        // the head is present.
        for (tenant, seq) in &acked {
            let head = heads.get(tenant).copied().unwrap_or(0);
            assert!(
                *seq <= head,
                "round {round}: acknowledged {tenant} #{seq} is lost (head {head})"
            );
        }
        eprintln!(
            "round {round}: killed after {wait} ms, {} acknowledged, all present",
            acked.len()
        );
        total_acked += acked.len();
    }
    assert!(total_acked > 0, "the load never got going");
}
