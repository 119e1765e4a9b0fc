//! Decision latency of the policy decision point.
//!
//! `decide_call`: Mandate's built-in policies plus N = 10, 100, 1 000, 10 000 operator
//! policies over Mandate's schema (most pin an agent or a tool, some a tool server, a
//! few are global), for varied tool calls: 1 000 tools on 50 servers, 10 000 active
//! mandates whose scope covers the tool called. Indexed and unindexed.
//!
//! `decide_access`: the AuthZEN "Todo" interop world (`examples/authzen/todo`),
//! operator policies only. Indexed and unindexed.
//!
//! Run with `bench/pdp-decision.sh` (summary table and growth ratio), or
//! `cargo bench -p mandate-policy --bench decision`. Under `cargo test --benches` (no
//! `--bench` argument) criterion runs each benchmark once; the sets are then limited
//! to N ≤ 100 so that a debug build does not spend its time compiling 10 000 policies.
//! For p50/p99 see `examples/decision_latency.rs`.

// A benchmark is test code: a world that cannot be built is a bug in the benchmark,
// and stopping loudly is the right answer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use mandate_domain::{
    Agent, AgentCredentials, AgentStatus, ApprovalRules, ArgumentConstraint, Budgets, Mandate,
    MandateStatus, MandateTerms, Scope, Tool, ToolAnnotations, ToolGrant, ToolServer,
    ToolServerTransport, Usage,
};
use mandate_policy::{
    AccessRequest, ActionRef, CallAction, CallRequest, CompiledSet, Lookup, PolicySource,
    SourceFile, Target,
};
use mandate_types::{
    AgentId, DataClass, HumanId, MandateMode, RiskTier, TenantId, ToolId, ToolServerId,
};
use serde_json::{Value, json};

const AGENTS: usize = 1_000;
const SERVERS: usize = 50;
const TOOLS: usize = 1_000;
const MANDATES: usize = 10_000;
/// The calls a benchmark cycles through.
pub(crate) const CALLS: usize = 4_096;
const POLICIES_PER_FILE: usize = 1_000;

/// splitmix64: a deterministic stream, so every run asks the same questions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One tool call, by index into the world.
pub(crate) struct Call {
    mandate: usize,
    tool: usize,
    arguments: Value,
    amount: u64,
    approved: bool,
}

pub(crate) struct World {
    agents: Vec<Agent>,
    servers: Vec<ToolServer>,
    tools: Vec<Tool>,
    mandates: Vec<Mandate>,
    pub(crate) calls: Vec<Call>,
    now: DateTime<Utc>,
}

fn tool_name(k: usize) -> String {
    format!("srv{}.tool{k}", k % SERVERS)
}

