//! Rolling back: a person party to a mandate (one who must consent to it) or an
//! administrator of its tenant undoes one call, or every call of the mandate, by
//! running the compensations recorded with the calls' outcomes, newest first.
//!
//! ```text
//!   ledger flushed ─► the mandate's `tool.called` events carrying a `compensation`
//!     (server, tool, arguments — formed when the call succeeded), newest first
//!   each step: claim it (one conditional write: never claimed, or its last run failed)
//!     done before ─► skipped          held by another run ─► stop (in progress)
//!     ─► Calls::authorize as a rollback decision on the person's authority
//!        (approved = true, context.rollback; scope, policies, budget as for any call;
//!        the decision event names the call: `rollback_of`)
//!     ─► forwarded through the gateway (the `Forwarder`: credentials, fail-closed)
//!     ─► the step finished (done | failed) ─► `rollback.step` event (call_seq and
//!        call_hash of the original `tool.called` event)
//!     failed ─► stop: the rest are not run; running it again continues
//! ```
//!
//! A step that was claimed and never finished (a crash mid-call) stays "in progress":
//! whether its compensation reached the upstream is unknown, so it is never repeated.

use mandate_audit::{Event, EventKind, NewEvent};
use mandate_domain::{AgentStatus, Mandate, Principal};
use mandate_store::{AuditFilter, StepClaim};
use mandate_types::MandateId;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{CallError, Caller, Calls, Execution, arguments_hash, obj};
use crate::CoreError;

/// How many `tool.called` events of one mandate a rollback reads at most.
const MAX_CALLS: usize = 10_000;
const PAGE: u32 = 1_000;
/// The longest upstream message kept in a step's report.
const MAX_DETAIL: usize = 300;

/// What a rollback did, step by step (newest call first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollbackReport {
    #[schema(value_type = String)]
    pub mandate_id: MandateId,
    /// Every step is done (now or by an earlier run).
    pub complete: bool,
    pub steps: Vec<StepReport>,
    /// Calls that succeeded and cannot be undone: their tool (not a read) declares no
    /// compensation, or its compensation could not be formed from the call.
    pub irreversible: Vec<Irreversible>,
}

/// One compensated call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepReport {
    /// The original call: its `tool.called` event's sequence number.
    pub call_seq: u64,
    /// The original call's tool.
    pub tool: String,
    /// The compensating tool, `server.tool`.
    pub compensation: String,
    pub status: StepStatus,
    /// Why it failed or did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The `rollback.step` event this run recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Compensated by this run.
    Done,
    /// Compensated by an earlier run: not repeated.
    AlreadyDone,
    /// This run tried and failed: the rollback stopped here.
    Failed,
    /// Another run holds the step (or one stopped inside it): the rollback stopped here.
    InProgress,
    /// Not reached: an earlier step stopped the rollback.
    NotRun,
}

/// A call that succeeded and cannot be undone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Irreversible {
    pub call_seq: u64,
    pub tool: String,
    pub reason: String,
}

/// A compensation as recorded with its call's outcome.
struct Recorded {
    server: String,
    tool: String,
    arguments: Value,
}

impl Recorded {
    fn of(event: &Event) -> Option<Recorded> {
        let c = event.data.get("compensation")?;
        Some(Recorded {
            server: c.get("server")?.as_str()?.to_owned(),
            tool: c.get("tool")?.as_str()?.to_owned(),
            arguments: c.get("arguments").filter(|a| a.is_object())?.clone(),
        })
    }

    fn name(&self) -> String {
        format!("{}.{}", self.server, self.tool)
    }
}

/// Whether a `tool.called` event is a call that succeeded upstream.
fn succeeded(event: &Event) -> bool {
    event.data.get("result").and_then(Value::as_str) == Some("ok")
        && event.data.get("is_error").and_then(Value::as_bool) == Some(false)
}

