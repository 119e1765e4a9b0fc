//! `/oauth2/authorize`: the consent screen an MCP client sends its person to. The
//! screen *is* the mandate: the person sees the client (its agent) and the tools it
//! asks for with their risk tiers, and sets intent, lifetime, budget, mode, which tiers
//! need per-action approval and which tools to grant.
//!
//! ```text
//!   GET  ─► request checked (bad client / redirect URI: a page here, never a redirect;
//!           anything else: back to the client with error=) ─► signed in? (else sign-in
//!           and back) ─► the request is held server-side under a random id, bound to
//!           this person and this session ─► the form
//!   POST ─► CSRF + origin ─► the held request (someone else's is "not found") ─►
//!           Grant: mandate requested by the client's agent, consented (channel oauth),
//!           a single-use code ─► redirect │ Deny: nothing created ─► access_denied
//! ```

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::header::CONTENT_SECURITY_POLICY;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use mandate_core::calls::OFFER_LISTING_TIMEOUT;
use mandate_core::{
    AuthorizeParams, ConsentChoices, CoreError, OfferedTool, PendingAuthorization, level,
};
use mandate_types::{DataClass, MandateMode, RiskTier};
use maud::{Markup, html};

use crate::layout::{Flash, badge, page};
use crate::{Console, Form, Session, UiError, csrf_field};

/// Lifetimes offered, in minutes, with their labels.
const LIFETIMES: &[(i64, &str)] = &[
    (15, "15 minutes"),
    (60, "1 hour"),
    (480, "8 hours"),
    (1_440, "1 day"),
    (10_080, "7 days"),
    (43_200, "30 days"),
];

pub(crate) async fn show(
    State(console): State<Console>,
    session: Result<Session, UiError>,
    uri: Uri,
) -> Result<Response, UiError> {
    let params = AuthorizeParams::from_query(uri.query().unwrap_or_default())?;
    let valid = console.service.validate_authorization(&params).await?;
    let session = match session {
        Ok(s) => s,
        Err(UiError::SignIn { .. }) => {
            return Err(UiError::SignIn {
                next: format!("/oauth2/authorize?{}", params.to_query()),
            });
        }
        Err(e) => return Err(e),
    };
    let me = &session.signed.human;
    // The upstreams are listed first, so a server no agent has called yet offers its
    // tools; one that does not answer in time leaves its tools as last catalogued, and
    // the page says so. (Another tenant's client is refused below, unlisted.)
    let unlisted = match &console.calls {
        Some(calls) if me.tenant_id == valid.client.tenant_id => calls
            .catalogue_upstreams(
                valid.client.tenant_id,
                valid.server.as_deref(),
                OFFER_LISTING_TIMEOUT,
            )
            .await
            .map_err(CoreError::from)?,
        _ => Vec::new(),
    };
    let offered = console.service.authorization_offer(me.id, &valid).await?;
    if offered.is_empty() {
        return Err(UiError::OAuthRedirect(
            mandate_core::authorization_response(
                &valid.redirect_uri,
                &valid.issuer,
                &[
                    ("error", "invalid_scope"),
                    (
                        "error_description",
                        "there are no tools to grant for this resource",
                    ),
                ],
                valid.state.as_deref(),
            ),
        ));
    }
    let (id, pending) = console
        .service
        .hold_authorization(me.id, me.tenant_id, &session.secret, &valid, offered)
        .await?;
    Ok(consent_page(
        &session,
        &id,
        &pending,
        None,
        &Defaults::of(&pending),
        &unlisted,
    ))
}

/// What the form shows selected.
struct Defaults {
    intent: String,
    lifetime: i64,
    max_calls: String,
    mode: MandateMode,
    approve: BTreeSet<RiskTier>,
    tools: BTreeSet<String>,
    ceiling: DataClass,
}

impl Defaults {
    fn of(pending: &PendingAuthorization) -> Defaults {
        Defaults {
            intent: String::new(),
            lifetime: 60,
            max_calls: "100".to_owned(),
            mode: MandateMode::Execute,
            approve: BTreeSet::from([RiskTier::HighImpact]),
            tools: pending.offered.iter().map(|t| t.name.clone()).collect(),
            ceiling: pending
                .offered
                .iter()
                .map(|t| t.data_class)
                .max()
                .unwrap_or(DataClass::Internal),
        }
    }

