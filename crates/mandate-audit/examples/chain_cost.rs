//! How long chaining one event takes (canonical encoding + SHA-256), and encoding it for
//! storage: `cargo run --release -p mandate-audit --example chain_cost`.

use std::time::Instant;

use chrono::Utc;
use mandate_audit::{Event, EventKind, Head, NewEvent};
use mandate_types::{AgentId, MandateId, TenantId};

fn main() {
    let tenant = TenantId::generate();
    let (mandate, agent) = (MandateId::generate(), AgentId::generate());
    let n = 200_000u64;
    let mut head = Head::genesis();
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let new = NewEvent::new(tenant, EventKind::Decision, format!("agent:{agent}"))
            .mandate(mandate)
            .agent(agent)
            .with("tool", "bank.transfer")
            .with("decision", "allow")
            .with("policies", vec!["mandate.scope", "mandate.budget"])
            .with(
                "arguments_hash",
                "sha256:9f2c4e0b1d7a6c5e3f8a2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f",
            )
            .with("i", i);
        let event = Event::chain(&head, new, Utc::now());
        bytes += serde_json::to_string(&event).map(|s| s.len()).unwrap_or(0);
        head = event.head();
    }
    let per = started.elapsed().as_secs_f64() / n as f64;
    println!(
        "chain + encode: {:.2} µs per event ({:.0} events/s on one core), {} bytes on average",
        per * 1e6,
        1.0 / per,
        bytes / n as usize
    );
}
