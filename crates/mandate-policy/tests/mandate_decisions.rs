#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

//! What a mandate allows, decided by the built-in policies: each limit denies with its
//! own policy id and reason, remedies are named, and anything that cannot be evaluated
//! denies.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use mandate_domain::{
    Agent, AgentCredentials, AgentStatus, ApprovalRules, ArgumentConstraint, Budgets, Mandate,
    MandateStatus, MandateTerms, Scope, Tool, ToolAnnotations, ToolGrant, ToolServer,
    ToolServerTransport,
};
use mandate_policy::{
    CallAction, CallRequest, Cause, CompiledSet, Decision, GrantAction, GrantRequest, Lookup,
    PolicySource, Remedy, SourceFile,
};
use mandate_types::{
    AgentId, DataClass, HumanId, MandateMode, RiskTier, TenantId, ToolId, ToolServerId,
};
use serde_json::{Value, json};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

struct World {
    agent: Agent,
    mandate: Mandate,
    server: ToolServer,
    tools: BTreeMap<&'static str, Tool>,
}

fn tool(server: &ToolServer, name: &str, tier: RiskTier, class: DataClass, tags: &[&str]) -> Tool {
    Tool {
        id: ToolId::generate(),
        tenant_id: server.tenant_id,
        server_id: server.id,
        name: name.into(),
        description: String::new(),
        input_schema: json!({}),
        annotations: ToolAnnotations::default(),
        risk_tier: tier,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        data_class: class,
        amount_argument: None,
        compensation: None,
        created_at: now(),
    }
}

fn world() -> World {
    let tenant = TenantId::generate();
    let agent = Agent {
        id: AgentId::generate(),
        tenant_id: tenant,
        name: "travel-bot".into(),
        owner: HumanId::generate(),
        sponsors: Vec::new(),
        credentials: AgentCredentials::default(),
        labels: BTreeMap::from([("team".to_owned(), "travel".to_owned())]),
        status: AgentStatus::Active,
        created_at: now(),
    };
    let terms = MandateTerms {
        agent_id: agent.id,
        human_id: HumanId::generate(),
        intent: "book my Lisbon trip".into(),
        purpose: Some("travel".into()),
        scope: Scope {
            tools: vec![
                ToolGrant {
                    tool: "flights.book".into(),
                    constraints: BTreeMap::from([
                        (
                            "amount".to_owned(),
                            ArgumentConstraint {
                                max: Some(150_000),
                                ..Default::default()
                            },
                        ),
                        (
                            "to".to_owned(),
                            ArgumentConstraint {
                                one_of: Some(vec![json!("LIS"), json!("OPO")]),
                                ..Default::default()
                            },
                        ),
                    ]),
                },
                ToolGrant {
                    tool: "flights.search*".into(),
                    constraints: BTreeMap::new(),
                },
                ToolGrant {
                    tool: "flights.secrets".into(),
                    constraints: BTreeMap::new(),
                },
                ToolGrant {
                    tool: "flights.refund".into(),
                    constraints: BTreeMap::new(),
                },
            ],
        },
        data_ceiling: DataClass::Internal,
        mode: MandateMode::Execute,
        budgets: Budgets {
            max_calls: Some(20),
            max_amount: Some(150_000),
            currency: Some("EUR".into()),
        },
        approval: ApprovalRules {
            tiers: BTreeSet::from([RiskTier::HighImpact]),
            tags: BTreeSet::from(["financial".to_owned()]),
        },
        owners: BTreeSet::new(),
        not_before: None,
        expires_at: now() + Duration::days(4),
        max_delegation_depth: 1,
    };
    let mut mandate = Mandate::request(tenant, terms, "admin".into(), now() - Duration::hours(1));
    mandate.status = MandateStatus::Active;
    let server = ToolServer {
        id: ToolServerId::generate(),
        tenant_id: tenant,
        name: "flights".into(),
        transport: ToolServerTransport::McpHttp {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        credential_ref: None,
        step_up: false,
        created_at: now(),
    };
    let tools = BTreeMap::from([
        (
            "book",
            tool(&server, "book", RiskTier::Write, DataClass::Internal, &[]),
        ),
        (
            "search",
            tool(&server, "search", RiskTier::Read, DataClass::Public, &[]),
        ),
        (
            "search_fares",
            tool(
                &server,
                "search_fares",
                RiskTier::Read,
                DataClass::Public,
                &[],
            ),
        ),
        (
            "secrets",
            tool(
                &server,
                "secrets",
                RiskTier::Read,
                DataClass::Restricted,
                &[],
            ),
        ),
        (
            "refund",
            tool(
                &server,
                "refund",
                RiskTier::HighImpact,
                DataClass::Internal,
                &[],
            ),
        ),
        (
            "cancel",
            tool(&server, "cancel", RiskTier::Write, DataClass::Internal, &[]),
        ),
    ]);
    World {
        agent,
        mandate,
        server,
        tools,
    }
}

fn call<'a>(w: &'a World, tool: &str, args: &'a Value) -> CallRequest<'a> {
    CallRequest {
        action: CallAction::CallTool,
        agent: &w.agent,
        mandate: &w.mandate,
        tool: &w.tools[tool],
        server: &w.server,
        arguments: Some(args),
        amount: 0,
        approved: false,
        executing_proposal: false,
        rollback: false,
        delegation_chain: &[],
        dpop_bound: true,
        now: now(),
    }
}

/// Decides both ways and checks the index agrees with evaluating everything.
fn decide(set: &CompiledSet, request: &CallRequest<'_>) -> Decision {
    let indexed = set.decide_call_with(request, Lookup::Indexed);
    let unindexed = set.decide_call_with(request, Lookup::Unindexed);
    assert_eq!(indexed, unindexed, "the index changed a decision");
    indexed
}

#[track_caller]
fn denied_by(d: &Decision, policy: &str) {
    assert!(!d.allowed, "{d:?}");
    assert!(
        d.policies.iter().any(|p| p == policy),
        "expected {policy}: {d:?}"
    );
    assert!(!d.reason.is_empty());
}

fn builtin() -> CompiledSet {
    CompiledSet::builtin().unwrap()
}

fn good_booking() -> Value {
    json!({ "to": "LIS", "amount": 40_000 })
}

#[test]
fn a_call_inside_an_active_mandate_is_allowed_and_names_the_permit() {
    let w = world();
    let args = good_booking();
    let d = decide(&builtin(), &call(&w, "book", &args));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, ["mandate.permit"]);
    assert!(d.reason.contains("mandate"), "{d:?}");
}