    fn from_form(form: &Form, pending: &PendingAuthorization) -> Defaults {
        let base = Defaults::of(pending);
        Defaults {
            intent: form.get("intent").unwrap_or_default().to_owned(),
            lifetime: form
                .get("lifetime")
                .and_then(|v| v.parse().ok())
                .unwrap_or(base.lifetime),
            max_calls: form.get("max_calls").unwrap_or_default().to_owned(),
            mode: form.get("mode").and_then(level).unwrap_or(base.mode),
            approve: form.all("approve").into_iter().filter_map(level).collect(),
            tools: form.all("tool").into_iter().map(str::to_owned).collect(),
            ceiling: form
                .get("data_ceiling")
                .and_then(level)
                .unwrap_or(base.ceiling),
        }
    }
}

fn origin(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let end = rest
        .find(['/', '?'])
        .map_or(uri.len(), |i| uri.len() - rest.len() + i);
    uri.get(..end).unwrap_or(uri)
}

fn tool_rows(pending: &PendingAuthorization, d: &Defaults) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Grant" } th scope="col" { "Tool" } th scope="col" { "Risk" } th scope="col" { "Data" } th scope="col" { "What it does" } } }
            tbody {
                @for (i, t) in pending.offered.iter().enumerate() {
                    tr {
                        td { input type="checkbox" id={ "tool-" (i) } name="tool" value=(t.name) checked[d.tools.contains(&t.name)]; }
                        td {
                            label for={ "tool-" (i) } { (t.name) }
                            @if t.added { " " strong class="added" { "added" } }
                        }
                        td {
                            (badge(t.risk_tier.as_str()))
                            @if t.reversible { " " span class="muted" { "can be undone" } }
                            @else if t.risk_tier != RiskTier::Read { " " strong { "cannot be undone" } }
                        }
                        td { (t.data_class.as_str()) }
                        td { (t.description) }
                    }
                }
            }
        }
    }
}

fn consent_page(
    session: &Session,
    id: &str,
    pending: &PendingAuthorization,
    flash: Option<&Flash>,
    d: &Defaults,
    unlisted: &[String],
) -> Response {
    let tiers: BTreeSet<RiskTier> = pending
        .offered
        .iter()
        .map(|t: &OfferedTool| t.risk_tier)
        .collect();
    let body = page(
        "Authorize an agent",
        session,
        flash,
        html! {
            h1 { "Authorize " (pending.client_name) }
            p { "An MCP client asks to act for you. What you set here becomes a mandate: the client can do exactly this, until it ends or you revoke it." }
            dl class="terms" {
                dt { "Client" } dd { (pending.client_name) " " code { (pending.client_id) } }
                dt { "Returns to" } dd { code { (origin(&pending.redirect_uri)) } }
                dt { "For" } dd { code { (pending.resource) } }
            }
            form method="post" action="/oauth2/authorize" {
                (csrf_field(session))
                input type="hidden" name="request" value=(id);
                label for="intent" { "Intent" }
                input id="intent" type="text" name="intent" value=(d.intent) maxlength="500" required placeholder="What should it do for you?";
                h2 { "Tools" }
                @if pending.offered.iter().any(|t| t.added) {
                    p { "You authorized this client before. The tools marked " strong { "added" } " are new: it did not have them. This replaces what you granted it before." }
                }
                @if !unlisted.is_empty() {
                    p class="note" role="status" id="unlisted" {
                        "Not reachable just now: "
                        @for (i, name) in unlisted.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (name) }
                        }
                        ". Their tools are shown as last catalogued."
                    }
                }
                (tool_rows(pending, d))
                h2 { "Limits" }
                label for="lifetime" { "Expires after" }
                select id="lifetime" name="lifetime" {
                    @for (minutes, text) in LIFETIMES {
                        option value=(minutes) selected[*minutes == d.lifetime] { (text) }
                    }
                }
                label for="max_calls" { "Call budget" }
                input id="max_calls" type="number" name="max_calls" min="1" max="1000000" value=(d.max_calls);
                label for="data_ceiling" { "Data up to" }
                select id="data_ceiling" name="data_ceiling" {
                    @for c in DataClass::ALL {
                        option value=(c.as_str()) selected[*c == d.ceiling] { (c.as_str()) }
                    }
                }
                fieldset {
                    legend { "Mode" }
                    div class="choice" {
                        input type="radio" id="mode-execute" name="mode" value="execute" checked[d.mode == MandateMode::Execute];
                        label for="mode-execute" { "Execute calls" }
                    }
                    div class="choice" {
                        input type="radio" id="mode-recommend" name="mode" value="recommend" checked[d.mode == MandateMode::Recommend];
                        label for="mode-recommend" { "Recommend only (calls become proposals)" }
                    }
                }
                fieldset {
                    legend { "Ask me before each call of these tiers" }
                    @for tier in RiskTier::ALL {
                        div class="choice" {
                            input type="checkbox" id={ "approve-" (tier.as_str()) } name="approve" value=(tier.as_str()) checked[d.approve.contains(tier)];
                            label for={ "approve-" (tier.as_str()) } { "Approve each " (tier.as_str()) " call" @if !tiers.contains(tier) { " (none requested)" } }
                        }
                    }
                }
                button type="submit" name="decision" value="grant" { "Grant" }
                button type="submit" name="decision" value="deny" class="danger" formnovalidate { "Deny" }
            }
        },
    );
    let status = if flash.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, body).into_response();
    // The answer redirects to the client: the form may lead there (CSP form-action
    // applies to a form's redirects too).
    let csp = crate::session::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origin(&pending.redirect_uri)),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
    }
    response
}

