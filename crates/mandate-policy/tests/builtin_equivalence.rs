#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

//! The built-in policies answered natively on the call path (`src/builtin.rs`) decide
//! exactly as Cedar does on `builtin.cedar`: generated calls, reaching every built-in
//! policy on both sides of each boundary (seconds of the validity window, budgets at
//! and past their limits, the amount sum overflowing a Long, delegation depth, tiers
//! and tags, scope and argument constraints), each decided through the indexed path
//! (native built-ins beside Cedar on operator policies) and the unindexed one (Cedar
//! on every policy), with and without operator policies beside them — including one
//! that fails to evaluate and ones that name remedies. The whole decision must be
//! equal: the answer, the determining policies, the reason, the remedy, the errors.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use mandate_domain::{
    Agent, AgentCredentials, AgentStatus, ApprovalRules, ArgumentConstraint, Budgets, Mandate,
    MandateStatus, MandateTerms, Scope, Tool, ToolAnnotations, ToolGrant, ToolServer,
    ToolServerTransport,
};
use mandate_policy::{
    CallAction, CallRequest, CompiledSet, Decision, GrantAction, GrantRequest, Lookup,
    PolicySource, SourceFile,
};
use mandate_types::{
    AgentId, DataClass, HumanId, MandateMode, RiskTier, TenantId, ToolId, ToolServerId,
};
use serde_json::{Value, json};

/// A small deterministic generator (xorshift), so that every run checks the same calls.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()].clone()
    }
    fn subset<T: Clone + Ord>(&mut self, items: &[T]) -> BTreeSet<T> {
        items.iter().filter(|_| self.coin()).cloned().collect()
    }
    /// Values around the interesting points of a budget: small, and near Long's limit.
    fn budget_value(&mut self) -> u64 {
        match self.below(6) {
            0..=2 => self.below(4),
            3 => i64::MAX as u64 - self.below(3),
            4 => i64::MAX as u64 + self.below(3),
            _ => u64::MAX - self.below(2),
        }
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + Duration::milliseconds(500)
}

/// Around `now()`: whole seconds and fractions on both sides.
fn near(g: &mut Gen) -> DateTime<Utc> {
    let millis = i64::try_from(g.below(4_001)).unwrap() - 2_000;
    now() + Duration::milliseconds(millis)
}

const TAGS: [&str; 3] = ["financial", "pii", "bulk"];

struct Case {
    agent: Agent,
    mandate: Mandate,
    server: ToolServer,
    tool: Tool,
    chain: Vec<AgentId>,
    arguments: Option<Value>,
    action: CallAction,
    amount: u64,
    approved: bool,
    executing_proposal: bool,
    dpop_bound: bool,
    now: DateTime<Utc>,
}

