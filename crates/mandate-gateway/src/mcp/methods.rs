//! Method routing: what each MCP method resolves to before anything is forwarded
//! ([`Plan`]), and how a refused call is told to the client (JSON-RPC -32010 with
//! `error.data.reason`, or URL elicitation for a held call).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use mandate_core::calls::{Call, ToolCall, Verdict};
use mandate_domain::{Proposal, ProposalStatus, ToolServer};
use mandate_mcp::jsonrpc::{self, code, error_object};
use mandate_mcp::revision;
use mandate_mcp::{Outcome, Refusal, refusal};
use mandate_policy::CallAction;
use mandate_types::{ApprovalId, ProposalId};
use serde_json::{Value, json};

use super::asked;
use super::input::{self, Held, Retry};
use super::{Exchange, json_response, set};
use crate::GatewayError;
use crate::catalog::{Listing, PROMPTS, RESOURCES};
use crate::error::insufficient_scope;

/// What a request resolves to before anything is forwarded.
pub(super) enum Plan {
    /// Answered here.
    Local(Outcome),
    /// Forwarded to one upstream after the decision allowed it.
    Forward {
        listing: Arc<Listing>,
        method: String,
        params: Option<Value>,
        tool_name: Option<String>,
    },
    /// Refused with HTTP 403 and a step-up challenge naming the scope a new consent
    /// needs (the tool server opted in; the refusal is recorded like any other).
    StepUp { scope: Vec<String> },
}

pub(super) fn hidden(name: &str) -> Outcome {
    Err(refusal(
        Refusal::NotAvailable,
        format!(
            "tool `{}` is not available under this mandate",
            name.chars().take(128).collect::<String>()
        ),
        Value::Null,
    ))
}

