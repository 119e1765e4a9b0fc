use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn terms(owners: &[HumanId]) -> MandateTerms {
    MandateTerms {
        agent_id: AgentId::generate(),
        human_id: HumanId::generate(),
        intent: "book my Lisbon trip".into(),
        purpose: Some("travel".into()),
        scope: Scope {
            tools: vec![ToolGrant {
                tool: "flights.*".into(),
                constraints: BTreeMap::from([(
                    "amount".to_owned(),
                    ArgumentConstraint {
                        max: Some(150_000),
                        ..Default::default()
                    },
                )]),
            }],
        },
        data_ceiling: DataClass::Internal,
        mode: MandateMode::Execute,
        budgets: Budgets {
            max_calls: Some(20),
            max_amount: Some(150_000),
            currency: Some("EUR".into()),
        },
        approval: ApprovalRules::default(),
        owners: owners.iter().copied().collect(),
        not_before: None,
        expires_at: now() + Duration::days(4),
        max_delegation_depth: 1,
    }
}

fn consent(m: &Mandate, who: HumanId, decision: ConsentDecision) -> Consent {
    Consent {
        id: ConsentId::generate(),
        tenant_id: m.tenant_id,
        mandate_id: m.id,
        human_id: who,
        decision,
        terms_hash: m.terms_hash.clone(),
        channel: ConsentChannel::Api,
        comment: None,
        decided_at: now(),
    }
}

fn mandate_in(status: MandateStatus) -> Mandate {
    let mut m = Mandate::request(TenantId::generate(), terms(&[]), "admin".into(), now());
    m.status = status;
    m
}

#[test]
fn grantor_consent_activates_a_mandate_without_owners() {
    let mut m = Mandate::request(TenantId::generate(), terms(&[]), "admin".into(), now());
    let c = consent(&m, m.terms.human_id, ConsentDecision::Granted);
    m.apply(
        MandateEvent::Consent {
            consent: &c,
            prior: &[],
        },
        now(),
    )
    .unwrap();
    assert_eq!(m.status, MandateStatus::Active);
    assert_eq!(m.activated_at, Some(now()));
}

#[test]
fn every_owner_must_consent_before_activation() {
    let (o1, o2) = (HumanId::generate(), HumanId::generate());
    let mut m = Mandate::request(
        TenantId::generate(),
        terms(&[o1, o2]),
        "admin".into(),
        now(),
    );
    let mut prior = Vec::new();
    for who in [m.terms.human_id, o1] {
        let c = consent(&m, who, ConsentDecision::Granted);
        m.apply(
            MandateEvent::Consent {
                consent: &c,
                prior: &prior,
            },
            now(),
        )
        .unwrap();
        assert_eq!(m.status, MandateStatus::Requested, "still waiting for {o2}");
        prior.push(c);
    }
    let c = consent(&m, o2, ConsentDecision::Granted);
    m.apply(
        MandateEvent::Consent {
            consent: &c,
            prior: &prior,
        },
        now(),
    )
    .unwrap();
    assert_eq!(m.status, MandateStatus::Active);
}

#[test]
fn any_denial_denies_the_mandate() {
    let o1 = HumanId::generate();
    let mut m = Mandate::request(TenantId::generate(), terms(&[o1]), "admin".into(), now());
    let granted = consent(&m, m.terms.human_id, ConsentDecision::Granted);
    m.apply(
        MandateEvent::Consent {
            consent: &granted,
            prior: &[],
        },
        now(),
    )
    .unwrap();
    let denied = consent(&m, o1, ConsentDecision::Denied);
    m.apply(
        MandateEvent::Consent {
            consent: &denied,
            prior: std::slice::from_ref(&granted),
        },
        now(),
    )
    .unwrap();
    assert_eq!(m.status, MandateStatus::Denied);
    assert!(m.ended_at.is_some());
}