fn case(g: &mut Gen) -> Case {
    let tenant = TenantId::generate();
    let agent = Agent {
        id: AgentId::generate(),
        tenant_id: tenant,
        name: "bot".into(),
        owner: HumanId::generate(),
        sponsors: Vec::new(),
        credentials: AgentCredentials::default(),
        labels: BTreeMap::from([("team".to_owned(), g.pick(&["a", "blocked"]).to_owned())]),
        status: AgentStatus::Active,
        created_at: now(),
    };
    let grantee = if g.below(4) == 0 {
        AgentId::generate()
    } else {
        agent.id
    };
    let mut chain: Vec<AgentId> = (0..g.below(4)).map(|_| AgentId::generate()).collect();
    if !chain.is_empty() && g.coin() {
        chain[0] = grantee;
    }
    let server = ToolServer {
        id: ToolServerId::generate(),
        tenant_id: tenant,
        name: "bank".into(),
        transport: ToolServerTransport::McpHttp {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        credential_ref: None,
        step_up: false,
        created_at: now(),
    };
    let tool = Tool {
        id: ToolId::generate(),
        tenant_id: tenant,
        server_id: server.id,
        name: g.pick(&["transfer", "balance", "other"]).into(),
        description: String::new(),
        input_schema: json!({}),
        annotations: ToolAnnotations::default(),
        risk_tier: g.pick(RiskTier::ALL),
        tags: g.subset(&TAGS).into_iter().map(str::to_owned).collect(),
        data_class: g.pick(DataClass::ALL),
        amount_argument: None,
        compensation: None,
        created_at: now(),
    };
    let constraint = ArgumentConstraint {
        max: g.coin().then_some(10),
        min: g.coin().then_some(2),
        one_of: g.coin().then(|| vec![json!(2), json!(5), json!(12)]),
    };
    let mut grants = vec![ToolGrant {
        tool: g
            .pick(&[
                "bank.transfer",
                "bank.balance",
                "bank.*",
                "bank.t*",
                "other.*",
            ])
            .into(),
        constraints: if g.coin() {
            BTreeMap::from([("n".to_owned(), constraint)])
        } else {
            BTreeMap::new()
        },
    }];
    if g.coin() {
        grants.push(ToolGrant {
            tool: g.pick(&["bank.transfer", "bank.*", "bank.other"]).into(),
            constraints: BTreeMap::new(),
        });
    }
    let terms = MandateTerms {
        agent_id: grantee,
        human_id: HumanId::generate(),
        intent: "a task".into(),
        purpose: g.coin().then(|| "travel".to_owned()),
        scope: Scope { tools: grants },
        data_ceiling: g.pick(DataClass::ALL),
        mode: g.pick(&[MandateMode::Execute, MandateMode::Recommend]),
        budgets: Budgets {
            max_calls: g.coin().then(|| g.budget_value()),
            max_amount: g.coin().then(|| g.budget_value()),
            currency: Some("EUR".into()),
        },
        approval: ApprovalRules {
            tiers: g.subset(RiskTier::ALL),
            tags: g.subset(&TAGS).into_iter().map(str::to_owned).collect(),
        },
        owners: BTreeSet::new(),
        not_before: g.coin().then(|| near(g)),
        expires_at: near(g),
        max_delegation_depth: u8::try_from(g.below(3)).unwrap(),
    };
    let mut mandate = Mandate::request(tenant, terms, "admin".into(), near(g));
    mandate.status = g.pick(&MandateStatus::ALL);
    if g.coin() {
        mandate.status = MandateStatus::Active;
    }
    mandate.usage.calls = g.budget_value();
    mandate.usage.amount = g.budget_value();
    let arguments = match g.below(4) {
        0 => None,
        1 => Some(json!({})),
        2 => Some(json!({ "n": g.below(14) })),
        _ => Some(json!({ "n": g.pick(&[json!(2.5), json!("5"), json!(-1), json!(null)]) })),
    };
    Case {
        agent,
        mandate,
        server,
        tool,
        chain,
        arguments,
        action: g.pick(&[
            CallAction::CallTool,
            CallAction::CallTool,
            CallAction::ListTools,
            CallAction::ReadResource,
            CallAction::GetPrompt,
        ]),
        amount: g.budget_value(),
        approved: g.coin(),
        executing_proposal: g.coin(),
        dpop_bound: g.coin(),
        now: near(g),
    }
}

fn request(c: &Case) -> CallRequest<'_> {
    CallRequest {
        action: c.action,
        agent: &c.agent,
        mandate: &c.mandate,
        tool: &c.tool,
        server: &c.server,
        arguments: c.arguments.as_ref(),
        amount: c.amount,
        approved: c.approved,
        executing_proposal: c.executing_proposal,
        rollback: false,
        delegation_chain: &c.chain,
        dpop_bound: c.dpop_bound,
        now: c.now,
    }
}

fn with_operator(text: &str) -> CompiledSet {
    CompiledSet::compile(PolicySource {
        policies: vec![SourceFile {
            name: "operator.cedar".into(),
            text: text.into(),
        }],
        ..PolicySource::default()
    })
    .unwrap()
}

/// Operator policies beside the built-ins: a remedy of each kind, a permit, one that
/// fails to evaluate (a Long overflow), one pinned to a tool by name, one on labels.
const OPERATOR: &str = r#"
@id("ops.write_needs_approval")
@reason("writes need approval here")
@remedy("approval")
forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource is Mandate::Tool)
when { resource.risk_tier == "write" && !context.approved };

