//! Held calls told to MCP 2026-07-28 clients as multi-round-trip requests: instead
//! of a refusal, the call answers with an `input_required` result asking the client
//! to show the person the page where they decide (URL-mode elicitation); the client's
//! retry, carrying the answer, is decided again.
//!
//! The shapes, from the revision's schema (`schema/2026-07-28/schema.ts` in
//! modelcontextprotocol/modelcontextprotocol):
//!
//! ```text
//! interface InputRequiredResult extends Result {   // resultType: "input_required"
//!   inputRequests?: { [key: string]: InputRequest };   // e.g. an ElicitRequest
//!   requestState?: string;                              // opaque to the client
//! }
//! interface ElicitRequest { method: "elicitation/create"; params: ElicitRequestParams }
//! interface ElicitRequestURLParams { mode: "url"; message: string; url: string }
//! interface InputResponseRequestParams extends RequestParams {   // the retry
//!   inputResponses?: { [key: string]: InputResponse };  // the same keys; ElicitResult
//!   requestState?: string;                               // echoed back
//! }
//! interface ElicitResult { action: "accept" | "decline" | "cancel"; content?: … }
//! ```
//!
//! ```text
//!   tools/call ─► held (approval | proposal) ─► result {resultType: input_required,
//!       inputRequests: {"mandate/decision": elicitation/create {mode: url, url}},
//!       requestState: "mandate:approval:<id>" | "mandate:proposal:<id>"}
//!   person opens the URL, decides
//!   tools/call again, same arguments, + inputResponses + requestState
//!       ─► both taken off the params (never forwarded upstream)
//!       ─► approval: decided again — an approved, unused approval of these exact
//!          arguments lets it through once; still pending: input_required again;
//!          refused by the person: the refusal
//!       ─► proposal: its outcome once a person executed it (never a second proposal)
//!       ─► declined or cancelled by the client: today's refusal, no new round trip
//! ```
//!
//! The state only says which of our requests the retry answers; nothing is decided
//! from it (the decision is made again from the store), so a forged state gains
//! nothing.

use mandate_types::{ApprovalId, ProposalId, ToolServerId};
use serde_json::{Map, Value, json};

/// The key of our one input request.
pub(super) const INPUT_KEY: &str = "mandate/decision";
const APPROVAL_STATE: &str = "mandate:approval:";
const PROPOSAL_STATE: &str = "mandate:proposal:";
const CONNECTION_STATE: &str = "mandate:connection:";

/// What held the call we asked the client about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Approval(ApprovalId),
    Proposal(ProposalId),
    /// The person's connection to this tool server (the retry is decided afresh).
    Connection(ToolServerId),
}

/// A 2026-07-28 retry answering our input request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retry {
    pub held: Held,
    /// The person was shown the page (`accept`); `decline`, `cancel` or no answer:
    /// false.
    pub accepted: bool,
}

impl Held {
    fn state(self) -> String {
        match self {
            Held::Approval(id) => format!("{APPROVAL_STATE}{id}"),
            Held::Proposal(id) => format!("{PROPOSAL_STATE}{id}"),
            Held::Connection(id) => format!("{CONNECTION_STATE}{id}"),
        }
    }

    fn parse(state: &str) -> Option<Held> {
        if let Some(id) = state.strip_prefix(APPROVAL_STATE) {
            return id.parse().ok().map(Held::Approval);
        }
        if let Some(id) = state.strip_prefix(CONNECTION_STATE) {
            return id.parse().ok().map(Held::Connection);
        }
        state
            .strip_prefix(PROPOSAL_STATE)
            .and_then(|id| id.parse().ok())
            .map(Held::Proposal)
    }
}

/// Takes our state and the answer to our input request off a call's params, so that
/// neither goes upstream. A state that is not ours is left where it is (the
/// upstream's own round trip).
pub(super) fn take_retry(params: &mut Option<Value>) -> Option<Retry> {
    let map = params.as_mut().and_then(Value::as_object_mut)?;
    let held = map
        .get("requestState")
        .and_then(Value::as_str)
        .and_then(Held::parse)?;
    map.remove("requestState");
    let answer = take_response(map, INPUT_KEY);
    let accepted = answer
        .as_ref()
        .and_then(|a| a.get("action"))
        .and_then(Value::as_str)
        == Some("accept");
    Some(Retry { held, accepted })
}

