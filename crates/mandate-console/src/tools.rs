//! Tool servers and tools, for the tenant's admins: what the gateway fronts, and the
//! operator's overrides of a tool's risk tier, tags and data class — through the same
//! use case as `PATCH /v1/tools/{id}`. A tool server's outbound credential is shown by
//! its broker reference only; the secret never reaches the console.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::{CoreError, ToolUpdate};
use mandate_domain::{Principal, Tool, ToolServer, ToolServerTransport};
use mandate_store::{PageRequest, ToolFilter};
use mandate_types::{DataClass, RiskTier, ToolId, ToolServerId};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Flash, badge, page, when};
use crate::operators::{admin_of, answer, path_id, without_userinfo};
use crate::{Console, Form, Session, UiError, csrf_field};

fn transport(t: &ToolServerTransport) -> (&'static str, Markup) {
    match t {
        ToolServerTransport::McpHttp { url } => (
            "MCP over Streamable HTTP",
            html! { code { (without_userinfo(url)) } },
        ),
        ToolServerTransport::Http { base_url } => {
            ("HTTP API", html! { code { (without_userinfo(base_url)) } })
        }
        // Arguments may carry configuration an operator would not want on a screen;
        // only their number is shown.
        ToolServerTransport::McpStdio { command, args } => (
            "MCP over stdio",
            html! { code { (command) } " " span class="muted" { "(" (args.len()) " argument(s), not shown)" } },
        ),
    }
}

fn tags(tool: &Tool) -> Markup {
    html! {
        @if tool.tags.is_empty() { span class="muted" { "none" } }
        @for t in &tool.tags { code { (t) } " " }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
}

pub(crate) async fn list(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Markup, UiError> {
    let admin = admin_of(&session)?;
    let servers = console
        .service
        .list_tool_servers(&admin, PageRequest::first(500))
        .await?
        .items;
    let page_req = PageRequest::new(q.after.clone(), Some(200))
        .map_err(|e| CoreError::invalid(e.to_string()))?;
    let tools = console
        .service
        .list_tools(&admin, ToolFilter::default(), page_req)
        .await?;
    let names: BTreeMap<ToolServerId, &str> =
        servers.iter().map(|s| (s.id, s.name.as_str())).collect();
    Ok(page(
        "Tools",
        &session,
        None,
        html! {
            h1 { "Tool servers and tools" }
            h2 { "Tool servers" }
            @if servers.is_empty() {
                p class="muted" { "No tool servers registered." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Transport" } th scope="col" { "Target" }
                        th scope="col" { "Credential reference" } th scope="col" { "Registered" }
                    } }
                    tbody { @for s in &servers {
                        @let (kind, target) = transport(&s.transport);
                        tr {
                            td { (s.name) br; code class="muted" { (s.id) } }
                            td { (kind) }
                            td { (target) }
                            td { @match &s.credential_ref { Some(r) => code { (r) }, None => span class="muted" { "none" } } }
                            td { (when(s.created_at)) }
                        }
                    } }
                }
            }
            h2 { "Tools" }
            @if tools.items.is_empty() {
                p class="muted" { @if q.after.is_some() { "No more tools." } @else { "No tools registered." } }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Tool" } th scope="col" { "Risk tier" } th scope="col" { "Tags" }
                        th scope="col" { "Data class" } th scope="col" { "Description" }
                    } }
                    tbody { @for t in &tools.items {
                        tr {
                            td { a href={ "/ui/tools/" (t.id) } {
                                (names.get(&t.server_id).copied().unwrap_or("?")) "." (t.name)
                            } }
                            td { (badge(t.risk_tier.as_str())) }
                            td { (tags(t)) }
                            td { (t.data_class.as_str()) }
                            td { (t.description) }
                        }
                    } }
                }
            }
            @if let Some(next) = &tools.next {
                p { a href={ "/ui/tools?after=" (next.0) } { "More tools" } }
            }
        },
    ))
}

/// What the form sent, kept to show it again beside a message.
#[derive(Debug, Default)]
struct Sent<'a> {
    risk_tier: Option<&'a str>,
    data_class: Option<&'a str>,
    tags: Option<&'a str>,
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
    let tool = console.service.tool(&admin, path_id(&id)?).await?;
    let flash = (q.done.as_deref() == Some("saved")).then(|| {
        Flash::Done("Saved. Decisions from now on use the new tier, tags and data class.".into())
    });
    render(&console, &session, &admin, &tool, flash, &Sent::default()).await
}