#[test]
fn scope_by_name_and_by_pattern() {
    let w = world();
    let none = json!({});
    assert!(decide(&builtin(), &call(&w, "search", &none)).allowed);
    assert!(decide(&builtin(), &call(&w, "search_fares", &none)).allowed);
    let d = decide(&builtin(), &call(&w, "cancel", &none));
    denied_by(&d, "mandate.scope");
    assert_eq!(d.remedy, None);
}

#[test]
fn argument_constraints_bind_and_missing_arguments_fail_closed() {
    let w = world();
    let set = builtin();
    for args in [
        json!({ "to": "JFK", "amount": 40_000 }),
        json!({ "to": "LIS", "amount": 150_001 }),
        json!({ "to": "LIS", "amount": 150_000.5 }),
        json!({ "to": "LIS", "amount": "40000" }),
        json!({ "to": "LIS" }),
        json!({}),
        json!("not an object"),
    ] {
        denied_by(&decide(&set, &call(&w, "book", &args)), "mandate.arguments");
    }
    assert!(
        decide(
            &set,
            &call(&w, "book", &json!({ "to": "OPO", "amount": 150_000 }))
        )
        .allowed
    );
}

#[test]
fn the_data_ceiling_holds() {
    let w = world();
    denied_by(
        &decide(&builtin(), &call(&w, "secrets", &json!({}))),
        "mandate.data_ceiling",
    );
}

#[test]
fn a_mandate_that_is_not_active_or_not_the_callers_allows_nothing() {
    let set = builtin();
    let args = good_booking();
    for status in [
        MandateStatus::Requested,
        MandateStatus::Completed,
        MandateStatus::Revoked,
        MandateStatus::Expired,
        MandateStatus::Denied,
    ] {
        let mut w = world();
        w.mandate.status = status;
        denied_by(&decide(&set, &call(&w, "book", &args)), "mandate.status");
    }
    let mut w = world();
    w.agent.id = AgentId::generate();
    denied_by(&decide(&set, &call(&w, "book", &args)), "mandate.holder");

    let w = world();
    let mut late = call(&w, "book", &args);
    late.now = w.mandate.terms.expires_at;
    denied_by(&decide(&set, &late), "mandate.window");
    let mut early = call(&w, "book", &args);
    early.now = w.mandate.created_at - Duration::seconds(1);
    denied_by(&decide(&set, &early), "mandate.window");
}

