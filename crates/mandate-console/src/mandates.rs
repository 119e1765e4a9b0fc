//! Mandates as their humans see them: what awaits consent, a filterable list, and one
//! mandate's page (terms, consent record, budget used, timeline, delegation tree) with
//! the buttons to consent, complete, revoke and roll back.

use std::collections::HashSet;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_audit::{Event, EventKind};
use mandate_core::calls::StepStatus;
use mandate_core::{ConsentRequest, CoreError, EndRequest, MandateView};
use mandate_domain::{ConsentChannel, ConsentDecision, Mandate, MandateStatus, Principal};
use mandate_store::{AuditFilter, MandateFilter, PageRequest};
use mandate_types::{AgentId, MandateId};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::approvals::{agent_label, human_label};
use crate::layout::{Flash, badge, money, page, when};
use crate::names::Names;
use crate::tree::{NodeState, Tree, svg};
use crate::{Console, Form, Session, UiError, csrf_field};

/// Mandates as a table, their agents by name.
pub(crate) async fn mandate_rows(console: &Console, mandates: &[Mandate]) -> Markup {
    let names = match mandates.first() {
        Some(first) => {
            Names::of_agents(
                console,
                first.tenant_id,
                mandates.iter().map(|m| m.terms.agent_id),
            )
            .await
        }
        None => Names::default(),
    };
    html! {
        @if mandates.is_empty() {
            p class="muted" { "No mandates here." }
        } @else {
            table {
                thead { tr { th scope="col" { "Intent" } th scope="col" { "Agent" } th scope="col" { "Status" } th scope="col" { "Calls used" } th scope="col" { "Expires" } } }
                tbody {
                    @for m in mandates {
                        tr {
                            td { a href={ "/ui/mandates/" (m.id) } { (m.terms.intent) } }
                            td { (names.agent(m.terms.agent_id)) }
                            td { (badge(m.status.as_str())) }
                            td { (m.usage.calls) @if let Some(max) = m.terms.budgets.max_calls { " / " (max) } }
                            td { (when(m.terms.expires_at)) }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn home(
    State(console): State<Console>,
    session: Session,
) -> Result<Markup, UiError> {
    let me = session.principal();
    let awaiting = console
        .service
        .list_mandates(
            &me,
            MandateFilter {
                status: Some(MandateStatus::Requested),
                ..MandateFilter::default()
            },
            PageRequest::first(50),
        )
        .await?
        .items;
    let active = console
        .service
        .list_mandates(
            &me,
            MandateFilter {
                status: Some(MandateStatus::Active),
                ..MandateFilter::default()
            },
            PageRequest::first(50),
        )
        .await?
        .items;
    let awaiting = mandate_rows(&console, &awaiting).await;
    let active = mandate_rows(&console, &active).await;
    Ok(page(
        "Console",
        &session,
        None,
        html! {
            h1 { "Hello, " (session.signed.human.display_name) }
            p { a href="/ui/approvals" { "Open the approvals inbox" } }
            h2 { "Waiting for your consent" }
            (awaiting)
            h2 { "Your active mandates" }
            (active)
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    agent: Option<String>,
    after: Option<String>,
}

pub(crate) async fn list(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let mut problems = Vec::new();
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") | Some("all") => None,
        Some(s) => match MandateStatus::ALL.iter().find(|v| v.as_str() == s) {
            Some(v) => Some(*v),
            None => {
                problems.push("Unknown status.".to_owned());
                None
            }
        },
    };
    let agent = match q.agent.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => match a.parse::<AgentId>() {
            Ok(id) => Some(id),
            Err(_) => {
                problems.push("The agent filter must be an agent id (agt_…).".to_owned());
                None
            }
        },
    };
    let page_req = PageRequest::new(q.after.clone(), Some(50))
        .map_err(|e| CoreError::invalid(e.to_string()))?;
    let found = if problems.is_empty() {
        console
            .service
            .list_mandates(
                &session.viewer(),
                MandateFilter {
                    status,
                    agent,
                    ..MandateFilter::default()
                },
                page_req,
            )
            .await?
    } else {
        mandate_store::Page::empty()
    };
    let flash = (!problems.is_empty()).then(|| Flash::Error(problems.join(" ")));
    let status_text = q.status.clone().unwrap_or_default();
    let rows = mandate_rows(&console, &found.items).await;
    let body = page(
        "Mandates",
        &session,
        flash.as_ref(),
        html! {
            h1 { "Mandates" }
            form method="get" action="/ui/mandates" class="filters" {
                div {
                    label for="status" { "Status" }
                    select id="status" name="status" {
                        option value="all" { "all" }
                        @for s in MandateStatus::ALL {
                            option value=(s.as_str()) selected[s.as_str() == status_text] { (s.as_str()) }
                        }
                    }
                }
                div {
                    label for="agent" { "Agent id" }
                    input id="agent" type="text" name="agent" value=(q.agent.clone().unwrap_or_default()) placeholder="agt_…";
                }
                button type="submit" class="secondary" { "Filter" }
            }
            (rows)
            @if let Some(next) = &found.next {
                p { a href={ "/ui/mandates?status=" (status_text) "&after=" (next.0) } { "Next page" } }
            }
        },
    );
    let code = if flash.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((code, body).into_response())
}

/// How deep an event sits in the mandate's story, for the timeline's indentation.
fn depth(kind: &str) -> u8 {
    match kind {
        "token.issued" | "token.renewed" | "token.revoked" | "approval.requested"
        | "approval.granted" | "approval.denied" | "proposal.recorded" | "proposal.executed"
        | "drift.alert" | "rollback.step" => 1,
        "token.exchanged" | "decision" | "approval.used" => 2,
        "tool.called" | "secret.used" => 3,
        _ => 0,
    }
}

/// The data fields a timeline row shows, in this order.
const SHOWN: [&str; 10] = [
    "tool",
    "decision",
    "outcome",
    "reason",
    "channel",
    "status",
    "rollback_of",
    "call_seq",
    "result",
    "detail",
];

/// What a row reads as: its kind, its actor and the fields shown.
fn reads_as(e: &Event) -> (&str, &[String], Vec<(&str, &Value)>) {
    let fields = SHOWN
        .iter()
        .filter_map(|key| e.data.get(*key).map(|v| (*key, v)))
        .collect();
    (e.kind.as_str(), &e.actor, fields)
}

/// Runs of consecutive events that read the same (an agent retrying one refused call
/// forty times): each run is its first and last event and how many it holds.
fn runs(events: &[Event]) -> Vec<(&Event, &Event, usize)> {
    let mut out: Vec<(&Event, &Event, usize)> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some((first, last, n)) if reads_as(first) == reads_as(e) => {
                *last = e;
                *n += 1;
            }
            _ => out.push((e, e, 1)),
        }
    }
    out
}

fn timeline(events: &[Event], names: &Names) -> Markup {
    html! {
        @if events.is_empty() {
            p class="muted" { "No events yet." }
        } @else {
            ol class="timeline" {
                @for (e, last, n) in runs(events) {
                    li class={ "d" (depth(e.kind.as_str())) } {
                        @if n > 1 {
                            "#" (e.seq) "–#" (last.seq) " · " (when(e.at)) " – " (when(last.at))
                        } @else {
                            "#" (e.seq) " · " (when(e.at))
                        }
                        " · " strong { (e.kind.as_str()) } " by " (names.actors(&e.actor))
                        @for (key, v) in reads_as(e).2 {
                            " · " (key) "=" (v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        }
                        @if n > 1 {
                            " · " strong class="count" { "×" (n) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

async fn mandate_for(
    console: &Console,
    session: &Session,
    id: &str,
) -> Result<(MandateView, Principal), UiError> {
    let id: MandateId = id.parse().map_err(|_| UiError::NotFound)?;
    session
        .seen_by(|p| async move { console.service.mandate(&p, id).await })
        .await
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Markup, UiError> {
    let (view, viewer) = mandate_for(&console, &session, &id).await?;
    let flash = match q.done.as_deref() {
        Some("granted") => Some(Flash::Done(
            "You consented. The mandate is active once every required person has.".to_owned(),
        )),
        Some("denied") => Some(Flash::Done(
            "You refused; the mandate is denied.".to_owned(),
        )),
        Some("completed") => Some(Flash::Done(
            "Completed. Every token below it is revoked.".to_owned(),
        )),
        Some("revoked") => Some(Flash::Done(
            "Revoked. Every token below it is revoked.".to_owned(),
        )),
        Some("rolled_back") => Some(Flash::Done(
            "Rolled back: every call that can be undone is undone (see the timeline).".to_owned(),
        )),
        _ => None,
    };
    render(&console, &session, &viewer, &view, flash).await
}

async fn render(
    console: &Console,
    session: &Session,
    viewer: &Principal,
    view: &MandateView,
    flash: Option<Flash>,
) -> Result<Markup, UiError> {
    let m = &view.mandate;
    let t = &m.terms;
    let events = console
        .service
        .audit_events(
            viewer,
            AuditFilter {
                mandate: Some(m.id),
                ..AuditFilter::default()
            },
            None,
            1000,
        )
        .await?;
    let reversible = events
        .iter()
        .any(|e| e.kind == EventKind::ToolCalled && e.data.contains_key("compensation"));
    let agent = agent_label(console, m.tenant_id, t.agent_id).await;
    let grantor = human_label(console, m.tenant_id, t.human_id).await;
    let mut consenters = Vec::with_capacity(view.consents.len());
    for c in &view.consents {
        consenters.push(human_label(console, m.tenant_id, c.human_id).await);
    }
    let tree = delegation_tree(console, m, &events).await;
    let mut labels: Vec<&String> = events.iter().flat_map(|e| e.actor.iter()).collect();
    labels.push(&m.requested_by);
    let names = Names::of_labels(console, m.tenant_id, &labels).await;
    let mut owners = Vec::with_capacity(t.owners.len());
    for o in &t.owners {
        owners.push(human_label(console, m.tenant_id, *o).await);
    }
    let mut awaiting = Vec::with_capacity(view.awaiting.len());
    for h in &view.awaiting {
        awaiting.push(human_label(console, m.tenant_id, *h).await);
    }
    let me = session.signed.human.id;
    let my_turn = m.status == MandateStatus::Requested && view.awaiting.contains(&me);
    Ok(page(
        &format!("Mandate {}", m.id),
        session,
        flash.as_ref(),
        html! {
            h1 { "Mandate " (badge(m.status.as_str())) }
            p class="muted" { code { (m.id) } }
            h2 { "Terms" }
            dl class="terms" {
                dt { "Intent" } dd { (t.intent) }
                @if let Some(p) = &t.purpose { dt { "Purpose" } dd { (p) } }
                dt { "Agent" } dd { (agent) }
                dt { "On behalf of" } dd { (grantor) }
                dt { "Tools" } dd {
                    ul { @for g in &t.scope.tools {
                        li { code { (g.tool) }
                            @if !g.constraints.is_empty() { " — " (serde_json::to_string(&g.constraints).unwrap_or_default()) } }
                    } }
                }
                dt { "Data up to" } dd { (t.data_ceiling.as_str()) }
                dt { "Mode" } dd { (t.mode.as_str()) @if t.mode == mandate_types::MandateMode::Recommend { " (calls become proposals)" } }
                dt { "Per-action approval" } dd {
                    @if t.approval.tiers.is_empty() && t.approval.tags.is_empty() { "none" }
                    @for tier in &t.approval.tiers { (badge(tier.as_str())) " " }
                    @for tag in &t.approval.tags { code { (tag) } " " }
                }
                dt { "Budget used" } dd {
                    (m.usage.calls) @if m.usage.calls == 1 { " call" } @else { " calls" } @if let Some(max) = t.budgets.max_calls { " of " (max) }
                    @if t.budgets.max_amount.is_some() || m.usage.amount > 0 {
                        "; spent " (money(m.usage.amount, t.budgets.currency.as_deref())) @if let Some(max) = t.budgets.max_amount { " of " (money(max, t.budgets.currency.as_deref())) }
                    }
                }
                @if !owners.is_empty() { dt { "Data owners" } dd { (owners.join(", ")) } }
                @if let Some(nb) = t.not_before { dt { "Not before" } dd { (when(nb)) } }
                dt { "Expires" } dd { (when(t.expires_at)) }
                dt { "Delegation depth" } dd { (t.max_delegation_depth) }
                dt { "Requested by" } dd { (names.label(&m.requested_by)) " at " (when(m.created_at)) }
                @if let Some(r) = &m.end_reason { dt { "Ended because" } dd { (r) } }
                dt { "Terms hash" } dd { code { (m.terms_hash.0) } }
            }
            @if my_turn {
                h2 { "Your consent" }
                form method="post" action={ "/ui/mandates/" (m.id) "/consent" } {
                    (csrf_field(session))
                    input type="hidden" name="terms_hash" value=(m.terms_hash.0);
                    label for="consent-comment" { "Comment (optional)" }
                    textarea id="consent-comment" name="comment" rows="2" maxlength="1000" {}
                    button type="submit" name="decision" value="granted" { "Consent" }
                    button type="submit" name="decision" value="denied" class="danger" { "Refuse" }
                }
            }
            h2 { "Consent record" }
            @if view.consents.is_empty() { p class="muted" { "Nobody has answered yet." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Who" } th scope="col" { "Answer" } th scope="col" { "Channel" } th scope="col" { "When" } th scope="col" { "Comment" } } }
                    tbody { @for (c, who) in view.consents.iter().zip(&consenters) {
                        tr {
                            td { (who) }
                            td { (badge(match c.decision { ConsentDecision::Granted => "granted", ConsentDecision::Denied => "denied" })) }
                            td { (match c.channel { ConsentChannel::Api => "api", ConsentChannel::Console => "console", ConsentChannel::Oauth => "oauth" }) }
                            td { (when(c.decided_at)) }
                            td { (c.comment.clone().unwrap_or_default()) }
                        }
                    } }
                }
            }
            @if !view.awaiting.is_empty() {
                p { "Still waiting for: " (awaiting.join(", ")) }
            }
            @if m.status == MandateStatus::Active {
                h2 { "End it" }
                form method="post" action={ "/ui/mandates/" (m.id) "/end" } {
                    (csrf_field(session))
                    label for="end-reason" { "Reason (optional)" }
                    input id="end-reason" type="text" name="reason" maxlength="500";
                    button type="submit" name="ending" value="complete" class="secondary" { "Complete" }
                    button type="submit" name="ending" value="revoke" class="danger" { "Revoke" }
                }
            }
            @if reversible {
                h2 { "Roll back" }
                p { "Undo the agent's calls that can be undone, newest first, through the gateway on your authority. Calls already undone are not repeated." }
                form method="post" action={ "/ui/mandates/" (m.id) "/rollback" } {
                    (csrf_field(session))
                    button type="submit" class="danger" { "Roll back" }
                }
            }
            h2 { "Delegation tree" }
            (tree)
            h2 { "Timeline" }
            (timeline(&events, &names))
        },
    ))
}

/// Who received a token from whom under this mandate, from its token events.
async fn delegation_tree(console: &Console, m: &Mandate, events: &[Event]) -> Markup {
    let mut tree = Tree::from_chains(
        events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::TokenIssued | EventKind::TokenExchanged | EventKind::TokenRenewed
                )
            })
            .map(|e| e.actor.iter().map(String::as_str)),
    );
    if tree.is_empty() {
        return html! { p class="muted" { "No token has been issued under this mandate yet." } };
    }
    // Each hop's scope, and whether it can still act: its tokens' jtis, expiries and
    // scopes from their events; revocations from `token.revoked` events; a mandate
    // ended by someone's hand ended every token, one that expired expired them.
    let revoked: HashSet<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::TokenRevoked)
        .filter_map(|e| e.data.get("revoked").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let now = console.service.clock().now();
    let mut held: Vec<Vec<(bool, bool)>> = vec![Vec::new(); tree.nodes.len()];
    for e in events.iter().filter(|e| {
        matches!(
            e.kind,
            EventKind::TokenIssued | EventKind::TokenExchanged | EventKind::TokenRenewed
        )
    }) {
        let Some(i) = tree.find(e.actor.iter().map(String::as_str)) else {
            continue;
        };
        let jti = e.data.get("jti").and_then(Value::as_str);
        let expired = e
            .data
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t <= now);
        if let (Some(h), Some(node)) = (held.get_mut(i), tree.nodes.get_mut(i)) {
            h.push((jti.is_some_and(|j| revoked.contains(j)), expired));
            for tool in e
                .data
                .get("scope")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(tool) = tool.as_str()
                    && !node.scope.iter().any(|s| s == tool)
                {
                    node.scope.push(tool.to_owned());
                }
            }
        }
    }
    for (node, tokens) in tree.nodes.iter_mut().zip(&held) {
        node.state = match m.status {
            MandateStatus::Revoked | MandateStatus::Completed | MandateStatus::Denied => {
                NodeState::Revoked
            }
            MandateStatus::Expired => NodeState::Expired,
            _ if tokens.is_empty() => NodeState::Live,
            _ if tokens.iter().all(|(r, _)| *r) => NodeState::Revoked,
            _ if tokens.iter().all(|(r, x)| *r || *x) => NodeState::Expired,
            _ => NodeState::Live,
        };
    }
    // The agents are named only after the viewer was allowed to see the mandate.
    for node in &mut tree.nodes {
        if let Ok(id) = node.agent.parse::<AgentId>()
            && let Some(name) = console.service.agent_name(m.tenant_id, id).await
        {
            node.label = name;
        }
    }
    html! {
        (svg(&tree, "Delegation tree of this mandate"))
        p class="muted" { "Each box is an agent holding tokens under this mandate, with the tools its tokens carry; a line runs from the agent that delegated to the one that received. A dashed grey box can no longer act: its tokens were revoked or expired." }
    }
}

async fn rerender_with(
    console: &Console,
    session: &Session,
    id: &str,
    e: CoreError,
) -> Result<Response, UiError> {
    let (status, message) = UiError::Core(e).shown();
    let (view, viewer) = mandate_for(console, session, id).await?;
    let body = render(
        console,
        session,
        &viewer,
        &view,
        Some(Flash::Error(message)),
    )
    .await?;
    Ok((status, body).into_response())
}

pub(crate) async fn consent(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let decision = match form.get("decision") {
        Some("granted") => ConsentDecision::Granted,
        Some("denied") => ConsentDecision::Denied,
        _ => {
            return rerender_with(
                &console,
                &session,
                &id,
                CoreError::invalid("Choose Consent or Refuse."),
            )
            .await;
        }
    };
    let (view, _) = mandate_for(&console, &session, &id).await?;
    let request = ConsentRequest {
        decision,
        terms_hash: form.get("terms_hash").map(str::to_owned),
        comment: form.get("comment").map(str::to_owned),
    };
    match console
        .service
        .consent(
            &session.principal(),
            view.mandate.id,
            request,
            ConsentChannel::Console,
        )
        .await
    {
        Ok(_) => {
            let done = match decision {
                ConsentDecision::Granted => "granted",
                ConsentDecision::Denied => "denied",
            };
            Ok(
                Redirect::to(&format!("/ui/mandates/{}?done={done}", view.mandate.id))
                    .into_response(),
            )
        }
        Err(e) if shown_on_page(&e) => rerender_with(&console, &session, &id, e).await,
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn end(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let (view, viewer) = mandate_for(&console, &session, &id).await?;
    let request = EndRequest {
        reason: form.get("reason").map(str::to_owned),
    };
    let (result, done) = match form.get("ending") {
        Some("complete") => (
            console
                .service
                .complete(&viewer, view.mandate.id, request)
                .await,
            "completed",
        ),
        Some("revoke") => (
            console
                .service
                .revoke(&viewer, view.mandate.id, request)
                .await,
            "revoked",
        ),
        _ => {
            return rerender_with(
                &console,
                &session,
                &id,
                CoreError::invalid("Choose Complete or Revoke."),
            )
            .await;
        }
    };
    match result {
        Ok(_) => Ok(
            Redirect::to(&format!("/ui/mandates/{}?done={done}", view.mandate.id)).into_response(),
        ),
        Err(e) if shown_on_page(&e) => rerender_with(&console, &session, &id, e).await,
        Err(e) => Err(e.into()),
    }
}

/// Rolls the mandate back (`Calls::rollback`): complete, the page says so; stopped, it
/// says where and why (status 409), and the button runs it again.
pub(crate) async fn rollback(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let (view, viewer) = mandate_for(&console, &session, &id).await?;
    let calls = crate::approvals::calls(&console)?;
    match calls.rollback(&viewer, view.mandate.id, None).await {
        Ok(report) if report.complete => Ok(Redirect::to(&format!(
            "/ui/mandates/{}?done=rolled_back",
            view.mandate.id
        ))
        .into_response()),
        Ok(report) => {
            let done = report
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Done)
                .count();
            let stopped = report
                .steps
                .iter()
                .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::InProgress));
            let why = stopped.map_or_else(String::new, |s| {
                format!(
                    " It stopped at call {} ({}): {}.",
                    s.call_seq,
                    s.tool,
                    s.detail.as_deref().unwrap_or("failed")
                )
            });
            rerender_with(
                &console,
                &session,
                &id,
                CoreError::Conflict(format!(
                    "{done} step(s) undone now.{why} Run the rollback again to continue."
                )),
            )
            .await
        }
        Err(e) if shown_on_page(&e) => rerender_with(&console, &session, &id, e).await,
        Err(e) => Err(e.into()),
    }
}

/// Refusals a person can act on: shown on the mandate's page, which is rendered again;
/// anything else is an error page.
fn shown_on_page(e: &CoreError) -> bool {
    matches!(
        e,
        CoreError::Invalid { .. }
            | CoreError::Conflict(_)
            | CoreError::Lifecycle(_)
            | CoreError::Forbidden(_)
            | CoreError::Expired(_)
    )
}

#[cfg(test)]
mod timeline_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use chrono::{TimeZone as _, Utc};
    use mandate_audit::{EventKind, Head, NewEvent};
    use mandate_types::TenantId;

    use super::*;
    use std::collections::HashMap;

    fn chain(news: Vec<NewEvent>) -> Vec<Event> {
        let mut head = Head::genesis();
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).unwrap();
        news.into_iter()
            .map(|n| {
                let e = Event::chain(&head, n, at);
                head = e.head();
                e
            })
            .collect()
    }

    #[test]
    fn identical_consecutive_events_collapse_with_their_count() {
        let t = TenantId::generate();
        let refused = || {
            NewEvent::new(t, EventKind::Decision, "agent:agt_a")
                .with("tool", "bank.transfer")
                .with("outcome", "deny")
                .with("arguments_hash", "sha256:differs-but-is-not-shown")
        };
        let mut news = vec![NewEvent::new(t, EventKind::TokenIssued, "agent:agt_a")];
        news.extend((0..40).map(|_| refused()));
        // Another outcome breaks the run; the same again starts a new one.
        news.push(
            NewEvent::new(t, EventKind::Decision, "agent:agt_a")
                .with("tool", "bank.transfer")
                .with("outcome", "allow"),
        );
        news.push(refused());
        let events = chain(news);
        let runs = runs(&events);
        let counts: Vec<usize> = runs.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(counts, vec![1, 40, 1, 1]);
        assert_eq!((runs[1].0.seq, runs[1].1.seq), (2, 41));
        let names = Names(HashMap::from([(
            "agent:agt_a".to_owned(),
            "Travel <bot>".to_owned(),
        )]));
        let html = timeline(&events, &names).into_string();
        assert!(
            html.contains(r#"<span title="agent:agt_a">Travel &lt;bot&gt;</span>"#),
            "{html}"
        );
        assert!(html.contains("#2–#41"), "{html}");
        assert!(html.contains("×40"), "{html}");
        assert_eq!(html.matches("<li").count(), 4, "{html}");
    }
}
