//! Requests an upstream makes during a forwarded call (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`), asked of an MCP 2026-07-28 client as the
//! revision's multi-round-trip result instead of over a session's event stream.
//!
//! ```text
//!   tools/call (allowed, forwarded) ─► the upstream sends a request before its answer
//!       the client declared the capability ─► the call is parked: a task of its own
//!          holds it, the upstream waiting on our answer; the client gets
//!          {resultType: input_required, inputRequests: {"mandate/input": {method, params}},
//!           requestState: "mandate:ask:<128 random bits>"}
//!       it did not ─► refused on its behalf, the call goes on (as for a session client)
//!   tools/call again + inputResponses {"mandate/input": result} + requestState
//!       authenticated as every request (agent active, mandate active, token unrevoked)
//!       ─► the state is this token's (agent, mandate, jti) and this tool's, still
//!          parked; anything else: "unknown or expired", the parked call untouched
//!       ─► the answer (≤ MAX_ANSWER_BYTES) goes to the upstream, the same call goes on:
//!          its answer (complete) or its next request (input_required again)
//!   no retry within ASK_TTL, the token revoked or expired, or the mandate ended or expired
//!   meanwhile (`Gateway::caller_ended`, looked at twice a second), or more than
//!   MAX_ROUNDS rounds
//!       ─► abandoned: the upstream's request refused, the call left to finish on its
//!          own (its outcome recorded as any forwarded call's), the client never served
//! ```
//!
//! Nothing here decides: the call was allowed before it was forwarded and is not
//! decided again (no second decision event, no second budget spend); the retry only
//! continues it, so its own arguments are never forwarded. Bounds: `MAX_PER_CALLER`
//! parked calls per agent and mandate and `MAX_PARKED` per replica (beyond them the
//! upstream's request is refused on the client's behalf), `ASK_TTL` per round, and
//! the call's own timeout (`gateway.call_timeout_seconds`), which keeps running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mandate_core::calls::Caller;
use mandate_mcp::jsonrpc::{code, error_object};
use mandate_mcp::revision::Answerable;
use mandate_mcp::{Outcome, Refusal, refusal};
use mandate_types::{AgentId, MandateId, ToolId};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::input::take_response;
use super::{Answer, Forwarded};
use crate::catalog::Listing;
use crate::{Gateway, GatewayError};

/// The key of the upstream's request in `inputRequests` / `inputResponses`.
pub(super) const ASK_KEY: &str = "mandate/input";
const ASK_STATE: &str = "mandate:ask:";
/// How long a parked call waits for the client's retry.
const ASK_TTL: Duration = Duration::from_secs(120);
/// Parked calls per agent and mandate, and per replica.
const MAX_PER_CALLER: usize = 4;
const MAX_PARKED: usize = 1024;
/// Rounds of one call.
const MAX_ROUNDS: u32 = 8;
/// The largest answer handed to an upstream.
pub(super) const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How often a parked call looks at the revocation list.
const REVOCATION_CHECK: Duration = Duration::from_millis(500);

/// Who may answer a parked call: the token that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    agent: AgentId,
    mandate: MandateId,
    jti: Option<String>,
}

impl Owner {
    fn of(caller: &Caller) -> Owner {
        Owner {
            agent: caller.agent.id,
            mandate: caller.mandate.id,
            jti: caller.jti.clone(),
        }
    }
}

/// What the task holding a parked call is told.
struct Resume {
    answer: Value,
    answerable: Answerable,
    reply: oneshot::Sender<Step>,
}

/// Where a parked call has come to after an answer.
enum Step {
    Done(Answer),
    Asked(Value),
}

#[derive(Debug)]
struct Parked {
    owner: Owner,
    tool: ToolId,
    resume: mpsc::Sender<ResumeBox>,
}

/// `Resume` behind a box, so the channel's slots stay small.
type ResumeBox = Box<Resume>;

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume").finish_non_exhaustive()
    }
}

/// The parked calls of this replica, by the random part of their state.
#[derive(Debug, Default)]
pub(crate) struct Asks {
    parked: Mutex<HashMap<String, Parked>>,
}

impl Asks {
    /// Parks a call under a new state; `None` when the bounds are reached or no
    /// randomness is to be had.
    fn park(&self, parked: Parked) -> Option<String> {
        let id = mandate_token::random_id("").ok()?;
        let mut map = self.parked.lock().ok()?;
        // Calls whose task ended (answered, expired, abandoned) are forgotten.
        map.retain(|_, p| !p.resume.is_closed());
        let mine = map
            .values()
            .filter(|p| {
                p.owner.agent == parked.owner.agent && p.owner.mandate == parked.owner.mandate
            })
            .count();
        if mine >= MAX_PER_CALLER || map.len() >= MAX_PARKED {
            return None;
        }
        map.insert(id.clone(), parked);
        Some(format!("{ASK_STATE}{id}"))
    }