#[test]
fn budgets_are_enforced() {
    let set = builtin();
    let args = good_booking();
    let mut w = world();
    w.mandate.usage.calls = 20;
    let spent = decide(&set, &call(&w, "book", &args));
    denied_by(&spent, "mandate.budget.calls");
    assert_eq!(spent.cause, Cause::OverBudget, "{spent:?}");

    let mut w = world();
    w.mandate.usage.amount = 100_000;
    let mut spend = call(&w, "book", &args);
    spend.amount = 50_000;
    assert!(decide(&set, &spend).allowed);
    spend.amount = 50_001;
    let over = decide(&set, &spend);
    denied_by(&over, "mandate.budget.amount");
    assert_eq!(over.cause, Cause::OverBudget, "{over:?}");
    // Spent, and also outside the mandate: the scope decides what the caller learns.
    let mut outside = call(&w, "cancel", &args);
    outside.amount = 50_001;
    let both = decide(&set, &outside);
    assert_eq!(both.cause, Cause::OutOfScope, "{both:?}");
}

#[test]
fn high_impact_needs_approval_and_says_so() {
    let w = world();
    let none = json!({});
    let d = decide(&builtin(), &call(&w, "refund", &none));
    denied_by(&d, "mandate.approval.tier");
    assert_eq!(d.remedy, Some(Remedy::Approval));
    let mut approved = call(&w, "refund", &none);
    approved.approved = true;
    assert!(decide(&builtin(), &approved).allowed);
}

#[test]
fn tagged_tools_need_approval() {
    let mut w = world();
    w.tools
        .get_mut("book")
        .unwrap()
        .tags
        .insert("financial".into());
    let args = good_booking();
    let d = decide(&builtin(), &call(&w, "book", &args));
    denied_by(&d, "mandate.approval.tag");
    assert_eq!(d.remedy, Some(Remedy::Approval));
}

#[test]
fn recommend_mode_turns_calls_into_proposals() {
    let mut w = world();
    w.mandate.terms.mode = MandateMode::Recommend;
    let args = good_booking();
    let d = decide(&builtin(), &call(&w, "book", &args));
    denied_by(&d, "mandate.recommend");
    assert_eq!(d.remedy, Some(Remedy::Recommend));
    // A proposal settles the approval too.
    let d = decide(&builtin(), &call(&w, "refund", &json!({})));
    assert_eq!(d.remedy, Some(Remedy::Recommend), "{d:?}");
    let mut executing = call(&w, "book", &args);
    executing.executing_proposal = true;
    assert!(decide(&builtin(), &executing).allowed);
}

#[test]
fn a_deny_with_no_remedy_is_not_liftable_by_one() {
    // Out of scope and needing approval: an approval would not help.
    let mut w = world();
    w.tools.get_mut("cancel").unwrap().risk_tier = RiskTier::HighImpact;
    let d = decide(&builtin(), &call(&w, "cancel", &json!({})));
    assert!(!d.allowed);
    assert_eq!(d.remedy, None, "{d:?}");
}

#[test]
fn delegation_depth_is_bounded() {
    let w = world();
    let args = good_booking();
    // A delegate of the grantee, one hop down: allowed; two hops: beyond the bound.
    let mut delegate = w.agent.clone();
    delegate.id = AgentId::generate();
    let grantee = w.agent.id;
    let middle = AgentId::generate();
    let one = [grantee];
    let two = [grantee, middle];
    let mut hop = call(&w, "book", &args);
    hop.agent = &delegate;
    hop.delegation_chain = &one;
    assert!(decide(&builtin(), &hop).allowed);
    hop.delegation_chain = &two;
    denied_by(&decide(&builtin(), &hop), "mandate.delegation_depth");
    // Without the grantee up its chain, the delegate holds nothing.
    let stranger = [middle];
    hop.delegation_chain = &stranger;
    denied_by(&decide(&builtin(), &hop), "mandate.holder");
    hop.delegation_chain = &[];
    denied_by(&decide(&builtin(), &hop), "mandate.holder");
}