impl World {
    /// 1 000 agents, 50 servers, 1 000 tools, 10 000 active mandates, `calls` calls.
    pub(crate) fn new(calls: usize) -> World {
        let now = Utc::now();
        let tenant = TenantId::generate();
        let agents: Vec<Agent> = (0..AGENTS)
            .map(|k| Agent {
                id: format!(
                    "agt_{:032x}",
                    0x0190_0000_0000_7000_8000_0000_0000_0000_u128 + k as u128
                )
                .parse::<AgentId>()
                .unwrap(),
                tenant_id: tenant,
                name: format!("agent-{k}"),
                owner: HumanId::generate(),
                sponsors: Vec::new(),
                credentials: AgentCredentials::default(),
                labels: BTreeMap::from([
                    ("team".to_owned(), format!("team{}", k % 10)),
                    (
                        "env".to_owned(),
                        if k % 5 == 0 { "sandbox" } else { "prod" }.to_owned(),
                    ),
                ]),
                status: AgentStatus::Active,
                created_at: now,
            })
            .collect();
        let servers: Vec<ToolServer> = (0..SERVERS)
            .map(|s| ToolServer {
                id: ToolServerId::generate(),
                tenant_id: tenant,
                name: format!("srv{s}"),
                transport: ToolServerTransport::McpHttp {
                    url: format!("https://srv{s}.example.com/mcp"),
                },
                credential_ref: None,
                step_up: false,
                created_at: now,
            })
            .collect();
        let tools: Vec<Tool> = (0..TOOLS)
            .map(|k| Tool {
                id: ToolId::generate(),
                tenant_id: tenant,
                server_id: servers[k % SERVERS].id,
                name: format!("tool{k}"),
                description: String::new(),
                input_schema: Value::Null,
                annotations: ToolAnnotations::default(),
                risk_tier: [RiskTier::Read, RiskTier::Write, RiskTier::HighImpact][k % 3],
                tags: match k % 7 {
                    0 => BTreeSet::from(["payments".to_owned()]),
                    1 => BTreeSet::from(["pii".to_owned(), "crm".to_owned()]),
                    _ => BTreeSet::new(),
                },
                data_class: if k % 10 == 9 {
                    DataClass::Restricted
                } else {
                    [
                        DataClass::Public,
                        DataClass::Internal,
                        DataClass::Confidential,
                    ][k % 3]
                },
                amount_argument: None,
                compensation: None,
                created_at: now,
            })
            .collect();
        let mut rng = Rng(7);
        let mandates: Vec<Mandate> = (0..MANDATES)
            .map(|m| {
                let agent = &agents[m % AGENTS];
                let server = (m * 13) % SERVERS;
                let terms = MandateTerms {
                    agent_id: agent.id,
                    human_id: agent.owner,
                    intent: format!("task {m}"),
                    purpose: Some("operations".into()),
                    scope: Scope {
                        tools: vec![
                            ToolGrant {
                                tool: format!("srv{server}.*"),
                                constraints: BTreeMap::from([(
                                    "amount".to_owned(),
                                    ArgumentConstraint {
                                        max: Some(50_000),
                                        ..Default::default()
                                    },
                                )]),
                            },
                            ToolGrant {
                                tool: tool_name(rng.below(TOOLS)),
                                constraints: BTreeMap::new(),
                            },
                        ],
                    },
                    data_ceiling: DataClass::Confidential,
                    mode: if m % 20 == 0 {
                        MandateMode::Recommend
                    } else {
                        MandateMode::Execute
                    },
                    budgets: Budgets {
                        max_calls: Some(1_000),
                        max_amount: Some(5_000_000),
                        currency: Some("EUR".into()),
                    },
                    approval: ApprovalRules {
                        tiers: if m % 4 == 0 {
                            BTreeSet::from([RiskTier::HighImpact])
                        } else {
                            BTreeSet::new()
                        },
                        tags: if m % 9 == 0 {
                            BTreeSet::from(["payments".to_owned()])
                        } else {
                            BTreeSet::new()
                        },
                    },
                    owners: BTreeSet::new(),
                    not_before: None,
                    expires_at: now + chrono::Duration::days(30),
                    max_delegation_depth: 1,
                };
                let mut mandate = Mandate::request(
                    tenant,
                    terms,
                    "admin".into(),
                    now - chrono::Duration::hours(1),
                );
                mandate.status = MandateStatus::Active;
                mandate.activated_at = Some(now - chrono::Duration::hours(1));
                mandate.usage = Usage {
                    calls: rng.below(900) as u64,
                    amount: rng.below(1_000_000) as u64,
                };
                mandate
            })
            .collect();
        let calls = (0..calls)
            .map(|_| {
                let m = rng.below(MANDATES);
                let server = (m * 13) % SERVERS;
                // Mostly a tool of the server the mandate covers; sometimes its one
                // exact grant.
                let tool = if rng.below(10) == 0 {
                    let name = mandates[m].terms.scope.tools[1].tool.clone();
                    name.rsplit("tool").next().unwrap().parse().unwrap()
                } else {
                    server + SERVERS * rng.below(TOOLS / SERVERS)
                };
                let amount = rng.below(60_000) as u64;
                Call {
                    mandate: m,
                    tool,
                    arguments: json!({ "amount": amount, "note": "benchmark" }),
                    amount,
                    approved: rng.below(4) == 0,
                }
            })
            .collect();
        World {
            agents,
            servers,
            tools,
            mandates,
            calls,
            now,
        }
    }