async fn render(
    console: &Console,
    session: &Session,
    admin: &Principal,
    tool: &Tool,
    flash: Option<Flash>,
    sent: &Sent<'_>,
) -> Result<Markup, UiError> {
    let server: Option<ToolServer> = console
        .service
        .tool_server(admin, tool.server_id)
        .await
        .ok();
    let server_name = server.as_ref().map_or("?", |s| s.name.as_str());
    let tier = sent.risk_tier.unwrap_or(tool.risk_tier.as_str());
    let class = sent.data_class.unwrap_or(tool.data_class.as_str());
    let tag_text = sent.tags.map_or_else(
        || tool.tags.iter().cloned().collect::<Vec<_>>().join(", "),
        str::to_owned,
    );
    let schema = serde_json::to_string_pretty(&tool.input_schema).unwrap_or_default();
    let hints = &tool.annotations;
    let hint = |h: Option<bool>| h.map_or("unset", |b| if b { "true" } else { "false" });
    Ok(page(
        &format!("Tool {server_name}.{}", tool.name),
        session,
        flash.as_ref(),
        html! {
            h1 { "Tool " (server_name) "." (tool.name) " " (badge(tool.risk_tier.as_str())) }
            dl class="terms" {
                dt { "Id" } dd { code { (tool.id) } }
                dt { "Server" } dd { (server_name) " " code class="muted" { (tool.server_id) } }
                dt { "Description" } dd { (tool.description) }
                dt { "Risk tier" } dd { (tool.risk_tier.as_str()) }
                dt { "Tags" } dd { (tags(tool)) }
                dt { "Data class" } dd { (tool.data_class.as_str()) }
                dt { "Annotations" } dd {
                    "readOnlyHint " (hint(hints.read_only_hint)) ", destructiveHint " (hint(hints.destructive_hint))
                    ", openWorldHint " (hint(hints.open_world_hint))
                }
                @if let Some(a) = &tool.amount_argument { dt { "Amount argument" } dd { code { (a) } } }
                dt { "Reversible" } dd { @if let Some(c) = &tool.compensation { "yes, undone by " code { (c.tool) } } @else { "no (irreversible)" } }
                dt { "Registered" } dd { (when(tool.created_at)) }
            }
            h2 { "Override tier, tags and data class" }
            form method="post" action={ "/ui/tools/" (tool.id) } {
                (csrf_field(session))
                label for="risk_tier" { "Risk tier" }
                select id="risk_tier" name="risk_tier" {
                    @for t in RiskTier::ALL {
                        option value=(t.as_str()) selected[t.as_str() == tier] { (t.as_str()) }
                    }
                }
                label for="tags" { "Tags (separated by commas or spaces; a-z 0-9 _ -)" }
                input id="tags" type="text" name="tags" value=(tag_text) maxlength="4096";
                label for="data_class" { "Data class" }
                select id="data_class" name="data_class" {
                    @for c in DataClass::ALL {
                        option value=(c.as_str()) selected[c.as_str() == class] { (c.as_str()) }
                    }
                }
                button type="submit" { "Save" }
            }
            h2 { "Input schema" }
            pre aria-label="Input schema" { (schema) }
            p { a href="/ui/tools" { "All tools" } }
        },
    ))
}

/// Reads the form into an update, or says what is wrong with it.
fn update_of(form: &Form) -> Result<ToolUpdate, String> {
    let risk_tier = form
        .get("risk_tier")
        .ok_or_else(|| "Choose a risk tier.".to_owned())?
        .parse::<RiskTier>()
        .map_err(|e| format!("Risk tier: {e}."))?;
    let data_class = form
        .get("data_class")
        .ok_or_else(|| "Choose a data class.".to_owned())?
        .parse::<DataClass>()
        .map_err(|e| format!("Data class: {e}."))?;
    let tags: BTreeSet<String> = form
        .get("tags")
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(ToolUpdate {
        risk_tier: Some(risk_tier),
        tags: Some(tags),
        data_class: Some(data_class),
        ..ToolUpdate::default()
    })
}

pub(crate) async fn update(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    let id: ToolId = path_id(&id)?;
    session.check(&form)?;
    let tool = console.service.tool(&admin, id).await?;
    let problem = match update_of(&form) {
        Ok(update) => match console.service.update_tool(&admin, id, update).await {
            Ok(_) => return Ok(Redirect::to(&format!("/ui/tools/{id}?done=saved")).into_response()),
            Err(CoreError::Invalid { detail }) => detail,
            Err(e) => return Err(e.into()),
        },
        Err(message) => message,
    };
    let sent = Sent {
        risk_tier: form.get("risk_tier"),
        data_class: form.get("data_class"),
        tags: form.get("tags"),
    };
    let flash = Flash::Error(format!("Nothing was changed. {problem}"));
    let body = render(&console, &session, &admin, &tool, Some(flash), &sent).await?;
    Ok(answer(true, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn forms_become_updates_or_messages() {
        let u = update_of(&Form::parse(
            b"risk_tier=write&data_class=public&tags=financial,+mass_deletion++x",
        ))
        .unwrap();
        assert_eq!(u.risk_tier, Some(RiskTier::Write));
        assert_eq!(u.data_class, Some(DataClass::Public));
        let tags: Vec<_> = u.tags.unwrap().into_iter().collect();
        assert_eq!(tags, ["financial", "mass_deletion", "x"]);
        let e = update_of(&Form::parse(b"risk_tier=catastrophic&data_class=public")).unwrap_err();
        assert!(e.contains("unknown risk tier `catastrophic`"), "{e}");
        let e = update_of(&Form::parse(b"risk_tier=read&data_class=secret")).unwrap_err();
        assert!(e.contains("unknown data class `secret`"), "{e}");
        assert!(update_of(&Form::parse(b"data_class=public")).is_err());
    }
}
