//! Access reviews (`/ui/reviews`): the report of `mandate_core::reviews` per agent,
//! with a form to mark each finding and buttons to revoke from it. Admins review every
//! agent of the tenant; anyone else the agents they own or sponsor — the same rule as
//! `GET /v1/reviews`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::CoreError;
use mandate_core::reviews::{
    AgentReview, Finding, MarkRequest, MarkStatus, ReviewQuery, ReviewReport, RevokeRequest,
    parse_days,
};
use mandate_domain::{AgentStatus, MandateStatus};
use mandate_types::{AgentId, MandateId};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Flash, badge, page, when};
use crate::operators::answer;
use crate::{Console, Form, Session, UiError, csrf_field};

#[derive(Debug, Deserialize)]
pub(crate) struct ReviewPage {
    days: Option<String>,
    done: Option<String>,
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<ReviewPage>,
) -> Result<Response, UiError> {
    let days = match parse_days(q.days.as_deref().filter(|d| !d.trim().is_empty())) {
        Ok(days) => days,
        Err(problem) => {
            return shown_again(&console, &session, None, problem, true).await;
        }
    };
    let flash = match q.done.as_deref() {
        Some("marked") => Some(Flash::Done("The finding is marked.".to_owned())),
        Some("revoked") => Some(Flash::Done("Revoked.".to_owned())),
        _ => None,
    };
    Ok(render(&console, &session, Some(days), flash)
        .await?
        .into_response())
}

/// The page again with `message` as an error (status 400 when `bad_input`).
async fn shown_again(
    console: &Console,
    session: &Session,
    days: Option<u32>,
    message: String,
    bad_input: bool,
) -> Result<Response, UiError> {
    let body = render(console, session, days, Some(Flash::Error(message))).await?;
    Ok(answer(bad_input, body))
}

async fn render(
    console: &Console,
    session: &Session,
    days: Option<u32>,
    flash: Option<Flash>,
) -> Result<Markup, UiError> {
    let report = match days {
        Some(days) => Some(
            console
                .service
                .review(&session.viewer(), ReviewQuery { days, agent: None })
                .await?,
        ),
        None => None,
    };
    let shown_days = days.unwrap_or(mandate_core::reviews::DEFAULT_DAYS);
    Ok(page(
        "Access reviews",
        session,
        flash.as_ref(),
        html! {
            h1 { "Access reviews" }
            form method="get" action="/ui/reviews" class="filters" {
                div {
                    label for="days" { "Window (days)" }
                    input type="number" id="days" name="days" min="1" max="365" value=(shown_days);
                }
                button type="submit" class="secondary" { "Show" }
            }
            @if let Some(report) = &report { (report_body(session, report)) }
        },
    ))
}

fn report_body(session: &Session, report: &ReviewReport) -> Markup {
    html! {
        p class="muted" {
            "Since " (when(report.since)) " (" (report.days) " days). "
            @if session.admin().is_some() { "Every agent of the tenant." }
            @else { "The agents you own or sponsor." }
        }
        @if report.truncated { p class="flash error" role="alert" { "More agents than one page shows: only the first are listed." } }
        @if report.agents.is_empty() { p class="muted" { "No agents to review." } }
        @for agent in &report.agents { (agent_section(session, report.days, agent)) }
    }
}

fn person(p: &mandate_core::reviews::PersonRef) -> Markup {
    html! {
        @match &p.name {
            Some(name) => span title=(p.id) { (name) },
            None => code { (p.id) },
        }
    }
}