fn tool_of(event: &Event) -> String {
    event
        .data
        .get("tool")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Why a successful call cannot be undone, if it cannot.
fn irreversible(event: &Event) -> Option<Irreversible> {
    if !succeeded(event) || Recorded::of(event).is_some() {
        return None;
    }
    let reason = match event.data.get("compensation_error").and_then(Value::as_str) {
        Some(e) => format!("its compensation could not be formed: {e}"),
        None if event.data.get("irreversible") == Some(&Value::Bool(true)) => {
            "its tool declares no compensation (irreversible)".to_owned()
        }
        // A read, or a call recorded before compensations: nothing known to undo.
        None => return None,
    };
    Some(Irreversible {
        call_seq: event.seq,
        tool: tool_of(event),
        reason,
    })
}

/// A short, single-line account of an upstream's refusal or error.
fn detail(answer: &Value) -> String {
    let text = answer
        .pointer("/content/0/text")
        .or_else(|| answer.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the upstream reported an error");
    let mut short: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect();
    if text.chars().count() > MAX_DETAIL {
        short.push('…');
    }
    short
}

/// How one step's compensating call ended.
struct Ran {
    succeeded: bool,
    /// `ok`, `error` (upstream), `refused` (the decision or the gateway), `failed`.
    result: &'static str,
    detail: Option<String>,
}

impl Calls {
    /// Rolls back every compensable call of `mandate` (newest first), or only the call
    /// recorded at `call` (its `tool.called` event's sequence number).
    pub async fn rollback(
        &self,
        caller: &Principal,
        mandate: MandateId,
        call: Option<u64>,
    ) -> Result<RollbackReport, CoreError> {
        let found = self.mandate_of(caller, mandate).await?;
        if !self.may_decide(caller, &found) {
            return Err(CoreError::not_found("mandate", mandate));
        }
        // The outcomes are appended without waiting: make every one so far durable.
        self.inner.ledger.flush().await?;
        let mut calls = match call {
            Some(seq) => vec![self.called_event(&found, seq).await?],
            None => self.called_events(&found).await?,
        };
        calls.sort_by_key(|e| std::cmp::Reverse(e.seq));
        let irreversible: Vec<Irreversible> = calls.iter().filter_map(irreversible).collect();
        if let (Some(seq), Some(why)) = (call, irreversible.first()) {
            return Err(CoreError::invalid(format!(
                "call `{seq}` of `{}` cannot be rolled back: {}",
                why.tool, why.reason
            )));
        }
        let mut steps = Vec::new();
        let mut stopped = false;
        for event in &calls {
            let Some(recorded) = Recorded::of(event) else {
                continue;
            };
            let mut step = StepReport {
                call_seq: event.seq,
                tool: tool_of(event),
                compensation: recorded.name(),
                status: StepStatus::NotRun,
                detail: None,
                event_seq: None,
            };
            if !stopped {
                self.run_step(caller, &found, event, &recorded, &mut step)
                    .await?;
                stopped = !matches!(step.status, StepStatus::Done | StepStatus::AlreadyDone);
            }
            steps.push(step);
        }
        if call.is_some() && steps.is_empty() {
            return Err(CoreError::invalid(format!(
                "call `{}` has no recorded compensation (it failed, or its tool only reads: \
                 nothing to undo)",
                call.unwrap_or_default()
            )));
        }
        Ok(RollbackReport {
            mandate_id: mandate,
            complete: !stopped,
            steps,
            irreversible,
        })
    }

    /// The `tool.called` event at `seq`, if it is a call under `mandate`; anything else
    /// (a denied or held call's decision, another mandate's call) is refused.
    async fn called_event(&self, mandate: &Mandate, seq: u64) -> Result<Event, CoreError> {
        let filter = AuditFilter {
            mandate: Some(mandate.id),
            kind: Some(EventKind::ToolCalled),
            ..AuditFilter::default()
        };
        let found = self
            .store()
            .audit_events(mandate.tenant_id, &filter, Some(seq.saturating_sub(1)), 1)
            .await?;
        found.into_iter().find(|e| e.seq == seq).ok_or_else(|| {
            CoreError::invalid(format!(
                "event `{seq}` is not a call forwarded under mandate `{}` (a denied or held call \
                 was never forwarded: there is nothing to undo)",
                mandate.id
            ))
        })
    }

    async fn called_events(&self, mandate: &Mandate) -> Result<Vec<Event>, CoreError> {
        let filter = AuditFilter {
            mandate: Some(mandate.id),
            kind: Some(EventKind::ToolCalled),
            ..AuditFilter::default()
        };
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store()
                .audit_events(mandate.tenant_id, &filter, after, PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|e| e.seq);
            out.extend(page);
            if out.len() > MAX_CALLS {
                return Err(CoreError::invalid(format!(
                    "mandate `{}` has more than {MAX_CALLS} calls: roll them back one by one",
                    mandate.id
                )));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Runs one step unless an earlier run did or holds it; fills in `step`.
    async fn run_step(
        &self,
        caller: &Principal,
        mandate: &Mandate,
        event: &Event,
        recorded: &Recorded,
        step: &mut StepReport,
    ) -> Result<(), CoreError> {
        let now = self.inner.service.clock().now();
        let claim = self
            .store()
            .claim_rollback_step(
                mandate.tenant_id,
                mandate.id,
                event.seq,
                &caller.label(),
                now,
            )
            .await?;
        match claim {
            StepClaim::Done => {
                step.status = StepStatus::AlreadyDone;
                return Ok(());
            }
            StepClaim::Running => {
                step.status = StepStatus::InProgress;
                step.detail = Some(
                    "another rollback holds this step (or stopped inside it: whether it ran is \
                     unknown, so it is not repeated)"
                        .into(),
                );
                return Ok(());
            }
            StepClaim::Claimed => {}
        }
        let ran = match self.compensate(caller, mandate, event, recorded).await {
            Ok(ran) => ran,
            Err(e) => Ran {
                succeeded: false,
                result: "failed",
                detail: Some(e.to_string()),
            },
        };
        let outcome = json!({"result": ran.result, "detail": ran.detail});
        let finished = self.inner.service.clock().now();
        self.store()
            .finish_rollback_step(
                mandate.tenant_id,
                event.seq,
                ran.succeeded,
                &outcome,
                finished,
            )
            .await?;
        let mut data = obj(json!({
            "call_seq": event.seq,
            "call_hash": event.hash,
            "tool": recorded.name(),
            "arguments_hash": arguments_hash(&recorded.arguments),
            "result": ran.result,
            "succeeded": ran.succeeded,
        }));
        if let Some(d) = &ran.detail {
            data.insert("detail".into(), json!(d));
        }
        let recorded_event = self
            .inner
            .ledger
            .append(NewEvent {
                tenant_id: mandate.tenant_id,
                kind: EventKind::RollbackStep,
                mandate_id: Some(mandate.id),
                agent_id: event.agent_id,
                human_id: match caller {
                    Principal::Human { id, .. } => Some(*id),
                    _ => Some(mandate.terms.human_id),
                },
                actor: vec![caller.label()],
                data,
            })
            .await?;
        step.event_seq = Some(recorded_event.seq);
        step.status = if ran.succeeded {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        step.detail = ran.detail;
        Ok(())
    }

    /// Makes the compensating call through the gateway, decided as a rollback.
    async fn compensate(
        &self,
        caller: &Principal,
        mandate: &Mandate,
        event: &Event,
        recorded: &Recorded,
    ) -> Result<Ran, CallError> {
        let refused = |detail: String| Ran {
            succeeded: false,
            result: "refused",
            detail: Some(detail),
        };
        // As it is now: its status and budget used decide.
        let Some(mandate) = self.store().mandate(mandate.tenant_id, mandate.id).await? else {
            return Ok(refused("the mandate no longer exists".into()));
        };
        let agent = self
            .store()
            .agent(mandate.tenant_id, mandate.terms.agent_id)
            .await?
            .filter(|a| a.status == AgentStatus::Active);
        let Some(agent) = agent else {
            return Ok(refused("the mandate's agent is unknown or disabled".into()));
        };
        let Some(listing) = self
            .inner
            .forwarder
            .find(&mandate, &recorded.name())
            .await?
        else {
            return Ok(refused(format!(
                "the compensating tool `{}` is not available",
                recorded.name()
            )));
        };
        let executor = Caller::executor(caller, agent, mandate, Vec::new());
        let answer = self
            .execute(
                &executor,
                &listing,
                &recorded.arguments,
                Execution::Rollback(event.seq),
            )
            .await?;
        Ok(match answer {
            Ok(result)
                if !result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false) =>
            {
                Ran {
                    succeeded: true,
                    result: "ok",
                    detail: None,
                }
            }
            Ok(result) => Ran {
                succeeded: false,
                result: "error",
                detail: Some(detail(&result)),
            },
            Err(refusal) => refused(detail(&refusal)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use mandate_audit::Head;
    use mandate_types::TenantId;
    use serde_json::Map;

    fn called(data: Value) -> Event {
        let mut new = NewEvent::new(TenantId::generate(), EventKind::ToolCalled, "agent:x");
        new.data = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Event::chain(&Head::genesis(), new, Utc::now())
    }

    #[test]
    fn only_well_formed_recorded_compensations_are_run() {
        let ok = called(
            json!({"tool": "bank.transfer", "result": "ok", "is_error": false,
            "compensation": {"server": "bank", "tool": "transfer", "arguments": {"a": 1}}}),
        );
        let r = Recorded::of(&ok).unwrap();
        assert_eq!(r.name(), "bank.transfer");
        assert!(irreversible(&ok).is_none());
        for bad in [
            json!({"server": "bank", "tool": "transfer", "arguments": [1]}),
            json!({"server": "bank", "arguments": {}}),
            json!({"server": 1, "tool": "transfer", "arguments": {}}),
            json!("bank.transfer"),
        ] {
            let e = called(json!({"result": "ok", "is_error": false, "compensation": bad}));
            assert!(Recorded::of(&e).is_none(), "{bad}");
        }
    }

    #[test]
    fn successful_calls_without_compensation_are_reported_irreversible() {
        let email = called(
            json!({"tool": "bank.send_email", "result": "ok", "is_error": false,
            "irreversible": true}),
        );
        assert!(
            irreversible(&email)
                .unwrap()
                .reason
                .contains("no compensation")
        );
        let read = called(json!({"tool": "bank.get_balance", "result": "ok", "is_error": false}));
        assert!(irreversible(&read).is_none());
        let unformed = called(
            json!({"tool": "bank.transfer", "result": "ok", "is_error": false,
            "compensation_error": "the call has no argument at `/to`"}),
        );
        assert!(irreversible(&unformed).unwrap().reason.contains("`/to`"));
        // A failed call changed nothing to undo.
        let failed = called(json!({"tool": "bank.transfer", "result": "ok", "is_error": true}));
        assert!(irreversible(&failed).is_none());
        let unavailable = called(
            json!({"tool": "bank.transfer", "result": "upstream_unavailable", "is_error": true}),
        );
        assert!(irreversible(&unavailable).is_none());
    }

    #[test]
    fn details_are_short_and_single_line() {
        let long =
            json!({"content": [{"type": "text", "text": format!("a\nb{}", "x".repeat(1000))}]});
        let d = detail(&long);
        assert!(!d.contains('\n'));
        assert!(d.chars().count() <= MAX_DETAIL + 1);
        assert_eq!(detail(&json!({"message": "denied"})), "denied");
        assert_eq!(detail(&json!(null)), "the upstream reported an error");
    }
}
