//! Agents, for the tenant's admins: the list, one agent's page (its credentials by kind
//! only, its mandates) and enabling or disabling it — through the same use cases as
//! `/v1/agents`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::{AgentUpdate, CoreError};
use mandate_domain::{Agent, AgentCredentials, AgentStatus, Principal};
use mandate_store::{AgentFilter, MandateFilter, PageRequest};
use mandate_types::{AgentId, HumanId};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::layout::{Flash, badge, page, when};
use crate::mandates::mandate_rows;
use crate::operators::{admin_of, answer, path_id};
use crate::{Console, Form, Session, UiError, csrf_field};

fn status_str(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Active => "active",
        AgentStatus::Disabled => "disabled",
    }
}

fn parse_status(s: &str) -> Option<AgentStatus> {
    match s {
        "active" => Some(AgentStatus::Active),
        "disabled" => Some(AgentStatus::Disabled),
        _ => None,
    }
}

/// Owner names, looked up once per owner.
async fn owners(
    console: &Console,
    admin: &Principal,
    ids: impl Iterator<Item = HumanId>,
) -> BTreeMap<HumanId, String> {
    let mut names = BTreeMap::new();
    for id in ids {
        if names.contains_key(&id) {
            continue;
        }
        let name = match console.service.human(admin, id).await {
            Ok(h) => h.display_name,
            Err(_) => String::new(),
        };
        names.insert(id, name);
    }
    names
}

fn owner_cell(names: &BTreeMap<HumanId, String>, id: HumanId) -> Markup {
    html! {
        @match names.get(&id).filter(|n| !n.is_empty()) {
            Some(name) => { (name) " " span class="muted" { code { (id) } } }
            None => code { (id) },
        }
    }
}

fn labels(agent: &Agent) -> Markup {
    html! {
        @if agent.labels.is_empty() { span class="muted" { "none" } }
        @for (k, v) in &agent.labels { code { (k) "=" (v) } " " }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<String>,
}

pub(crate) async fn list(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    let status_text = q.status.as_deref().map(str::trim).unwrap_or_default();
    let (status, problem) = match status_text {
        "" | "all" => (None, None),
        s => match parse_status(s) {
            Some(v) => (Some(v), None),
            None => (None, Some("Unknown status: choose active or disabled.")),
        },
    };
    let page_req = PageRequest::new(q.after.clone(), Some(100))
        .map_err(|e| CoreError::invalid(e.to_string()))?;
    let found = if problem.is_none() {
        console
            .service
            .list_agents(
                &admin,
                AgentFilter {
                    status,
                    ..AgentFilter::default()
                },
                page_req,
            )
            .await?
    } else {
        mandate_store::Page::empty()
    };
    let names = owners(&console, &admin, found.items.iter().map(|a| a.owner)).await;
    let flash = problem.map(|p| Flash::Error(p.to_owned()));
    let body = page(
        "Agents",
        &session,
        flash.as_ref(),
        html! {
            h1 { "Agents" }
            form method="get" action="/ui/agents" class="filters" {
                div {
                    label for="status" { "Status" }
                    select id="status" name="status" {
                        @for s in ["all", "active", "disabled"] {
                            option value=(s) selected[s == status_text] { (s) }
                        }
                    }
                }
                button type="submit" class="secondary" { "Filter" }
            }
            @if found.items.is_empty() {
                p class="muted" { "No agents here." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Owner" }
                        th scope="col" { "Status" } th scope="col" { "Labels" }
                    } }
                    tbody { @for a in &found.items {
                        tr {
                            td { a href={ "/ui/agents/" (a.id) } { (a.name) } }
                            td { code { (a.id) } }
                            td { (owner_cell(&names, a.owner)) }
                            td { (badge(status_str(a.status))) }
                            td { (labels(a)) }
                        }
                    } }
                }
            }
            @if let Some(next) = &found.next {
                p { a href={ "/ui/agents?status=" (status_text) "&after=" (next.0) } { "Next page" } }
            }
        },
    );
    Ok(answer(flash.is_some(), body))
}