#[test]
fn consent_errors_leave_the_mandate_unchanged() {
    let mut m = Mandate::request(TenantId::generate(), terms(&[]), "admin".into(), now());
    let before = m.clone();

    let stranger = consent(&m, HumanId::generate(), ConsentDecision::Granted);
    let err = m.apply(
        MandateEvent::Consent {
            consent: &stranger,
            prior: &[],
        },
        now(),
    );
    assert!(matches!(err, Err(LifecycleError::NotAConsenter(_))));

    let mut stale = consent(&m, m.terms.human_id, ConsentDecision::Granted);
    stale.terms_hash = TermsHash("sha256:00".into());
    let err = m.apply(
        MandateEvent::Consent {
            consent: &stale,
            prior: &[],
        },
        now(),
    );
    assert!(matches!(err, Err(LifecycleError::TermsChanged { .. })));

    let first = consent(&m, m.terms.human_id, ConsentDecision::Denied);
    let again = consent(&m, m.terms.human_id, ConsentDecision::Granted);
    let err = m.apply(
        MandateEvent::Consent {
            consent: &again,
            prior: std::slice::from_ref(&first),
        },
        now(),
    );
    assert!(matches!(err, Err(LifecycleError::AlreadyAnswered(_))));
    assert_eq!(m, before);
}

#[test]
fn terms_changed_under_a_consent_are_caught() {
    let mut m = Mandate::request(TenantId::generate(), terms(&[]), "admin".into(), now());
    let c = consent(&m, m.terms.human_id, ConsentDecision::Granted);
    // Someone widens the scope behind the stored hash's back.
    m.terms.budgets.max_calls = Some(1_000_000);
    let err = m.apply(
        MandateEvent::Consent {
            consent: &c,
            prior: &[],
        },
        now(),
    );
    assert!(
        matches!(err, Err(LifecycleError::TermsChanged { .. })),
        "{err:?}"
    );
    assert_eq!(m.status, MandateStatus::Requested);
}