    /// Takes the call parked under `state` if it is `owner`'s and on `tool`; anything
    /// else leaves the map as it is.
    fn take(&self, state: &str, owner: &Owner, tool: ToolId) -> Option<Parked> {
        let id = state.strip_prefix(ASK_STATE)?;
        let mut map = self.parked.lock().ok()?;
        match map.get(id) {
            Some(p) if &p.owner == owner && p.tool == tool && !p.resume.is_closed() => {
                map.remove(id)
            }
            _ => None,
        }
    }
}

/// A retry's answer to a parked call, taken off its params (neither goes upstream).
#[derive(Debug)]
pub(super) struct AskRetry {
    state: String,
    answer: Option<Value>,
}

/// Takes our state and the answer to our request off a call's params. A state that is
/// not one of ours is left where it is.
pub(super) fn take_ask(params: &mut Option<Value>) -> Option<AskRetry> {
    let map = params.as_mut().and_then(Value::as_object_mut)?;
    if !map
        .get("requestState")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with(ASK_STATE))
    {
        return None;
    }
    let state = match map.remove("requestState") {
        Some(Value::String(s)) => s,
        _ => return None,
    };
    let answer = take_response(map, ASK_KEY);
    Some(AskRetry { state, answer })
}

/// The `input_required` result carrying the upstream's `request` under our key.
fn input_required(request: &Value, state: String) -> Value {
    let mut asked = Map::new();
    asked.insert(
        "method".into(),
        request.get("method").cloned().unwrap_or(Value::Null),
    );
    if let Some(params) = request.get("params") {
        asked.insert("params".into(), params.clone());
    }
    let mut requests = Map::new();
    requests.insert(ASK_KEY.to_owned(), Value::Object(asked));
    json!({
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": state,
    })
}

/// What a refused retry is told: the same for a state that never existed, expired,
/// was answered, or is another caller's.
fn unknown() -> GatewayError {
    GatewayError::Invalid(
        "the requestState names no input request of this caller that is still open; call the tool again".into(),
    )
}

/// Answers the upstream's request `id` on the call's connection.
async fn respond(
    gateway: &Gateway,
    listing: &Listing,
    caller: &Caller,
    id: Value,
    outcome: Outcome,
) -> Result<(), GatewayError> {
    let connected = gateway.catalog.connect(&listing.server).await?;
    let headers = gateway
        .credentials
        .headers(&listing.server, &caller.mandate)
        .await?;
    connected.upstream.respond(id, outcome, &headers).await?;
    Ok(())
}

/// An upstream request this client cannot answer, refused on its behalf.
fn cannot_answer(method: &str) -> Outcome {
    Err(error_object(
        code::METHOD_NOT_FOUND,
        format!(
            "the client cannot answer `{}` here",
            method.chars().take(64).collect::<String>()
        ),
        None,
    ))
}

/// Runs the call until it answers or asks something this client can answer; what it
/// asks that the client cannot is refused on its behalf, notifications are dropped
/// (a 2026-07-28 client takes none on a call's answer here).
async fn run(
    gateway: &Gateway,
    listing: &Listing,
    caller: &Caller,
    call: &mut Forwarded,
    events: &mut mpsc::Receiver<Value>,
    answerable: Answerable,
) -> Step {
    loop {
        let event = tokio::select! {
            biased;
            done = &mut *call => return Step::Done(done),
            event = events.recv() => event,
        };
        let Some(event) = event else {
            return Step::Done((&mut *call).await);
        };
        let (Some(method), Some(id)) = (
            event.get("method").and_then(Value::as_str),
            event.get("id").cloned(),
        ) else {
            continue;
        };
        if answerable.answers(method, event.get("params")) {
            return Step::Asked(event);
        }
        tracing::debug!(
            method,
            "upstream request refused: the client did not declare it"
        );
        let _ = respond(gateway, listing, caller, id, cannot_answer(method)).await;
    }
}