    pub(crate) fn request<'a>(&'a self, call: &'a Call) -> CallRequest<'a> {
        let tool = &self.tools[call.tool];
        CallRequest {
            action: CallAction::CallTool,
            agent: &self.agents[call.mandate % AGENTS],
            mandate: &self.mandates[call.mandate],
            tool,
            server: &self.servers[call.tool % SERVERS],
            arguments: Some(&call.arguments),
            amount: call.amount,
            approved: call.approved,
            executing_proposal: false,
            rollback: false,
            delegation_chain: &[],
            dpop_bound: true,
            now: self.now,
        }
    }

    /// The i-th operator policy: a realistic mix where most pin an agent or a tool.
    fn policy(&self, i: usize) -> String {
        let agent = &self.agents[(i * 7 + 3) % AGENTS].id;
        let tool = tool_name(i % TOOLS);
        let server = (i * 11) % SERVERS;
        match i {
            0 => r#"@reason("quarantined tools are off limits")
forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource is Mandate::Tool)
when { resource.tags.contains("quarantined") };"#
                .to_owned(),
            1 => r#"@reason("sandbox agents do not touch confidential data")
forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource is Mandate::Tool)
when { principal.labels.contains("env=sandbox") && resource.data_rank >= 2 };"#
                .to_owned(),
            2 => r#"permit (principal is Mandate::Agent, action == Mandate::Action::"list_tools", resource);"#
                .to_owned(),
            _ => match i % 20 {
                0..=11 => format!(
                    r#"forbid (principal == Mandate::Agent::"{agent}", action == Mandate::Action::"call_tool", resource == Mandate::Tool::"{tool}")
when {{ context.amount > {i} }};"#
                ),
                12..=14 => format!(
                    r#"@remedy("approval")
forbid (principal == Mandate::Agent::"{agent}", action in [Mandate::Action::"call_tool", Mandate::Action::"read_resource"], resource in Mandate::ToolServer::"srv{server}")
when {{ resource.risk_tier == "high_impact" && !context.approved }};"#
                ),
                15..=16 => format!(
                    r#"permit (principal == Mandate::Agent::"{agent}", action == Mandate::Action::"list_tools", resource in Mandate::ToolServer::"srv{server}");"#
                ),
                17 => format!(
                    r#"forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource == Mandate::Tool::"{tool}")
when {{ context.amount > {} }};"#,
                    10_000 + i
                ),
                18 => format!(
                    r#"forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource in Mandate::ToolServer::"srv{server}")
when {{ principal.labels.contains("team=team{}") && resource.tags.contains("pii") && context.mandate.purpose != "support" }};"#,
                    i % 10
                ),
                _ => format!(
                    r#"forbid (principal == Mandate::Agent::"{agent}", action, resource)
when {{ context.delegation.depth > 0 }};"#
                ),
            },
        }
    }

    /// Operator policies 0..n, in files of 1 000.
    pub(crate) fn source(&self, n: usize) -> PolicySource {
        let policies = (0..n)
            .collect::<Vec<_>>()
            .chunks(POLICIES_PER_FILE)
            .enumerate()
            .map(|(f, chunk)| SourceFile {
                name: format!("operator-{f:03}.cedar"),
                text: chunk
                    .iter()
                    .map(|&i| self.policy(i))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            })
            .collect();
        PolicySource {
            policies,
            ..PolicySource::default()
        }
    }
}