/// Takes the response under `key` off a retry's `inputResponses` (dropped when it
/// holds nothing else), so that it does not go upstream.
pub(super) fn take_response(params: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let responses = params
        .get_mut("inputResponses")
        .and_then(Value::as_object_mut)?;
    let answer = responses.remove(key);
    if responses.is_empty() {
        params.remove("inputResponses");
    }
    answer
}

/// The `input_required` result asking the client to show the person `url`.
pub(super) fn input_required(held: Held, message: &str, url: &str) -> Value {
    let mut requests = Map::new();
    requests.insert(
        INPUT_KEY.to_owned(),
        json!({
            "method": "elicitation/create",
            "params": {"mode": "url", "message": message, "url": url},
        }),
    );
    json!({
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": held.state(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_state_and_answer_are_taken_off_and_others_left() {
        let id = ApprovalId::generate();
        let asked = input_required(Held::Approval(id), "m", "https://x/ui/approvals/1");
        assert_eq!(asked["resultType"], "input_required");
        assert_eq!(
            asked["inputRequests"][INPUT_KEY]["params"]["mode"],
            json!("url")
        );
        let mut params = Some(json!({
            "name": "bank.transfer",
            "arguments": {"amount": 5},
            "requestState": asked["requestState"],
            "inputResponses": {INPUT_KEY: {"action": "accept"}, "theirs": {"action": "accept"}},
        }));
        let retry = take_retry(&mut params).unwrap();
        assert_eq!(retry.held, Held::Approval(id));
        assert!(retry.accepted);
        let params = params.unwrap();
        assert!(params.get("requestState").is_none());
        assert_eq!(
            params["inputResponses"],
            json!({"theirs": {"action": "accept"}})
        );

        // Declined, cancelled or missing: not accepted.
        for answer in [
            json!({"action": "decline"}),
            json!({"action": "cancel"}),
            json!(null),
        ] {
            let mut params = Some(json!({
                "name": "t", "requestState": Held::Proposal(ProposalId::generate()).state(),
                "inputResponses": {INPUT_KEY: answer},
            }));
            let retry = take_retry(&mut params).unwrap();
            assert!(!retry.accepted);
            assert!(params.unwrap().get("inputResponses").is_none());
        }

        // Someone else's state (the upstream's) stays, and so do its responses.
        let theirs = json!({"name": "t", "requestState": "opaque", "inputResponses": {"k": {}}});
        let mut params = Some(theirs.clone());
        assert_eq!(take_retry(&mut params), None);
        assert_eq!(params.unwrap(), theirs);
        let mut forged = Some(json!({"name": "t", "requestState": "mandate:approval:nope"}));
        assert_eq!(take_retry(&mut forged), None);
    }

    #[test]
    fn a_connection_state_round_trips_and_a_forged_one_is_not_ours() {
        let server = ToolServerId::generate();
        let asked = input_required(
            Held::Connection(server),
            "connect",
            "https://x/ui/connections/srv/connect",
        );
        let mut params = Some(json!({
            "name": "cal.whoami",
            "requestState": asked["requestState"],
            "inputResponses": {INPUT_KEY: {"action": "accept"}},
        }));
        let retry = take_retry(&mut params).unwrap();
        assert_eq!(retry.held, Held::Connection(server));
        assert!(retry.accepted);
        assert_eq!(params.unwrap(), json!({"name": "cal.whoami"}));
        for forged in [
            "mandate:connection:",
            "mandate:connection:srv_nope",
            "mandate:connection:../x",
        ] {
            let mut params = Some(json!({"name": "t", "requestState": forged}));
            assert_eq!(take_retry(&mut params), None, "{forged}");
        }
    }
}