/// The request's side: what the first round of a forwarded call comes to for a
/// 2026-07-28 client.
pub(super) async fn first_round(
    gateway: &Gateway,
    caller: &Arc<Caller>,
    listing: Arc<Listing>,
    mut call: Forwarded,
    mut events: mpsc::Receiver<Value>,
    answerable: Answerable,
) -> Answer {
    loop {
        match run(
            gateway,
            &listing,
            caller,
            &mut call,
            &mut events,
            answerable,
        )
        .await
        {
            Step::Done(answer) => return answer,
            Step::Asked(request) => {
                let (resume, resumed) = mpsc::channel(1);
                let parked = Parked {
                    owner: Owner::of(caller),
                    tool: listing.tool.id,
                    resume,
                };
                let Some(state) = gateway.asks.park(parked) else {
                    refuse_request(
                        gateway,
                        &listing,
                        caller,
                        &request,
                        "too many open input requests",
                    )
                    .await;
                    continue;
                };
                let result = input_required(&request, state);
                tokio::spawn(hold(
                    gateway.clone(),
                    caller.clone(),
                    listing,
                    call,
                    events,
                    request,
                    resumed,
                ));
                return Ok(Ok(result));
            }
        }
    }
}

async fn refuse_request(
    gateway: &Gateway,
    listing: &Listing,
    caller: &Caller,
    request: &Value,
    why: &str,
) {
    if let Some(id) = request.get("id").cloned() {
        let refused = Err(error_object(
            code::REFUSED,
            format!("the gateway abandoned this request: {why}"),
            None,
        ));
        let _ = respond(gateway, listing, caller, id, refused).await;
    }
}

/// The task holding a parked call: waits for the client's answer and hands it on,
/// round after round; abandons the call when the round expires, the token is revoked
/// or the mandate ends or expires.
async fn hold(
    gateway: Gateway,
    caller: Arc<Caller>,
    listing: Arc<Listing>,
    mut call: Forwarded,
    mut events: mpsc::Receiver<Value>,
    mut asked: Value,
    mut resumed: mpsc::Receiver<ResumeBox>,
) {
    let mut rounds = 1u32;
    loop {
        let deadline = tokio::time::sleep(ASK_TTL);
        tokio::pin!(deadline);
        let mut check = tokio::time::interval(REVOCATION_CHECK);
        let why = loop {
            tokio::select! {
                resume = resumed.recv() => match resume {
                    Some(resume) => break Ok(resume),
                    None => break Err("the client's input request was dropped"),
                },
                () = &mut deadline => break Err("the client did not answer in time"),
                _ = check.tick() => {
                    if gateway.caller_ended(&caller) {
                        break Err("the token or its mandate ended while the client was asked");
                    }
                }
            }
        };
        let resume = match why {
            Ok(resume) => resume,
            Err(why) => {
                tracing::info!(mandate = %caller.mandate.id, reason = why, "parked upstream call abandoned");
                refuse_request(&gateway, &listing, &caller, &asked, why).await;
                // Left to finish on its own; it records its outcome.
                drop(call);
                return;
            }
        };
        let Resume {
            answer,
            answerable,
            reply,
        } = *resume;
        let id = asked.get("id").cloned().unwrap_or(Value::Null);
        if let Err(e) = respond(&gateway, &listing, &caller, id, Ok(answer)).await {
            let _ = reply.send(Step::Done(Err(e)));
            return;
        }
        let step = run(
            &gateway,
            &listing,
            &caller,
            &mut call,
            &mut events,
            answerable,
        )
        .await;
        match step {
            Step::Done(answer) => {
                let _ = reply.send(Step::Done(answer));
                return;
            }
            Step::Asked(next) if rounds < MAX_ROUNDS => {
                rounds += 1;
                asked = next.clone();
                if reply.send(Step::Asked(next)).is_err() {
                    refuse_request(&gateway, &listing, &caller, &asked, "the client went away")
                        .await;
                    return;
                }
            }
            Step::Asked(next) => {
                refuse_request(&gateway, &listing, &caller, &next, "too many rounds").await;
                let _ = reply.send(Step::Done(Ok(Err(refusal(
                    Refusal::Denied,
                    format!(
                        "the upstream asked for input more than {MAX_ROUNDS} times in one call"
                    ),
                    Value::Null,
                )))));
                return;
            }
        }
    }
}