@id("ops.bulk_is_recommend")
@remedy("recommend")
forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource is Mandate::Tool)
when { resource.tags.contains("bulk") && !context.executing_proposal };

@id("ops.overflow")
forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource)
when { context.amount + 9223372036854775000 < 0 };

@id("ops.blocked_team")
forbid (principal is Mandate::Agent, action, resource)
when { principal.labels.contains("team=blocked") };

@id("ops.transfer_only_bound")
forbid (principal is Mandate::Agent, action, resource is Mandate::Tool)
when { resource.name == "bank.transfer" && !context.dpop_bound };

@id("ops.permit_reads")
permit (principal is Mandate::Agent, action == Mandate::Action::"list_tools", resource);
"#;

#[test]
fn native_builtins_decide_as_cedar_does() {
    let sets = [
        ("built-ins", CompiledSet::builtin().unwrap()),
        ("with operator policies", with_operator(OPERATOR)),
    ];
    for (name, set) in &sets {
        assert!(
            set.answers_builtins_natively(),
            "{name}: Cedar decides the built-ins"
        );
    }
    assert!(!CompiledSet::empty().answers_builtins_natively());
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    // How often each policy determined a decision, and how often the answer was allow:
    // the generator must reach every one, or this test proves less than it says.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut allowed = 0usize;
    let mut errors = 0usize;
    let cases = 6_000;
    for i in 0..cases {
        let c = case(&mut g);
        let r = request(&c);
        for (name, set) in &sets {
            let indexed: Decision = set.decide_call_with(&r, Lookup::Indexed);
            let unindexed = set.decide_call_with(&r, Lookup::Unindexed);
            assert_eq!(
                indexed, unindexed,
                "case {i} ({name}): the native built-ins decided otherwise than Cedar"
            );
            for p in &indexed.policies {
                *seen.entry(p.clone()).or_default() += 1;
            }
            allowed += usize::from(indexed.allowed);
            errors += usize::from(!indexed.errors.is_empty());
        }
    }
    let builtins: Vec<String> = CompiledSet::builtin()
        .unwrap()
        .policies()
        .into_iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(builtins.len(), 13, "{builtins:?}");
    for id in builtins.iter().map(String::as_str).chain([
        "ops.write_needs_approval",
        "ops.bulk_is_recommend",
        "ops.blocked_team",
        "ops.transfer_only_bound",
        "ops.permit_reads",
    ]) {
        assert!(
            seen.get(id).copied().unwrap_or(0) >= 5,
            "{id} determined too few decisions: {seen:?}"
        );
    }
    assert!(allowed >= 50, "too few allowed: {allowed}");
    assert!(errors >= 20, "too few evaluation errors: {errors}");
}

#[test]
fn native_builtins_decide_token_requests_as_cedar_does() {
    let set = CompiledSet::builtin().unwrap();
    assert!(set.answers_builtins_natively());
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut allowed = 0usize;
    for i in 0..4_000 {
        let c = case(&mut g);
        let other = case(&mut g).agent;
        let action = match g.below(3) {
            0 => GrantAction::ExchangeToken,
            1 => GrantAction::Delegate { to: &other },
            _ => GrantAction::Delegate { to: &c.agent },
        };
        let grant = GrantRequest {
            action,
            agent: &c.agent,
            mandate: &c.mandate,
            delegation_chain: &c.chain,
            now: c.now,
        };
        let native = set.decide_grant_with(&grant, Lookup::Indexed);
        let cedar = set.decide_grant_with(&grant, Lookup::Unindexed);
        assert_eq!(
            native, cedar,
            "case {i}: the native built-ins decided otherwise than Cedar"
        );
        for p in &native.policies {
            *seen.entry(p.clone()).or_default() += 1;
        }
        allowed += usize::from(native.allowed);
    }
    for id in [
        "mandate.permit",
        "mandate.holder",
        "mandate.status",
        "mandate.window",
        "mandate.delegation_depth",
    ] {
        assert!(
            seen.get(id).copied().unwrap_or(0) >= 5,
            "{id} determined too few decisions: {seen:?}"
        );
    }
    assert!(allowed >= 50, "too few allowed: {allowed}");
}