impl Exchange<'_> {
    pub(super) async fn request(&self, id: Value, method: &str, params: Option<Value>) -> Response {
        if method == "initialize" {
            return self.initialize(id, params).await;
        }
        if method == "subscriptions/listen" && self.stateless {
            let resources = match self.subscribable(params.as_ref()).await {
                Ok(resources) => resources,
                Err(e) => return json_response(StatusCode::OK, &e.response(id), None),
            };
            return match self.gateway.listen(
                self.caller,
                self.server,
                id.clone(),
                params.as_ref(),
                resources,
            ) {
                Ok(stream) => stream,
                Err(e) => json_response(StatusCode::OK, &e.response(id), None),
            };
        }
        let plan = match self.plan(method, params).await {
            Ok(plan) => plan,
            Err(e) => return json_response(StatusCode::OK, &e.response(id), None),
        };
        match plan {
            Plan::Local(outcome) => json_response(
                StatusCode::OK,
                &jsonrpc::response(id, self.shaped(method, outcome)),
                None,
            ),
            Plan::Forward {
                listing,
                method,
                params,
                tool_name,
            } => self.forward(id, listing, &method, params, tool_name).await,
            Plan::StepUp { scope } => {
                let metadata_url = self.gateway.config.resource_metadata_url(self.server);
                insufficient_scope(&metadata_url, &scope, id)
            }
        }
    }

    async fn plan(&self, method: &str, params: Option<Value>) -> Result<Plan, GatewayError> {
        let gateway = self.gateway;
        match method {
            "ping" => Ok(Plan::Local(Ok(json!({})))),
            "server/discover" => Ok(Plan::Local(Ok(json!({
                "supportedVersions": revision::SUPPORTED,
                "capabilities": {"tools": {"listChanged": true},
                    "resources": {"listChanged": true, "subscribe": true},
                    "prompts": {"listChanged": true}},
                "serverInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")},
            })))),
            "tools/list" => self.list_tools().await,
            "tools/call" => {
                let mut params = params;
                let (retry, asked) = if self.stateless {
                    (input::take_retry(&mut params), asked::take_ask(&mut params))
                } else {
                    (None, None)
                };
                let call = ToolCall::parse(params)?;
                let snapshot = gateway.snapshot(&self.caller.mandate).await?;
                let Some(listing) = self.resolve(&snapshot, call.name()) else {
                    gateway
                        .calls
                        .refuse_unknown(self.caller, call.name())
                        .await?;
                    return Ok(Plan::Local(hidden(call.name())));
                };
                if let Some(asked) = asked {
                    // The answer to what the upstream asked during this call, which was
                    // allowed and forwarded in an earlier round: the same call goes on.
                    let answer =
                        asked::answer(gateway, self.caller, listing, asked, self.answerable)
                            .await?;
                    return Ok(Plan::Local(answer));
                }
                let decided = Call {
                    action: CallAction::CallTool,
                    target: listing.target(),
                    arguments: call.arguments(),
                };
                if let Some(Retry {
                    held: Held::Proposal(id),
                    accepted: true,
                }) = retry
                    && let Some(proposal) = gateway
                        .calls
                        .proposal_retried(self.caller, id, &decided)
                        .await?
                {
                    // Never a second proposal for the same call: its state instead.
                    return Ok(Plan::Local(self.proposal_state(&proposal)));
                }
                if let Some(broker) = gateway.broker()
                    && broker
                        .connection_needed(&listing.server, &self.caller.mandate)
                        .await?
                    && gateway.calls.may_see(self.caller, listing.target())
                {
                    // Held before it is decided: no budget spent, no approval used,
                    // and the retry after the person connects is decided afresh.
                    broker
                        .connection_required(
                            &listing.server,
                            &self.caller.mandate,
                            self.caller.actor.clone(),
                        )
                        .await?;
                    return Ok(Plan::Local(self.connect(&listing.server, retry)));
                }
                let verdict = gateway.calls.authorize(self.caller, decided).await?;
                match verdict {
                    Verdict::Allow { .. } => {
                        // The upstream knows the tool by its own name.
                        let (name, params) = call.into_parts(&listing.tool.name);
                        Ok(Plan::Forward {
                            listing: listing.clone(),
                            method: method.to_owned(),
                            params: Some(params),
                            tool_name: Some(name),
                        })
                    }
                    Verdict::Deny { hidden: true, .. } => {
                        match gateway.calls.step_up_scope(self.caller, listing.target()) {
                            Some(scope) => Ok(Plan::StepUp { scope }),
                            None => Ok(Plan::Local(hidden(call.name()))),
                        }
                    }
                    other => Ok(Plan::Local(self.held(call.name(), other, retry))),
                }
            }
            "resources/list" | "resources/templates/list" | "prompts/list" => {
                self.list_across(method, params).await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.on_entry(RESOURCES, CallAction::ReadResource, method, params)
                    .await
            }
            "prompts/get" => {
                self.on_entry(PROMPTS, CallAction::GetPrompt, method, params)
                    .await
            }
            "completion/complete" => {
                let entry = match params
                    .as_ref()
                    .and_then(|p| p.pointer("/ref/type"))
                    .and_then(Value::as_str)
                {
                    Some("ref/prompt") => (PROMPTS, CallAction::GetPrompt),
                    _ => (RESOURCES, CallAction::ReadResource),
                };
                self.on_entry(entry.0, entry.1, method, params).await
            }
            "logging/setLevel" => match self.server {
                Some(server) => {
                    let snapshot = gateway.snapshot(&self.caller.mandate).await?;
                    let Some(listing) = snapshot
                        .tools
                        .values()
                        .find(|l| l.server.name == server)
                        .cloned()
                    else {
                        return Ok(Plan::Local(hidden(server)));
                    };
                    Ok(Plan::Forward {
                        listing,
                        method: method.to_owned(),
                        params,
                        tool_name: None,
                    })
                }
                None => Ok(Plan::Local(Ok(json!({})))),
            },
            _ => Ok(Plan::Local(Err(error_object(
                code::METHOD_NOT_FOUND,
                format!(
                    "method `{}` is not supported",
                    method.chars().take(64).collect::<String>()
                ),
                None,
            )))),
        }
    }

    /// A held call's answer: to a 2026-07-28 client that can show a person a page,
    /// the `input_required` result asking it to (unless this retry says it declined);
    /// to anyone else, the refusal.
    fn held(&self, name: &str, verdict: Verdict, retry: Option<Retry>) -> Outcome {
        let asks = self.stateless && self.url_elicitation && retry.is_none_or(|r| r.accepted);
        match verdict {
            Verdict::Approval(a) if asks => Ok(input::input_required(
                Held::Approval(a.id),
                &approval_message(&a.id),
                &self.page("approvals", &a.id),
            )),
            Verdict::Proposal(p) if asks => Ok(input::input_required(
                Held::Proposal(p.id),
                &proposal_message(&p.id),
                &self.page("proposals", &p.id),
            )),
            other => self.refusal(name, other),
        }
    }

    /// A call held for the person's connection to `server`: to a 2026-07-28 client
    /// that can show a page, `input_required` with the connect link (unless this
    /// retry says it declined); to a session client with URL elicitation, -32042; to
    /// anyone else, the refusal carrying the link.
    fn connect(&self, server: &ToolServer, retry: Option<Retry>) -> Outcome {
        let url = self.page("connections", &format!("{}/connect", server.id));
        let message = format!(
            "this call acts as the person at `{}`, who has not connected their account there yet; the person opens the link, signs in there, and the call is retried",
            server.name
        );
        if self.stateless && self.url_elicitation && retry.is_none_or(|r| r.accepted) {
            return Ok(input::input_required(
                Held::Connection(server.id),
                &message,
                &url,
            ));
        }
        let mut data = json!({
            "remedy": "connect",
            "server": server.name,
            "connect_url": url,
        });
        if self.url_elicitation && !self.stateless {
            set(
                &mut data,
                "reason",
                json!(Refusal::ConnectionRequired.as_str()),
            );
            set(
                &mut data,
                "elicitations",
                json!([{"mode": "url", "elicitationId": format!("connect-{}", server.id), "url": url, "message": message}]),
            );
            return Err(error_object(
                code::URL_ELICITATION_REQUIRED,
                message,
                Some(data),
            ));
        }
        Err(refusal(Refusal::ConnectionRequired, message, data))
    }

    /// What a retried proposal has come to: still waiting for a person (asked
    /// again), the outcome of its execution, or its rejection.
    fn proposal_state(&self, p: &Proposal) -> Outcome {
        match p.status {
            ProposalStatus::Recorded | ProposalStatus::Executing => Ok(input::input_required(
                Held::Proposal(p.id),
                &proposal_message(&p.id),
                &self.page("proposals", &p.id),
            )),
            ProposalStatus::Executed | ProposalStatus::Failed => {
                match p.outcome.as_ref().and_then(Value::as_object) {
                    Some(o) if o.contains_key("result") => {
                        Ok(o.get("result").cloned().unwrap_or(Value::Null))
                    }
                    Some(o) if o.contains_key("error") => {
                        Err(o.get("error").cloned().unwrap_or(Value::Null))
                    }
                    _ => Err(refusal(
                        Refusal::Proposed,
                        format!(
                            "proposal {} was executed; its outcome is not recorded",
                            p.id
                        ),
                        json!({"remedy": "recommend", "proposal_id": p.id}),
                    )),
                }
            }
            ProposalStatus::Rejected => Err(refusal(
                Refusal::Proposed,
                format!(
                    "proposal {} was rejected by a person; nothing was executed",
                    p.id
                ),
                json!({"remedy": "recommend", "proposal_id": p.id, "status": p.status}),
            )),
        }
    }

    /// The console page where a person decides on a held call.
    fn page(&self, kind: &str, id: &impl std::fmt::Display) -> String {
        format!("{}/ui/{kind}/{id}", self.gateway.config.public_url)
    }

    pub(super) fn refusal(&self, name: &str, verdict: Verdict) -> Outcome {
        match verdict {
            Verdict::Deny { hidden: true, .. } | Verdict::Allow { .. } => hidden(name),
            Verdict::Deny {
                reason,
                budget: true,
                ..
            } => Err(refusal(
                Refusal::Budget,
                format!("denied: {reason}"),
                json!({"detail": reason}),
            )),
            Verdict::Deny { reason, .. } => Err(refusal(
                Refusal::Denied,
                format!("denied by the mandate's policy: {reason}"),
                json!({"detail": reason}),
            )),
            Verdict::Approval(a) => {
                let message = approval_message(&a.id);
                let url = self.page("approvals", &a.id);
                let mut data = json!({
                    "reason": Refusal::ApprovalRequired.as_str(),
                    "remedy": "approval",
                    "approval_id": a.id,
                    "approval_url": url,
                    "status": a.status,
                    "expires_at": a.expires_at,
                });
                if self.url_elicitation && !self.stateless {
                    // MCP 2025-11-25 URL elicitation (its -32042 is not a code of
                    // 2026-07-28, whose clients are asked with input_required instead): the client may open the page
                    // where the human decides, then retry.
                    set(
                        &mut data,
                        "elicitations",
                        json!([{"mode": "url", "elicitationId": a.id, "url": url, "message": message}]),
                    );
                    Err(error_object(
                        code::URL_ELICITATION_REQUIRED,
                        message,
                        Some(data),
                    ))
                } else {
                    Err(refusal(Refusal::ApprovalRequired, message, data))
                }
            }
            Verdict::Proposal(p) => Err(refusal(
                Refusal::Proposed,
                proposal_message(&p.id),
                json!({
                    "remedy": "recommend",
                    "proposal_id": p.id,
                    "proposal_url": self.page("proposals", &p.id),
                }),
            )),
        }
    }
}

fn approval_message(id: &ApprovalId) -> String {
    format!(
        "this call needs a human's approval; approval {id} is pending — retry with the same arguments once it is approved"
    )
}

fn proposal_message(id: &ProposalId) -> String {
    format!(
        "the mandate is recommend-only: the call was recorded as proposal {id} for a human to execute; nothing was executed"
    )
}
