use super::*;

fn call(bank: &Bank, name: &str, arguments: Value) -> ToolResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(bank.call(name, arguments, &CallContext::detached()))
        .unwrap()
}

#[test]
fn transfer_moves_money_and_refuses_overdraft() {
    let bank = Bank::new();
    let ok = call(
        &bank,
        "transfer",
        json!({"from": "alice-checking", "to": "bob-checking", "amount_cents": 1000}),
    );
    assert!(!ok.is_error, "{ok:?}");
    assert_eq!(bank.balance("alice-checking"), Some(249_000));
    assert_eq!(bank.balance("bob-checking"), Some(43_000));
    let overdraft = call(
        &bank,
        "transfer",
        json!({"from": "carol-checking", "to": "bob-checking", "amount_cents": 501}),
    );
    assert!(overdraft.is_error);
    assert!(overdraft.text_content().contains("insufficient funds"));
    assert_eq!(bank.balance("carol-checking"), Some(500));
    assert_eq!(bank.transfers().len(), 1);
}

#[test]
fn bad_arguments_are_tool_errors() {
    let bank = Bank::new();
    for (name, arguments) in [
        ("get_balance", json!({})),
        ("get_balance", json!({"account": 7})),
        ("get_balance", json!({"account": "x", "extra": 1})),
        (
            "transfer",
            json!({"from": "alice-checking", "to": "bob-checking", "amount_cents": -5}),
        ),
        (
            "transfer",
            json!({"from": "alice-checking", "to": "bob-checking", "amount_cents": 1.5}),
        ),
        (
            "transfer",
            json!({"from": "alice-checking", "to": "alice-checking", "amount_cents": 5}),
        ),
        (
            "transfer",
            json!({"from": "alice-checking", "to": "nobody", "amount_cents": 5}),
        ),
        ("read_file", json!({"path": "/home/../etc/passwd"})),
        ("read_file", json!({"path": "relative.txt"})),
        ("delete_files", json!({"paths": []})),
        ("delete_files", json!({"paths": "/home"})),
        (
            "send_email",
            json!({"to": "a@b.example\r\nBcc: x@y.example", "subject": "s", "body": "b"}),
        ),
        (
            "send_email",
            json!({"to": "not-an-address", "subject": "s", "body": "b"}),
        ),
    ] {
        let result = call(&bank, name, arguments.clone());
        assert!(result.is_error, "{name} {arguments}: {result:?}");
    }
    assert_eq!(bank.balances(), Bank::new().balances());
    assert!(bank.outbox().is_empty());
}

#[test]
fn paths_and_dollars() {
    assert!(args::check_path("/").is_ok());
    assert!(args::check_path("/home/alice/").is_ok());
    assert!(args::check_path("/home//alice").is_err());
    assert!(args::check_path("/home/./alice").is_err());
    assert_eq!(dollars(250_000), "$2500.00");
    assert_eq!(dollars(-5), "-$0.05");
}