fn agent_section(session: &Session, days: u32, a: &AgentReview) -> Markup {
    let status = match a.status {
        AgentStatus::Active => "active",
        AgentStatus::Disabled => "disabled",
    };
    let heading = format!("agent-{}", a.agent_id);
    html! {
        section aria-labelledby=(heading) class="review" {
            h2 id=(heading) { span title=(a.agent_id) { (a.name) } " " (badge(status)) }
            dl class="terms" {
                dt { "Owner" } dd { (person(&a.owner)) }
                dt { "Sponsors" } dd {
                    @if a.sponsors.is_empty() { span class="muted" { "none" } }
                    @for (i, s) in a.sponsors.iter().enumerate() { @if i > 0 { ", " } (person(s)) }
                }
                dt { "Denied attempts" } dd { (a.denied.count) }
                dt { "Drift alerts" } dd { (a.drift_alerts.count) }
                dt { "Approvals" } dd {
                    (a.approvals.asked) " asked, " (a.approvals.given) " given, "
                    (a.approvals.denied) " denied, " (a.approvals.pending) " pending, "
                    (a.approvals.expired) " expired"
                }
                dt { "People whose data it touched" } dd {
                    @if a.humans_touched.is_empty() { span class="muted" { "none in the window" } }
                    @for (i, h) in a.humans_touched.iter().enumerate() {
                        @if i > 0 { ", " }
                        span title=(h.id) { (h.name.as_deref().unwrap_or("unknown")) } " (" (h.calls) @if h.calls == 1 { " call)" } @else { " calls)" }
                    }
                }
            }
            @if a.truncated { p class="flash error" role="alert" { "Too many events to read them all: the counts are lower bounds." } }
            h3 { "Mandates" }
            @if a.mandates.is_empty() { p class="muted" { "None in the window." } } @else {
                table {
                    thead { tr { th scope="col" { "Intent" } th scope="col" { "Grantor" } th scope="col" { "Status" } th scope="col" { "Tools" } th scope="col" { "Expires" } th scope="col" { "Revoke" } } }
                    tbody { @for m in &a.mandates {
                        tr {
                            td { a href={ "/ui/mandates/" (m.id) } title=(m.id) { (m.intent) } }
                            td { (person(&m.human)) }
                            td { (badge(m.status.as_str())) }
                            td { @for t in &m.tools { code { (t) } " " } }
                            td { (when(m.expires_at)) }
                            td { @if m.status == MandateStatus::Active {
                                form method="post" action="/ui/reviews/revoke" {
                                    (csrf_field(session))
                                    input type="hidden" name="agent" value=(a.agent_id);
                                    input type="hidden" name="mandate" value=(m.id);
                                    input type="hidden" name="days" value=(days);
                                    button type="submit" class="danger" aria-label={ "Revoke the mandate " (m.intent) } { "Revoke" }
                                }
                            } }
                        }
                    } }
                }
            }
            h3 { "Scope and use" }
            table {
                thead { tr { th scope="col" { "Scope entry or tool" } th scope="col" { "In scope" } th scope="col" { "Allowed calls" } } }
                tbody {
                    @for entry in &a.scope {
                        @let calls: u64 = a.tools_used.iter().filter(|t| mandate_domain::scope_covers(entry, &t.tool)).map(|t| t.calls).sum();
                        tr { td { code { (entry) } } td { "yes" } td { @if calls == 0 { strong { "unused" } } @else { (calls) } } }
                    }
                    @for t in a.tools_used.iter().filter(|t| !a.scope.iter().any(|e| mandate_domain::scope_covers(e, &t.tool))) {
                        tr { td { code { (t.tool) } } td { "no longer" } td { (t.calls) } }
                    }
                }
            }
            @if !a.denied.latest.is_empty() {
                h3 { "Latest denied attempts" }
                ul { @for d in &a.denied.latest {
                    li { (when(d.at)) " " code { (d.tool) } @if d.out_of_scope { " (out of scope)" } @if let Some(r) = &d.reason { ": " (r) } }
                } }
            }
            @if !a.drift_alerts.latest.is_empty() {
                h3 { "Latest drift alerts" }
                ul { @for d in &a.drift_alerts.latest {
                    li { (when(d.at)) " mandate " code { (d.mandate_id) } ": " (d.denied) " denied, " (d.out_of_scope) " out of scope" }
                } }
            }
            h3 { "Credentials it can reach" }
            @if a.credentials.is_empty() { p class="muted" { "None through the broker." } } @else {
                ul { @for c in &a.credentials {
                    li { "Tool server " code { (c.server) } ": " (c.kind) " " code { (c.name) }
                        @if c.stored == Some(false) { " (not in the vault)" } }
                } }
            }
            h3 { "Findings" }
            @if a.findings.is_empty() { p class="muted" { "None." } }
            @for f in &a.findings { (finding_form(session, days, f)) }
            form method="post" action="/ui/reviews/revoke" {
                (csrf_field(session))
                input type="hidden" name="agent" value=(a.agent_id);
                input type="hidden" name="days" value=(days);
                @if session.admin().is_some() {
                    div class="choice" {
                        input type="checkbox" id={ "disable-" (a.agent_id) } name="disable" value="yes";
                        label for={ "disable-" (a.agent_id) } { "Also disable the agent" }
                    }
                }
                button type="submit" class="danger" { "Revoke every active mandate of " (a.name) }
            }
        }
    }
}