/// A JWK as the console shows it: what kind of key, never the key itself.
fn key_kind(jwk: &Value) -> Markup {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or("");
    html! {
        li {
            (field("kty"))
            @if !field("crv").is_empty() { " " (field("crv")) }
            @if !field("alg").is_empty() { ", alg " (field("alg")) }
            @if !field("kid").is_empty() { ", key id " code { (field("kid")) } }
        }
    }
}

fn credentials(c: &AgentCredentials) -> Markup {
    html! {
        @if c.jwks.is_empty() && c.spiffe_id.is_none() && c.federated.is_none() {
            p class="muted" { "No credentials: this agent cannot obtain task tokens." }
        }
        @if !c.jwks.is_empty() {
            h3 { "Public keys (private_key_jwt)" }
            ul { @for jwk in &c.jwks { (key_kind(jwk)) } }
        }
        @if let Some(id) = &c.spiffe_id {
            h3 { "SPIFFE JWT-SVID" }
            p { code { (id) } }
        }
        @if let Some(f) = &c.federated {
            h3 { "Federated OIDC identity" }
            dl class="terms" {
                dt { "Issuer" } dd { code { (f.issuer) } }
                dt { "Subject" } dd { code { (f.subject) } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Markup, UiError> {
    let admin = admin_of(&session)?;
    let agent = console.service.agent(&admin, path_id(&id)?).await?;
    let flash = match q.done.as_deref() {
        Some("active") => Some(Flash::Done(
            "Enabled: the agent may obtain tokens again.".to_owned(),
        )),
        Some("disabled") => Some(Flash::Done(
            "Disabled: the agent can obtain nothing, and its tokens are refused.".to_owned(),
        )),
        _ => None,
    };
    render(&console, &session, &admin, &agent, flash).await
}

async fn render(
    console: &Console,
    session: &Session,
    admin: &Principal,
    agent: &Agent,
    flash: Option<Flash>,
) -> Result<Markup, UiError> {
    let mandates = console
        .service
        .list_mandates(
            admin,
            MandateFilter {
                agent: Some(agent.id),
                ..MandateFilter::default()
            },
            PageRequest::first(100),
        )
        .await?;
    let names = owners(console, admin, std::iter::once(agent.owner)).await;
    let (to, button, class) = match agent.status {
        AgentStatus::Active => ("disabled", "Disable", "danger"),
        AgentStatus::Disabled => ("active", "Enable", "secondary"),
    };
    let rows = mandate_rows(console, &mandates.items).await;
    Ok(page(
        &format!("Agent {}", agent.name),
        session,
        flash.as_ref(),
        html! {
            h1 { "Agent " (agent.name) " " (badge(status_str(agent.status))) }
            dl class="terms" {
                dt { "Id" } dd { code { (agent.id) } }
                dt { "Owner" } dd { (owner_cell(&names, agent.owner)) }
                dt { "Status" } dd { (status_str(agent.status)) }
                dt { "Labels" } dd { (labels(agent)) }
                dt { "Registered" } dd { (when(agent.created_at)) }
            }
            form method="post" action={ "/ui/agents/" (agent.id) "/status" } {
                (csrf_field(session))
                input type="hidden" name="status" value=(to);
                button type="submit" class=(class) { (button) " this agent" }
            }
            h2 { "Credentials" }
            (credentials(&agent.credentials))
            h2 { "Mandates" }
            (rows)
            p { a href="/ui/agents" { "All agents" } }
        },
    ))
}

pub(crate) async fn set_status(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    let id: AgentId = path_id(&id)?;
    session.check(&form)?;
    let agent = console.service.agent(&admin, id).await?;
    let Some(status) = form.get("status").and_then(parse_status) else {
        let flash = Flash::Error("Choose active or disabled.".to_owned());
        let body = render(&console, &session, &admin, &agent, Some(flash)).await?;
        return Ok(answer(true, body));
    };
    let update = AgentUpdate {
        status: Some(status),
        ..AgentUpdate::default()
    };
    console.service.update_agent(&admin, id, update).await?;
    Ok(Redirect::to(&format!("/ui/agents/{id}?done={}", status_str(status))).into_response())
}