#[test]
fn token_service_decisions() {
    let w = world();
    let set = builtin();
    let ask = |agent, chain, action| GrantRequest {
        action,
        agent,
        mandate: &w.mandate,
        delegation_chain: chain,
        now: now(),
    };
    assert!(
        set.decide_grant(&ask(&w.agent, &[], GrantAction::ExchangeToken))
            .allowed
    );
    let mut other = w.agent.clone();
    other.id = AgentId::generate();
    denied_by(
        &set.decide_grant(&ask(&other, &[], GrantAction::ExchangeToken)),
        "mandate.holder",
    );
    // The grantee may delegate to `other` (depth 1 = the bound) …
    let to_other = GrantAction::Delegate { to: &other };
    assert!(set.decide_grant(&ask(&w.agent, &[], to_other)).allowed);
    let grantee = [w.agent.id];
    assert!(
        set.decide_grant(&ask(&other, &grantee, GrantAction::ExchangeToken))
            .allowed
    );
    // … but `other` may not hand it on again (depth 2).
    let third = w.agent.clone();
    let to_third = GrantAction::Delegate { to: &third };
    denied_by(
        &set.decide_grant(&ask(&other, &grantee, to_third)),
        "mandate.delegation_depth",
    );
    // Nothing is granted under a mandate that is not active, or past its window.
    let mut ended = w.mandate.clone();
    ended.status = MandateStatus::Completed;
    let d = set.decide_grant(&GrantRequest {
        mandate: &ended,
        ..ask(&w.agent, &[], GrantAction::ExchangeToken)
    });
    denied_by(&d, "mandate.status");
    let late = GrantRequest {
        now: w.mandate.terms.expires_at,
        ..ask(&w.agent, &[], GrantAction::ExchangeToken)
    };
    denied_by(&set.decide_grant(&late), "mandate.window");
}

#[test]
fn listing_ignores_arguments_but_not_scope() {
    let w = world();
    let mut list = call(&w, "book", &Value::Null);
    list.action = CallAction::ListTools;
    list.arguments = None;
    assert!(decide(&builtin(), &list).allowed);
    let mut list = call(&w, "cancel", &Value::Null);
    list.action = CallAction::ListTools;
    list.arguments = None;
    denied_by(&decide(&builtin(), &list), "mandate.scope");
}

fn with_operator(policies: &str) -> CompiledSet {
    CompiledSet::compile(PolicySource {
        policies: vec![SourceFile {
            name: "ops.cedar".into(),
            text: policies.into(),
        }],
        ..PolicySource::default()
    })
    .unwrap()
}

#[test]
fn operator_policies_narrow_and_name_themselves() {
    let set = with_operator(
        r#"@id("no-night-bookings") @reason("no bookings above 1000 EUR on this desk")
           forbid (principal, action == Mandate::Action::"call_tool", resource == Mandate::Tool::"flights.book")
           when { context.amount > 100000 };"#,
    );
    let w = world();
    let args = good_booking();
    let mut big = call(&w, "book", &args);
    big.amount = 100_001;
    let d = decide(&set, &big);
    denied_by(&d, "no-night-bookings");
    assert!(d.reason.contains("1000 EUR"), "{d:?}");
    big.amount = 100;
    assert!(decide(&set, &big).allowed);
}

#[test]
fn an_operator_permit_cannot_widen_a_mandate() {
    let set = with_operator(r#"permit (principal, action, resource);"#);
    let w = world();
    denied_by(
        &decide(&set, &call(&w, "cancel", &json!({}))),
        "mandate.scope",
    );
}

#[test]
fn a_forbid_that_fails_to_evaluate_denies() {
    // The multiplication overflows for any amount above 1: evaluating it fails, and a
    // failing forbid denies.
    let set = with_operator(
        r#"@id("owner-domain") forbid (principal is Mandate::Agent, action == Mandate::Action::"call_tool", resource)
           when { context.amount * 4611686018427387904 > 1 };"#,
    );
    let w = world();
    let args = good_booking();
    let mut overflowing = call(&w, "book", &args);
    overflowing.amount = 4;
    let d = decide(&set, &overflowing);
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.policies, ["owner-domain"]);
    assert!(!d.errors.is_empty(), "{d:?}");
    assert!(d.reason.contains("could not be evaluated"), "{d:?}");
    assert_eq!(d.remedy, None);
}

#[test]
fn a_permit_that_fails_to_evaluate_grants_nothing() {
    let set = with_operator(
        r#"@id("open-door") permit (principal, action == Mandate::Action::"call_tool", resource) when { context.amount * 4611686018427387904 > 1 };"#,
    );
    let w = world();
    // Out of scope: only the failing permit could allow it, and it does not.
    let none = json!({});
    let mut overflowing = call(&w, "cancel", &none);
    overflowing.amount = 4;
    let d = decide(&set, &overflowing);
    assert!(!d.allowed);
    assert!(!d.errors.is_empty(), "{d:?}");
}