fn finding_form(session: &Session, days: u32, f: &Finding) -> Markup {
    let select = format!("status-{}", f.id);
    let comment = format!("comment-{}", f.id);
    html! {
        form method="post" action="/ui/reviews/mark" class="filters finding" {
            (csrf_field(session))
            input type="hidden" name="finding" value=(f.id);
            input type="hidden" name="days" value=(days);
            div {
                p { (badge(f.kind.as_str())) " " (f.detail) " " span class="muted" { code { (f.id) } } }
                @if let Some(m) = &f.mark {
                    p { "Marked " strong { (m.status.as_str()) } " by " code { (m.marked_by) } " " (when(m.marked_at))
                        @if let Some(c) = &m.comment { ": " (c) } }
                }
            }
            div {
                label for=(select) { "Mark as" }
                select id=(select) name="status" {
                    @for s in [MarkStatus::Acknowledged, MarkStatus::AcceptedRisk, MarkStatus::Remediated] {
                        option value=(s.as_str()) selected[f.mark.as_ref().is_some_and(|m| m.status == s)] { (s.as_str()) }
                    }
                }
            }
            div {
                label for=(comment) { "Comment" }
                input type="text" id=(comment) name="comment" maxlength="1000";
            }
            button type="submit" class="secondary" { "Mark" }
        }
    }
}

/// The window a form was posted from (its hidden `days`).
fn form_days(form: &Form) -> u32 {
    parse_days(form.get("days")).unwrap_or(mandate_core::reviews::DEFAULT_DAYS)
}

pub(crate) async fn mark(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let days = form_days(&form);
    let Some(status) = form.get("status").and_then(MarkStatus::parse) else {
        let flash = Flash::Error("Choose acknowledged, accepted_risk or remediated.".to_owned());
        let body = render(&console, &session, Some(days), Some(flash)).await?;
        return Ok(answer(true, body));
    };
    let finding = form.get("finding").unwrap_or_default().to_owned();
    let request = MarkRequest {
        status,
        comment: form.get("comment").map(str::to_owned),
        days: Some(days),
    };
    match console
        .service
        .mark_finding(&session.viewer(), &finding, request)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/ui/reviews?days={days}&done=marked")).into_response()),
        Err(e @ CoreError::Invalid { .. }) => {
            shown_again(&console, &session, Some(days), e.to_string(), true).await
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn revoke(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let days = form_days(&form);
    let agent: AgentId = form
        .get("agent")
        .and_then(|a| a.parse().ok())
        .ok_or(UiError::NotFound)?;
    let mandate_id: Option<MandateId> = match form.get("mandate") {
        None | Some("") => None,
        Some(m) => Some(m.parse().map_err(|_| UiError::NotFound)?),
    };
    let request = RevokeRequest {
        mandate_id,
        disable_agent: form.get("disable") == Some("yes"),
        reason: Some("revoked from an access review in the console".to_owned()),
    };
    let viewer = session.viewer();
    match console
        .service
        .revoke_from_review(&viewer, agent, request)
        .await
    {
        Ok(done) if done.skipped.is_empty() => {
            Ok(Redirect::to(&format!("/ui/reviews?days={days}&done=revoked")).into_response())
        }
        Ok(done) => {
            let message = format!(
                "Revoked {} mandate(s); {} left as they were: {}",
                done.revoked.len(),
                done.skipped.len(),
                done.skipped
                    .iter()
                    .map(|s| format!("{} ({})", s.mandate_id, s.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            shown_again(&console, &session, Some(days), message, false).await
        }
        Err(e @ (CoreError::Forbidden(_) | CoreError::Lifecycle(_) | CoreError::Expired(_))) => {
            shown_again(&console, &session, Some(days), e.to_string(), true).await
        }
        Err(e) => Err(e.into()),
    }
}