#[test]
fn the_transition_table_is_exactly_the_lifecycle() {
    use MandateStatus::*;
    let later = now() + Duration::days(5);
    for from in MandateStatus::ALL {
        let m0 = mandate_in(from);
        let c = consent(&m0, m0.terms.human_id, ConsentDecision::Granted);
        let cases: [(MandateEvent<'_>, Option<MandateStatus>); 4] = [
            (
                MandateEvent::Consent {
                    consent: &c,
                    prior: &[],
                },
                (from == Requested).then_some(Active),
            ),
            (
                MandateEvent::Complete { reason: None },
                (from == Active).then_some(Completed),
            ),
            (
                MandateEvent::Revoke {
                    reason: Some("gone"),
                },
                (from == Active).then_some(Revoked),
            ),
            (
                MandateEvent::Expire,
                matches!(from, Requested | Active).then_some(Expired),
            ),
        ];
        for (event, expected) in cases {
            let mut m = m0.clone();
            let result = m.apply(event, later);
            match expected {
                Some(to) => {
                    assert!(
                        result.is_ok(),
                        "{from} --{}--> {to}: {result:?}",
                        event.name()
                    );
                    assert_eq!(m.status, to);
                }
                None => {
                    assert_eq!(
                        result,
                        Err(LifecycleError::Illegal {
                            from,
                            event: event.name()
                        }),
                        "{from} --{}--> must be illegal",
                        event.name()
                    );
                    assert_eq!(m, m0, "an illegal transition changes nothing");
                }
            }
        }
    }
}

#[test]
fn expiry_is_not_accepted_early() {
    let mut m = mandate_in(MandateStatus::Active);
    assert!(matches!(
        m.apply(MandateEvent::Expire, now()),
        Err(LifecycleError::NotDue(_))
    ));
    assert!(!m.is_due_to_expire(now()));
    assert!(m.is_due_to_expire(m.terms.expires_at));
}

#[test]
fn the_terms_hash_is_canonical() {
    let t = terms(&[]);
    let reparsed: MandateTerms = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
    assert_eq!(t.hash(), reparsed.hash());
    assert!(t.hash().0.starts_with("sha256:"));
    assert_eq!(t.hash().0.len(), 7 + 64);
    let mut wider = t.clone();
    wider.data_ceiling = DataClass::Restricted;
    assert_ne!(t.hash(), wider.hash());
}

type Mutation = Box<dyn Fn(&mut MandateTerms)>;

#[test]
fn terms_validation_rejects_bad_terms_with_the_field_named() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("intent", Box::new(|t| t.intent = "   ".into())),
        ("intent", Box::new(|t| t.intent = "x".repeat(2_001))),
        (
            "purpose",
            Box::new(|t| t.purpose = Some("has space".into())),
        ),
        ("scope.tools", Box::new(|t| t.scope.tools.clear())),
        (
            "scope.tools[0].tool",
            Box::new(|t| t.scope.tools[0].tool = "a*b".into()),
        ),
        (
            "scope.tools[0].tool",
            Box::new(|t| t.scope.tools[0].tool = "rm -rf".into()),
        ),
        (
            "scope.tools[0].tool",
            Box::new(|t| t.scope.tools[0].tool = "**".into()),
        ),
        (
            "scope.tools[0].constraints.amount",
            Box::new(|t| {
                t.scope.tools[0]
                    .constraints
                    .insert("amount".into(), ArgumentConstraint::default());
            }),
        ),
        (
            "scope.tools[0].constraints.amount",
            Box::new(|t| {
                t.scope.tools[0].constraints.insert(
                    "amount".into(),
                    ArgumentConstraint {
                        min: Some(5),
                        max: Some(1),
                        one_of: None,
                    },
                );
            }),
        ),
        (
            "budgets.currency",
            Box::new(|t| t.budgets.currency = Some("euro".into())),
        ),
        ("budgets.currency", Box::new(|t| t.budgets.currency = None)),
        (
            "approval.tags",
            Box::new(|t| {
                t.approval.tags.insert("bad tag".into());
            }),
        ),
        ("expires_at", Box::new(|t| t.expires_at = now())),
        (
            "expires_at",
            Box::new(|t| t.expires_at = now() + Duration::days(91)),
        ),
        (
            "not_before",
            Box::new(|t| t.not_before = Some(t.expires_at)),
        ),
        (
            "max_delegation_depth",
            Box::new(|t| t.max_delegation_depth = 9),
        ),
    ];
    for (field, mutate) in cases {
        let mut t = terms(&[]);
        mutate(&mut t);
        let TermsError::Invalid { field: got, .. } = t.validated(now()).unwrap_err();
        assert_eq!(got, field);
    }
    let mut t = terms(&[]);
    t.owners.insert(t.human_id);
    let t = t.validated(now()).unwrap();
    assert!(t.owners.is_empty(), "the grantor is not also an owner");
}

#[test]
fn unknown_fields_in_terms_are_rejected() {
    let mut v = serde_json::to_value(terms(&[])).unwrap();
    v["superuser"] = json!(true);
    assert!(serde_json::from_value::<MandateTerms>(v).is_err());
}

#[test]
fn one_scope_rule_for_names_and_patterns() {
    assert!(scope_covers("bank.get_balance", "bank.get_balance"));
    assert!(!scope_covers("bank.get_balance", "bank.get_balance2"));
    assert!(!scope_covers("bank.get_balance", "bank.get_balanc"));
    assert!(scope_covers("files.*", "files.delete"));
    assert!(scope_covers("files.*", "files.read*"), "a narrower pattern");
    assert!(!scope_covers("files.*", "files*"), "a wider pattern");
    assert!(
        !scope_covers("files.read", "files.read*"),
        "an exact entry covers no pattern"
    );
    assert!(!scope_covers("files.*", "filesystem.read"));
    assert!(!scope_covers("", "bank.transfer"));
    assert!(!scope_covers("bank.transfer", ""));
    // Case and Unicode are compared exactly, byte for byte.
    assert!(!scope_covers("Bank.*", "bank.transfer"));
    assert!(!scope_covers("bank.*", "bаnk.transfer"), "a Cyrillic а");
}