#[test]
fn a_set_that_fails_to_load_leaves_nothing_allowed_that_was_denied() {
    // Compiling fails: the caller keeps the set it had (see policy_sets.rs) — and a set
    // that was never loaded permits nothing.
    assert!(
        CompiledSet::compile(PolicySource {
            policies: vec![SourceFile {
                name: "bad.cedar".into(),
                text: "forbid (".into()
            }],
            ..PolicySource::default()
        })
        .is_err()
    );
    let empty = CompiledSet::empty();
    let w = world();
    let args = good_booking();
    let d = empty.decide_call(&call(&w, "book", &args));
    assert!(!d.allowed, "{d:?}");
}

#[test]
fn policies_pinned_by_tool_name_in_their_conditions_apply_to_that_tool_only() {
    let set = with_operator(
        r#"@id("big-bookings") forbid (principal, action == Mandate::Action::"call_tool", resource is Mandate::Tool)
           when { resource.name == "flights.book" && context.amount > 100000 };"#,
    );
    let w = world();
    let args = good_booking();
    let mut big = call(&w, "book", &args);
    big.amount = 100_001;
    denied_by(&decide(&set, &big), "big-bookings");
    let none = json!({});
    let mut search = call(&w, "search", &none);
    search.amount = 100_001;
    assert!(decide(&set, &search).allowed);
}

#[test]
fn the_cause_of_a_decision_is_typed() {
    let w = world();
    let set = builtin();
    let none = json!({});
    let allowed = decide(&set, &call(&w, "search", &none));
    assert_eq!(allowed.cause, Cause::Permitted);
    assert!(!allowed.hides_tool());

    let out = decide(&set, &call(&w, "cancel", &none));
    assert_eq!(out.cause, Cause::OutOfScope, "{out:?}");
    assert!(out.hides_tool());

    let args = json!({ "to": "JFK", "amount": 40_000 });
    let forbidden = decide(&set, &call(&w, "book", &args));
    denied_by(&forbidden, "mandate.arguments");
    assert_eq!(forbidden.cause, Cause::Forbidden);
    assert!(!forbidden.hides_tool());

    // Out of scope and also over the ceiling: still hidden.
    let mut narrow = world();
    narrow
        .mandate
        .terms
        .scope
        .tools
        .retain(|g| g.tool != "flights.secrets");
    let both = decide(&set, &call(&narrow, "secrets", &none));
    denied_by(&both, "mandate.data_ceiling");
    assert_eq!(both.cause, Cause::OutOfScope, "{both:?}");

    let nothing = CompiledSet::empty().decide_call(&call(&w, "search", &none));
    assert!(!nothing.allowed);
    assert_eq!(nothing.cause, Cause::NotPermitted);

    assert_eq!(Decision::refused("no").cause, Cause::Refused);
}

/// Decides with `set` (whose entity cache has seen other versions of the same ids)
/// and with a fresh set (no cache), which must agree.
#[track_caller]
fn decide_cached(
    set: &CompiledSet,
    fresh: impl Fn() -> CompiledSet,
    r: &CallRequest<'_>,
) -> Decision {
    let cached = decide(set, r);
    assert_eq!(
        cached,
        fresh().decide_call(r),
        "the cache changed a decision"
    );
    cached
}