fn choices(form: &Form) -> Result<ConsentChoices, CoreError> {
    let intent = form
        .get("intent")
        .ok_or_else(|| CoreError::invalid("Say what the agent should do (the intent)."))?;
    let minutes: i64 = form
        .get("lifetime")
        .and_then(|v| v.parse().ok())
        .filter(|m| LIFETIMES.iter().any(|(l, _)| l == m))
        .ok_or_else(|| CoreError::invalid("Choose when the mandate expires."))?;
    let max_calls = match form.get("max_calls") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| CoreError::invalid("The call budget must be a whole number."))?,
        ),
    };
    let mode = form
        .get("mode")
        .and_then(level)
        .ok_or_else(|| CoreError::invalid("Choose a mode."))?;
    let mut approval_tiers = BTreeSet::new();
    for v in form.all("approve") {
        approval_tiers.insert(level(v).ok_or_else(|| CoreError::invalid("Unknown risk tier."))?);
    }
    let data_ceiling = form
        .get("data_ceiling")
        .and_then(level)
        .ok_or_else(|| CoreError::invalid("Choose a data class."))?;
    Ok(ConsentChoices {
        intent: intent.to_owned(),
        lifetime: Duration::minutes(minutes),
        max_calls,
        mode,
        approval_tiers,
        tools: form.all("tool").into_iter().map(str::to_owned).collect(),
        data_ceiling,
    })
}

pub(crate) async fn answer(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    let id = form.get("request").ok_or(UiError::NotFound)?;
    let me = session.principal();
    let human = session.signed.human.id;
    // Someone else's, another session's or an answered request is not found.
    let pending = console
        .service
        .pending_authorization(id, human, &session.secret)
        .await
        .map_err(|e| match e {
            CoreError::NotFound { .. } => UiError::NotFound,
            other => other.into(),
        })?;
    let result = match form.get("decision") {
        Some("deny") => {
            console
                .service
                .deny_authorization(id, &me, &session.secret)
                .await
        }
        Some("grant") => match choices(&form) {
            Ok(c) => {
                console
                    .service
                    .grant_authorization(id, &me, &session.secret, c)
                    .await
            }
            Err(e) => Err(e),
        },
        _ => Err(CoreError::invalid("Choose Grant or Deny.")),
    };
    match result {
        Ok(to) => Ok(Redirect::to(&to).into_response()),
        Err(e @ (CoreError::Invalid { .. } | CoreError::Lifecycle(_))) => {
            let (_, message) = UiError::Core(e).shown();
            Ok(consent_page(
                &session,
                id,
                &pending,
                Some(&Flash::Error(message)),
                &Defaults::from_form(&form, &pending),
                &[],
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_of_redirect_uris() {
        assert_eq!(origin("http://127.0.0.1:9/cb?x=1"), "http://127.0.0.1:9");
        assert_eq!(origin("https://app.example"), "https://app.example");
        assert_eq!(origin("https://app.example?x"), "https://app.example");
        // A native client's private-use scheme: the CSP scheme source.
        assert_eq!(origin("com.example.app:/cb"), "com.example.app:");
    }
}
