//! The approvals inbox: calls held for a human, each bound to its exact arguments; and
//! the proposals of recommend-only mandates. Deciding goes through the core's use
//! cases (`mandate_core::calls`), so the console can do exactly what `/v1/approvals`
//! allows.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::CoreError;
use mandate_core::calls::Calls;
use mandate_domain::{Approval, ApprovalStatus, HeldCall, Principal, Proposal};
use mandate_store::{ApprovalFilter, PageRequest};
use mandate_types::{AgentId, ApprovalId, HumanId, MandateId, ProposalId, TenantId};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Flash, badge, page, when};
use crate::names::Names;
use crate::{Console, Form, Session, UiError, csrf_field};

pub(crate) fn calls(console: &Console) -> Result<&Calls, UiError> {
    console.calls.as_ref().ok_or_else(|| {
        UiError::Core(CoreError::Forbidden(
            "This server runs without the gateway, so no call is ever held.".to_owned(),
        ))
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct InboxQuery {
    status: Option<String>,
    done: Option<String>,
}

fn status_of(q: &InboxQuery) -> Result<Option<ApprovalStatus>, UiError> {
    match q.status.as_deref() {
        None | Some("") => Ok(Some(ApprovalStatus::Pending)),
        Some("all") => Ok(None),
        Some(s) => ApprovalStatus::parse(s)
            .map(Some)
            .ok_or_else(|| CoreError::invalid("unknown approval status").into()),
    }
}

/// The agent's name where the store has it, its id otherwise. Only called for a call
/// the viewer was already allowed to see.
pub(crate) async fn agent_label(console: &Console, tenant: TenantId, id: AgentId) -> String {
    match console.service.agent_name(tenant, id).await {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

/// A person's name where the store has it, with their id.
pub(crate) async fn human_label(console: &Console, tenant: TenantId, id: HumanId) -> String {
    match console.service.human_name(tenant, id).await {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

async fn intent_of(console: &Console, viewer: &Principal, id: MandateId) -> String {
    match console.service.mandate(viewer, id).await {
        Ok(view) => view.mandate.terms.intent,
        Err(_) => String::new(),
    }
}

async fn list(console: &Console, session: &Session, q: &InboxQuery) -> Result<Markup, UiError> {
    let calls = calls(console)?;
    let viewer = session.viewer();
    let filter = ApprovalFilter {
        status: status_of(q)?,
        mandate: None,
    };
    let approvals = calls
        .list_approvals(&viewer, filter, PageRequest::first(200))
        .await?
        .items;
    let mut rows = Vec::with_capacity(approvals.len());
    for a in approvals {
        let agent = agent_label(console, a.call.tenant_id, a.call.agent_id).await;
        let intent = intent_of(console, &viewer, a.call.mandate_id).await;
        rows.push((a, agent, intent));
    }
    Ok(html! {
        @if rows.is_empty() {
            p class="muted" { "No approvals here." }
        } @else {
            table {
                caption class="muted" { (rows.len()) " approval(s)" }
                thead { tr { th scope="col" { "Tool" } th scope="col" { "Tier" } th scope="col" { "Agent" } th scope="col" { "Intent" } th scope="col" { "Status" } th scope="col" { "Expires" } } }
                tbody {
                    @for (a, agent, intent) in &rows {
                        tr {
                            td { a href={ "/ui/approvals/" (a.id) } { (a.call.tool) } }
                            td { (badge(a.call.risk_tier.as_str())) }
                            td { (agent) }
                            td { (intent) }
                            td { (badge(a.status.as_str())) }
                            td { (when(a.expires_at)) }
                        }
                    }
                }
            }
        }
    })
}

pub(crate) async fn inbox(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<InboxQuery>,
) -> Result<Markup, UiError> {
    let table = list(&console, &session, &q).await?;
    let status = q.status.clone().unwrap_or_else(|| "pending".to_owned());
    let live = format!(
        "/ui/approvals/live?status={}",
        form_urlencoded::byte_serialize(status.as_bytes()).collect::<String>()
    );
    Ok(page(
        "Approvals",
        &session,
        None,
        html! {
            h1 { "Approvals" }
            p class="muted" { "Calls held until a person decides. Each approval is for the exact arguments shown; the agent's identical retry then runs once." }
            form method="get" action="/ui/approvals" class="filters" {
                div {
                    label for="status" { "Status" }
                    select id="status" name="status" {
                        @for s in ["pending", "approved", "denied", "used", "expired", "all"] {
                            option value=(s) selected[s == status] { (s) }
                        }
                    }
                }
                button type="submit" class="secondary" { "Show" }
            }
            div id="approvals" data-live=(live) aria-live="polite" { (table) }
        },
    ))
}

/// The inbox's table alone, for the page's live refresh.
pub(crate) async fn live(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<InboxQuery>,
) -> Result<Markup, UiError> {
    list(&console, &session, &q).await
}

fn arguments(call: &HeldCall) -> Markup {
    let pretty = serde_json::to_string_pretty(&call.arguments).unwrap_or_default();
    html! {
        h2 { "Arguments" }
        pre aria-label="Arguments of the call" { (pretty) }
        p class="muted" { "Redacted fields show as [redacted]. Bound to " code { (call.arguments_hash) } "." }
    }
}

async fn call_terms(console: &Console, viewer: &Principal, call: &HeldCall) -> Markup {
    let agent = agent_label(console, call.tenant_id, call.agent_id).await;
    let intent = intent_of(console, viewer, call.mandate_id).await;
    let chain = Names::of_agents(
        console,
        call.tenant_id,
        call.delegation_chain.iter().copied(),
    )
    .await;
    html! {
        dl class="terms" {
            dt { "Tool" } dd { (call.tool) }
            dt { "Risk tier" } dd { (badge(call.risk_tier.as_str())) }
            dt { "Agent" } dd { (agent) }
            @if !call.delegation_chain.is_empty() {
                dt { "Delegated by" } dd { @for a in &call.delegation_chain { (chain.agent(*a)) " " } }
            }
            dt { "Mandate" } dd { a href={ "/ui/mandates/" (call.mandate_id) } { (call.mandate_id) } }
            dt { "Intent" } dd { (intent) }
            dt { "Why held" } dd { (call.reason) }
        }
    }
}

/// An approval as the viewer may decide it: the human when they consent to its
/// mandate, the tenant's admin otherwise.
async fn approval_for(
    calls: &Calls,
    session: &Session,
    id: ApprovalId,
) -> Result<(Approval, Principal), UiError> {
    session
        .seen_by(|p| async move { calls.approval(&p, id).await })
        .await
}

fn parse<T: std::str::FromStr>(raw: &str) -> Result<T, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

fn done_flash(done: Option<&str>) -> Option<Flash> {
    match done {
        Some("approved") => Some(Flash::Done(
            "Approved. The agent's identical retry will now run, once.".to_owned(),
        )),
        Some("denied") => Some(Flash::Done(
            "Denied. The agent's retry stays refused.".to_owned(),
        )),
        Some("executed") => Some(Flash::Done("Executed; the outcome is below.".to_owned())),
        Some("rejected") => Some(Flash::Done("Rejected; nothing was executed.".to_owned())),
        _ => None,
    }
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<InboxQuery>,
) -> Result<Markup, UiError> {
    let calls = calls(&console)?;
    let (a, viewer) = approval_for(calls, &session, parse(&id)?).await?;
    render_approval(
        &console,
        &session,
        &viewer,
        &a,
        done_flash(q.done.as_deref()),
        None,
    )
    .await
}

async fn render_approval(
    console: &Console,
    session: &Session,
    viewer: &Principal,
    a: &Approval,
    flash: Option<Flash>,
    comment: Option<&str>,
) -> Result<Markup, UiError> {
    let terms = call_terms(console, viewer, &a.call).await;
    Ok(page(
        &format!("Approval for {}", a.call.tool),
        session,
        flash.as_ref(),
        html! {
            h1 { "Approval: " (a.call.tool) " " (badge(a.status.as_str())) }
            (terms)
            (arguments(&a.call))
            dl class="terms" {
                dt { "Requested" } dd { (when(a.created_at)) }
                dt { "Expires" } dd { (when(a.expires_at)) }
                @if let Some(by) = &a.decided_by { dt { "Decided by" } dd { (by) } }
                @if let Some(c) = &a.comment { dt { "Comment" } dd { (c) } }
            }
            @if a.status == ApprovalStatus::Pending {
                form method="post" action={ "/ui/approvals/" (a.id) "/decide" } {
                    (csrf_field(session))
                    label for="comment" { "Comment (optional)" }
                    textarea id="comment" name="comment" rows="2" maxlength="1000" { (comment.unwrap_or("")) }
                    button type="submit" name="decision" value="approve" { "Approve" }
                    button type="submit" name="decision" value="deny" class="danger" { "Deny" }
                }
            }
            p { a href="/ui/approvals" { "Back to the inbox" } }
        },
    ))
}

pub(crate) async fn decide(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let calls = calls(&console)?;
    let id: ApprovalId = parse(&id)?;
    let (current, viewer) = approval_for(calls, &session, id).await?;
    let comment = form.get("comment").map(str::to_owned);
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            let f = Flash::Error("Choose Approve or Deny.".to_owned());
            let body = render_approval(
                &console,
                &session,
                &viewer,
                &current,
                Some(f),
                comment.as_deref(),
            )
            .await?;
            return Ok((axum::http::StatusCode::BAD_REQUEST, body).into_response());
        }
    };
    match calls
        .decide_approval(&viewer, id, approve, comment.clone())
        .await
    {
        Ok(_) => {
            let done = if approve { "approved" } else { "denied" };
            Ok(Redirect::to(&format!("/ui/approvals/{id}?done={done}")).into_response())
        }
        Err(e @ (CoreError::Invalid { .. } | CoreError::Conflict(_))) => {
            let status = UiError::Core(e).shown();
            let again = approval_for(calls, &session, id).await?.0;
            let f = Flash::Error(status.1);
            let body = render_approval(
                &console,
                &session,
                &viewer,
                &again,
                Some(f),
                comment.as_deref(),
            )
            .await?;
            Ok((status.0, body).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn proposal_for(
    calls: &Calls,
    session: &Session,
    id: ProposalId,
) -> Result<(Proposal, Principal), UiError> {
    session
        .seen_by(|p| async move { calls.proposal(&p, id).await })
        .await
}

pub(crate) async fn proposal(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<InboxQuery>,
) -> Result<Markup, UiError> {
    let calls = calls(&console)?;
    let (p, viewer) = proposal_for(calls, &session, parse(&id)?).await?;
    let terms = call_terms(&console, &viewer, &p.call).await;
    let outcome = p
        .outcome
        .as_ref()
        .map(|o| serde_json::to_string_pretty(o).unwrap_or_default());
    Ok(page(
        &format!("Proposal for {}", p.call.tool),
        &session,
        done_flash(q.done.as_deref()).as_ref(),
        html! {
            h1 { "Proposal: " (p.call.tool) " " (badge(p.status.as_str())) }
            p class="muted" { "The mandate is recommend-only: the agent proposed this call and nothing ran. Executing it runs it now, decided again under the mandate." }
            (terms)
            (arguments(&p.call))
            @if let Some(o) = outcome { h2 { "Outcome" } pre { (o) } }
            @if p.status == mandate_domain::ProposalStatus::Recorded {
                form method="post" action={ "/ui/proposals/" (p.id) "/decide" } {
                    (csrf_field(&session))
                    button type="submit" name="decision" value="execute" { "Execute" }
                    button type="submit" name="decision" value="reject" class="danger" { "Reject" }
                }
            }
        },
    ))
}

pub(crate) async fn decide_proposal(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let calls = calls(&console)?;
    let id: ProposalId = parse(&id)?;
    let (_, viewer) = proposal_for(calls, &session, id).await?;
    let reject = match form.get("decision") {
        Some("execute") => false,
        Some("reject") => true,
        _ => return Err(CoreError::invalid("choose Execute or Reject").into()),
    };
    calls.execute_proposal(&viewer, id, reject).await?;
    let done = if reject { "rejected" } else { "executed" };
    Ok(Redirect::to(&format!("/ui/proposals/{id}?done={done}")).into_response())
}
