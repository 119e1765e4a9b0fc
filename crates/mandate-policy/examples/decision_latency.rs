//! Per-decision latency percentiles of `decide_call`, which criterion does not give.
//!
//! The world is the benchmark's (`benches/decision.rs`): 1 000 agents, 1 000 tools on
//! 50 servers, 10 000 active mandates, varied calls inside their scope; operator
//! policies as generated there. Each decision is timed on its own.
//!
//! ```text
//! cargo run --release -p mandate-policy --example decision_latency -- \
//!     [--decisions 200000] [--calls 20000] [--policies 0,10000] [--unindexed]
//! ```
//!
//! Prints one line per operator policy count (0 = the built-in policies alone). It
//! reports, it asserts nothing.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use mandate_policy::{CallRequest, CompiledSet, Lookup};

// The world lives in the benchmark; its `main` and criterion glue are unused here.
#[allow(dead_code)]
#[path = "../benches/decision.rs"]
mod bench;

struct Options {
    decisions: usize,
    calls: usize,
    policies: Vec<usize>,
    lookup: Lookup,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        decisions: 200_000,
        calls: 20_000,
        policies: vec![0, 10_000],
        lookup: Lookup::Indexed,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--decisions" => options.decisions = value()?.parse()?,
            "--calls" => options.calls = value()?.parse()?,
            "--policies" => {
                options.policies = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--unindexed" => options.lookup = Lookup::Unindexed,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if options.decisions == 0 || options.calls == 0 {
        return Err("--decisions and --calls must be positive".into());
    }
    Ok(options)
}

/// The value at quantile `q` of sorted nanoseconds, in microseconds.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    let at = ((last as f64) * q).round() as usize;
    sorted.get(at.min(last)).copied().unwrap_or(0) as f64 / 1_000.0
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let started = Instant::now();
    let world = bench::World::new(options.calls);
    eprintln!(
        "world: 1000 tools, 10000 mandates, {} distinct calls, built in {:.1?}",
        options.calls,
        started.elapsed()
    );
    let lookup = match options.lookup {
        Lookup::Indexed => "indexed",
        Lookup::Unindexed => "unindexed",
    };
    println!(
        "{:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "operator",
        "lookup",
        "decisions",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "mean µs",
        "allowed"
    );
    for &n in &options.policies {
        let compiling = Instant::now();
        let set = CompiledSet::compile(world.source(n)).map_err(|e| e.to_string())?;
        eprintln!(
            "compiled built-ins + {n} operator policies in {:.1?}",
            compiling.elapsed()
        );
        let requests: Vec<CallRequest<'_>> =
            world.calls.iter().map(|call| world.request(call)).collect();
        // Warm up: caches, allocator, branch predictors.
        for request in requests.iter().cycle().take(options.decisions / 10) {
            black_box(set.decide_call_with(request, options.lookup));
        }
        let mut times = Vec::with_capacity(options.decisions);
        let mut allowed = 0usize;
        let total = Instant::now();
        for request in requests.iter().cycle().take(options.decisions) {
            let t = Instant::now();
            let decision = set.decide_call_with(black_box(request), options.lookup);
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            allowed += usize::from(decision.allowed);
        }
        let wall = total.elapsed();
        times.sort_unstable();
        let count = times.len().max(1);
        println!(
            "{:>9} {:>9} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.0}%",
            n,
            lookup,
            times.len(),
            quantile(&times, 0.50),
            quantile(&times, 0.90),
            quantile(&times, 0.99),
            quantile(&times, 0.999),
            quantile(&times, 1.0),
            wall.as_secs_f64() * 1e6 / count as f64,
            100.0 * allowed as f64 / count as f64
        );
    }
    Ok(())
}