#[test]
fn the_entity_cache_never_serves_entities_for_changed_inputs() {
    let source = PolicySource {
        policies: vec![SourceFile {
            name: "labels.cedar".into(),
            text: r#"@reason("blocked team")
forbid (principal is Mandate::Agent, action, resource)
when { principal.labels.contains("team=blocked") };"#
                .into(),
        }],
        ..PolicySource::default()
    };
    let fresh = || CompiledSet::compile(source.clone()).unwrap();
    let set = fresh();
    let args = good_booking();
    let mut w = world();
    assert!(decide_cached(&set, fresh, &call(&w, "book", &args)).allowed);

    // The same mandate id, a new version: revoked.
    w.mandate.status = MandateStatus::Revoked;
    w.mandate.version += 1;
    denied_by(
        &decide_cached(&set, fresh, &call(&w, "book", &args)),
        "mandate.status",
    );
    w.mandate.status = MandateStatus::Active;
    assert!(decide_cached(&set, fresh, &call(&w, "book", &args)).allowed);

    // The same id and version with other terms (the cache must not trust versions).
    let saved = w.mandate.terms.clone();
    w.mandate
        .terms
        .scope
        .tools
        .retain(|g| g.tool != "flights.book");
    let out = decide_cached(&set, fresh, &call(&w, "book", &args));
    assert_eq!(out.cause, Cause::OutOfScope, "{out:?}");
    w.mandate.terms.data_ceiling = DataClass::Public;
    w.mandate.terms.scope = saved.scope.clone();
    denied_by(
        &decide_cached(&set, fresh, &call(&w, "book", &args)),
        "mandate.data_ceiling",
    );
    w.mandate.terms = saved;
    assert!(decide_cached(&set, fresh, &call(&w, "book", &args)).allowed);

    // The same tool id with a raised tier needs an approval.
    w.tools.get_mut("book").unwrap().risk_tier = RiskTier::HighImpact;
    let held = decide_cached(&set, fresh, &call(&w, "book", &args));
    denied_by(&held, "mandate.approval.tier");
    assert_eq!(held.remedy, Some(Remedy::Approval));
    w.tools.get_mut("book").unwrap().risk_tier = RiskTier::Write;

    // The same agent id with a new label.
    w.agent.labels.insert("team".into(), "blocked".into());
    assert!(!decide_cached(&set, fresh, &call(&w, "book", &args)).allowed);
    w.agent.labels.insert("team".into(), "travel".into());
    assert!(decide_cached(&set, fresh, &call(&w, "book", &args)).allowed);

    // Hostile input under cached ids: a mandate granted to someone else, a garbled
    // tool and server name. Each denies.
    w.mandate.terms.agent_id = AgentId::generate();
    denied_by(
        &decide_cached(&set, fresh, &call(&w, "book", &args)),
        "mandate.holder",
    );
    w.mandate.terms.agent_id = w.agent.id;
    w.tools.get_mut("book").unwrap().name = "book\"); permit(principal,action,resource".into();
    w.server.name = "flights.*\n".into();
    let garbled = decide_cached(&set, fresh, &call(&w, "book", &args));
    assert!(!garbled.allowed, "{garbled:?}");
    assert_eq!(garbled.cause, Cause::OutOfScope);
}

#[test]
fn the_entity_cache_is_safe_to_share_between_threads() {
    let set = builtin();
    let args = good_booking();
    let active = world();
    let mut revoked = World {
        agent: active.agent.clone(),
        mandate: active.mandate.clone(),
        server: active.server.clone(),
        tools: active.tools.clone(),
    };
    revoked.mandate.status = MandateStatus::Revoked;
    std::thread::scope(|s| {
        for t in 0..4 {
            let (set, args, active, revoked) = (&set, &args, &active, &revoked);
            s.spawn(move || {
                for i in 0..200 {
                    let w = if (i + t) % 2 == 0 { active } else { revoked };
                    let d = set.decide_call(&call(w, "book", args));
                    assert_eq!(d.allowed, std::ptr::eq(w, active), "{d:?}");
                }
            });
        }
    });
}

#[test]
fn approval_for_irreversible_calls_only_and_rollbacks_seen_as_such() {
    let set = with_operator(
        r#"@id("approve-irreversible") @remedy("approval")
           forbid (principal, action == Mandate::Action::"call_tool", resource)
           unless { context.reversible || context.approved };
           @id("no-rollback-of-bookings")
           forbid (principal, action == Mandate::Action::"call_tool", resource == Mandate::Tool::"flights.book")
           when { context.rollback && context.amount > 100 };"#,
    );
    let mut w = world();
    let args = good_booking();
    // No compensation declared: irreversible, so held for a human.
    let d = decide(&set, &call(&w, "book", &args));
    denied_by(&d, "approve-irreversible");
    assert_eq!(d.remedy, Some(Remedy::Approval));
    // Declared: reversible, so allowed without approval.
    if let Some(book) = w.tools.get_mut("book") {
        book.compensation = Some(
            serde_json::from_value(json!({
                "tool": "flights.cancel",
                "arguments": {"booking": {"result": "/structuredContent/id"}}
            }))
            .unwrap(),
        );
    }
    assert!(decide(&set, &call(&w, "book", &args)).allowed);
    // The same call as a rollback's compensation meets the rollback rule.
    let mut rollback = call(&w, "book", &args);
    rollback.rollback = true;
    rollback.amount = 200;
    denied_by(&decide(&set, &rollback), "no-rollback-of-bookings");
    rollback.amount = 50;
    assert!(decide(&set, &rollback).allowed);
}