/// The retry's side: hands the answer to the parked call and returns what it came to
/// (the upstream's answer, or its next request as `input_required`).
pub(super) async fn answer(
    gateway: &Gateway,
    caller: &Caller,
    listing: &Listing,
    retry: AskRetry,
    answerable: Answerable,
) -> Answer {
    let Some(mut answer) = retry.answer else {
        return Err(GatewayError::Invalid(format!(
            "the retry carries no inputResponses[\"{ASK_KEY}\"]"
        )));
    };
    if !answer.is_object() {
        return Err(GatewayError::Invalid(format!(
            "inputResponses[\"{ASK_KEY}\"] must be an object"
        )));
    }
    let size = serde_json::to_vec(&answer).map_or(usize::MAX, |b| b.len());
    if size > MAX_ANSWER_BYTES {
        return Err(GatewayError::Invalid(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    // An older upstream's result has no resultType.
    if let Some(map) = answer.as_object_mut() {
        map.remove("resultType");
    }
    let owner = Owner::of(caller);
    let Some(parked) = gateway.asks.take(&retry.state, &owner, listing.tool.id) else {
        return Err(unknown());
    };
    let (reply, step) = oneshot::channel();
    let resume = Box::new(Resume {
        answer,
        answerable,
        reply,
    });
    if parked.resume.send(resume).await.is_err() {
        return Err(unknown());
    }
    match step.await {
        Ok(Step::Done(answer)) => answer,
        Ok(Step::Asked(request)) => {
            let Some(state) = gateway.asks.park(parked) else {
                return Err(GatewayError::Unavailable(
                    "too many open input requests".into(),
                ));
            };
            Ok(Ok(input_required(&request, state)))
        }
        Err(_) => Err(GatewayError::Upstream(
            mandate_mcp::UpstreamError::Unavailable(
                "the call ended while its input was handed on".into(),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_state_and_answer_are_taken_off_and_others_left() {
        let mut params = Some(json!({
            "name": "t",
            "requestState": "mandate:ask:abc",
            "inputResponses": {ASK_KEY: {"action": "accept"}, "theirs": {}},
        }));
        let retry = take_ask(&mut params).unwrap_or_else(|| unreachable!());
        assert_eq!(retry.state, "mandate:ask:abc");
        assert_eq!(retry.answer, Some(json!({"action": "accept"})));
        assert_eq!(
            params,
            Some(json!({"name": "t", "inputResponses": {"theirs": {}}}))
        );
        for theirs in [
            json!({"name": "t", "requestState": "mandate:approval:x"}),
            json!({"name": "t", "requestState": "opaque"}),
            json!({"name": "t"}),
        ] {
            let mut params = Some(theirs.clone());
            assert!(take_ask(&mut params).is_none());
            assert_eq!(params, Some(theirs));
        }
    }

    #[test]
    fn the_upstreams_request_is_asked_under_our_key() {
        let asked = input_required(
            &json!({"jsonrpc": "2.0", "id": 7, "method": "elicitation/create",
                    "params": {"message": "m", "requestedSchema": {}}}),
            "mandate:ask:s".into(),
        );
        assert_eq!(
            asked,
            json!({
                "resultType": "input_required",
                "inputRequests": {ASK_KEY: {"method": "elicitation/create",
                    "params": {"message": "m", "requestedSchema": {}}}},
                "requestState": "mandate:ask:s",
            })
        );
    }

    /// A call parked for `owner` on `tool`, and the receiver that keeps it open.
    fn parked(owner: &Owner, tool: ToolId) -> (Parked, mpsc::Receiver<ResumeBox>) {
        let (resume, held) = mpsc::channel(1);
        let parked = Parked {
            owner: owner.clone(),
            tool,
            resume,
        };
        (parked, held)
    }

    #[test]
    fn a_parked_call_is_only_its_owners() {
        let asks = Asks::default();
        let owner = Owner {
            agent: AgentId::generate(),
            mandate: MandateId::generate(),
            jti: Some("j1".into()),
        };
        let tool = ToolId::generate();
        let (call, _held) = parked(&owner, tool);
        let state = asks.park(call).unwrap_or_else(|| unreachable!());
        let other_token = Owner {
            jti: Some("j2".into()),
            ..owner.clone()
        };
        let other_mandate = Owner {
            mandate: MandateId::generate(),
            ..owner.clone()
        };
        assert!(asks.take(&state, &other_token, tool).is_none());
        assert!(asks.take(&state, &other_mandate, tool).is_none());
        assert!(asks.take(&state, &owner, ToolId::generate()).is_none());
        assert!(asks.take("mandate:ask:nope", &owner, tool).is_none());
        // None of that consumed it.
        assert!(asks.take(&state, &owner, tool).is_some());
        assert!(asks.take(&state, &owner, tool).is_none(), "answered once");
    }

    #[test]
    fn parked_calls_are_bounded_per_caller() {
        let asks = Asks::default();
        let owner = Owner {
            agent: AgentId::generate(),
            mandate: MandateId::generate(),
            jti: None,
        };
        let mut held = Vec::new();
        for _ in 0..MAX_PER_CALLER {
            let (call, open) = parked(&owner, ToolId::generate());
            held.push(open);
            assert!(asks.park(call).is_some());
        }
        let (one_more, _open) = parked(&owner, ToolId::generate());
        assert!(asks.park(one_more).is_none());
        // A call whose task ended frees its place.
        held.pop();
        let (again, _open) = parked(&owner, ToolId::generate());
        assert!(asks.park(again).is_some());
    }
}
