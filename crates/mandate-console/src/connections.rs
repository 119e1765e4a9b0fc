//! The signed-in person's connections to upstream tool servers
//! (`/ui/connections`): what they connected (server, provider, scope, when — never a
//! token), a link to connect each server that acts as the person, and a button to
//! disconnect. The connect link (`/ui/connections/{server}/connect`) is the one a held
//! call shows; the provider sends the browser back to `/ui/connections/callback`.
//!
//! ```text
//!   GET  /ui/connections/{server}/connect ─► Broker::start_connection ─► 303 provider
//!   GET  /ui/connections/callback?code&state ─► Broker::finish_connection ─► this page
//!        (error=… from the provider, or a state not of this person: shown, nothing kept)
//!   POST /ui/connections/{server}/revoke (CSRF) ─► Broker::revoke_connection
//! ```

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::calls::ConnectionView;
use mandate_types::ToolServerId;
use maud::html;

use crate::layout::{Flash, page, when};
use crate::{Console, Form, Session, UiError, csrf_field};

pub(crate) async fn list(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let flash = match q.get("done").map(String::as_str) {
        Some("connected") => Some(Flash::Done("Connected.".to_owned())),
        Some("revoked") => Some(Flash::Done("Disconnected.".to_owned())),
        _ => None,
    };
    render(&console, &session, flash).await
}

async fn render(
    console: &Console,
    session: &Session,
    flash: Option<Flash>,
) -> Result<Response, UiError> {
    let broker = console.broker.as_ref().ok_or(UiError::NotFound)?;
    let me = session.principal();
    let connected = broker.list_connections(&me).await?;
    let servers = match &console.calls {
        Some(calls) => {
            let all = calls
                .tool_servers(me.tenant())
                .await
                .map_err(|e| UiError::Core(mandate_core::CoreError::Unavailable(e.to_string())))?;
            broker.connectable_servers(&me, all).await?
        }
        None => Vec::new(),
    };
    let is_connected = |id: ToolServerId| connected.iter().any(|c| c.server_id == id);
    let body = html! {
        h1 { "Connections" }
        p class="muted" {
            "Tool servers that act as you at another service use your own account there. "
            "Agents never see these credentials; disconnecting stops every agent's use at once."
        }
        @if connected.is_empty() {
            p { "You have no connections." }
        } @else {
            table {
                thead { tr { th { "Server" } th { "Provider" } th { "Scopes" } th { "Connected" } th {} } }
                tbody {
                    @for c in &connected { (row(session, c)) }
                }
            }
        }
        @let open: Vec<_> = servers.iter().filter(|s| !is_connected(s.id)).collect();
        @if !open.is_empty() {
            h2 { "Not connected" }
            ul {
                @for s in open {
                    li { a href={ "/ui/connections/" (s.id) "/connect" } { "Connect " (s.name) } }
                }
            }
        }
    };
    Ok(page("Connections", session, flash.as_ref(), body).into_response())
}

fn row(session: &Session, c: &ConnectionView) -> maud::Markup {
    html! {
        tr {
            td { code { (c.server) } }
            td { (c.provider) }
            td { (c.scope) }
            td { (when(c.connected_at)) }
            td {
                form method="post" action={ "/ui/connections/" (c.server_id) "/revoke" } {
                    (csrf_field(session))
                    button type="submit" { "Disconnect" }
                }
            }
        }
    }
}

/// Sends the person to the server's provider.
pub(crate) async fn connect(
    State(console): State<Console>,
    session: Session,
    Path(server): Path<String>,
) -> Result<Response, UiError> {
    let broker = console.broker.as_ref().ok_or(UiError::NotFound)?;
    let server: ToolServerId = server.parse().map_err(|_| UiError::NotFound)?;
    let url = broker
        .start_connection(&session.principal(), server)
        .await?;
    Ok(Redirect::to(&url).into_response())
}

/// Where the provider sends the browser back (RFC 6749 §4.1.2).
pub(crate) async fn callback(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let broker = console.broker.as_ref().ok_or(UiError::NotFound)?;
    if q.contains_key("error") {
        // The person declined, or the provider refused (§4.1.2.1): nothing is kept; the
        // state stays unused until it expires.
        let shown =
            Flash::Error("The service did not grant access; nothing was connected.".to_owned());
        return render(&console, &session, Some(shown)).await;
    }
    let (Some(state), Some(code)) = (q.get("state"), q.get("code")) else {
        let shown = Flash::Error("This link is incomplete; nothing was connected.".to_owned());
        return render(&console, &session, Some(shown)).await;
    };
    broker
        .finish_connection(&session.principal(), state, code)
        .await?;
    Ok(Redirect::to("/ui/connections?done=connected").into_response())
}

pub(crate) async fn revoke(
    State(console): State<Console>,
    session: Session,
    Path(server): Path<String>,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let broker = console.broker.as_ref().ok_or(UiError::NotFound)?;
    let server: ToolServerId = server.parse().map_err(|_| UiError::NotFound)?;
    broker
        .revoke_connection(&session.principal(), server)
        .await?;
    Ok(Redirect::to("/ui/connections?done=revoked").into_response())
}