fn decide_call(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if full {
        &[10, 100, 1_000, 10_000]
    } else {
        &[10, 100]
    };
    let world = World::new(CALLS);
    let sets: Vec<(usize, CompiledSet)> = sizes
        .iter()
        .map(|&n| {
            let set = CompiledSet::compile(world.source(n)).unwrap();
            assert_eq!(set.operator_policy_count(), n);
            (n, set)
        })
        .collect();
    // The calls must be decided the same with and without the index, and must be a
    // mix of allows and denies (not one fast path).
    for (n, set) in &sets {
        let mut allowed = 0;
        for call in world.calls.iter().take(256) {
            let request = world.request(call);
            let indexed = set.decide_call_with(&request, Lookup::Indexed);
            let unindexed = set.decide_call_with(&request, Lookup::Unindexed);
            assert_eq!(indexed, unindexed, "N = {n}");
            allowed += usize::from(indexed.allowed);
        }
        assert!(
            allowed > 0 && allowed < 256,
            "N = {n}: {allowed} of 256 allowed"
        );
    }

    for (name, lookup) in [
        ("indexed", Lookup::Indexed),
        ("unindexed", Lookup::Unindexed),
    ] {
        let mut group = c.benchmark_group(format!("decide_call_{name}"));
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        if lookup == Lookup::Unindexed {
            group.sampling_mode(SamplingMode::Flat);
        }
        for (n, set) in &sets {
            let requests: Vec<CallRequest<'_>> =
                world.calls.iter().map(|call| world.request(call)).collect();
            group.bench_with_input(BenchmarkId::from_parameter(n), set, |b, set| {
                let mut next = 0;
                b.iter(|| {
                    next = (next + 1) % requests.len();
                    black_box(set.decide_call_with(black_box(&requests[next]), lookup))
                });
            });
        }
        group.finish();
    }
}

fn todo_world() -> CompiledSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/authzen/todo");
    CompiledSet::compile(PolicySource::from_dir(&dir).unwrap()).unwrap()
}

fn access(subject: &str, action: &str, kind: &str, id: &str, owner: Option<&str>) -> AccessRequest {
    let properties = owner.map(|o| {
        let mut p = serde_json::Map::new();
        p.insert("ownerID".into(), json!(o));
        p
    });
    AccessRequest {
        subject: Some(Target {
            kind: Some("user".into()),
            id: Some(subject.into()),
            properties: None,
        }),
        action: Some(ActionRef {
            name: Some(action.into()),
            properties: None,
        }),
        resource: Some(Target {
            kind: Some(kind.into()),
            id: Some(id.into()),
            properties,
        }),
        context: None,
    }
}

fn decide_access(c: &mut Criterion) {
    const RICK: &str = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    const JERRY: &str = "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    let set = todo_world();
    let requests = [
        access(RICK, "can_read_user", "user", MORTY, None),
        access(MORTY, "can_read_todos", "todo", "todo-1", None),
        access(
            MORTY,
            "can_update_todo",
            "todo",
            "todo-2",
            Some("morty@the-citadel.com"),
        ),
        access(
            JERRY,
            "can_delete_todo",
            "todo",
            "todo-3",
            Some("rick@the-citadel.com"),
        ),
        access(
            RICK,
            "can_delete_todo",
            "todo",
            "todo-3",
            Some("morty@the-citadel.com"),
        ),
        access(JERRY, "can_create_todo", "todo", "todo-4", None),
    ];
    let allowed: Vec<bool> = requests
        .iter()
        .map(|r| set.decide_access(r).allowed)
        .collect();
    assert_eq!(allowed, [true, true, true, false, true, false]);

    let mut group = c.benchmark_group("decide_access_todo");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (name, lookup) in [
        ("indexed", Lookup::Indexed),
        ("unindexed", Lookup::Unindexed),
    ] {
        group.bench_function(name, |b| {
            let mut next = 0;
            b.iter(|| {
                next = (next + 1) % requests.len();
                black_box(set.decide_access_with(black_box(&requests[next]), lookup))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decide_call, decide_access);
criterion_main!(benches);
