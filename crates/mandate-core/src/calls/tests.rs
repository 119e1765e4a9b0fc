use serde_json::json;

use super::*;

#[test]
fn scopes_redaction_and_hashes() {
    let scope = vec!["bank.get_balance".to_owned(), "files.*".to_owned()];
    assert!(scope_covers(&scope, "bank.get_balance"));
    assert!(scope_covers(&scope, "files.delete_files"));
    assert!(!scope_covers(&scope, "bank.transfer"));
    assert!(!scope_covers(&[], "bank.transfer"));

    let args = json!({"to": "bob", "card": {"number": "4111", "cvc": "123"}, "n": 1});
    let red = redact(&args, &["/card/number".into(), "/missing".into()]);
    assert_eq!(red["card"]["number"], "[redacted]");
    assert_eq!(red["card"]["cvc"], "123");
    assert_eq!(args["card"]["number"], "4111", "the original is untouched");

    // The hash binds the exact arguments, independent of key order.
    let a = arguments_hash(&json!({"a": 1, "b": [1, 2]}));
    let b = arguments_hash(&json!({"b": [1, 2], "a": 1}));
    assert_eq!(a, b);
    assert_ne!(a, arguments_hash(&json!({"a": 1, "b": [2, 1]})));
    assert!(a.starts_with("sha256:"));
}

#[test]
fn tool_calls_are_parsed_once() {
    let call = ToolCall::parse(Some(json!({
        "name": "bank.transfer",
        "arguments": {"to": "bob"},
        "_meta": {"progressToken": 7},
    })))
    .unwrap();
    assert_eq!(call.name(), "bank.transfer");
    assert_eq!(call.arguments(), &json!({"to": "bob"}));
    let (name, params) = call.into_parts("transfer");
    assert_eq!(name, "bank.transfer");
    assert_eq!(
        params,
        json!({"name": "transfer", "arguments": {"to": "bob"}, "_meta": {"progressToken": 7}}),
        "the upstream's name; everything else as it came"
    );

    let bare = ToolCall::parse(Some(json!({"name": "ping"}))).unwrap();
    assert_eq!(bare.arguments(), &json!({}));
    assert_eq!(
        bare.into_parts("ping").1,
        json!({"name": "ping"}),
        "no arguments added"
    );

    for bad in [
        None,
        Some(json!([])),
        Some(json!({"name": 1})),
        Some(json!({"arguments": {}})),
        Some(json!({"name": "x", "arguments": [1]})),
        Some(json!({"name": "x", "arguments": null})),
    ] {
        assert!(
            matches!(ToolCall::parse(bad.clone()), Err(CallError::Invalid(_))),
            "{bad:?}"
        );
    }
}
