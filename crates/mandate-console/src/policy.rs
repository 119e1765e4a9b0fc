//! Policies, for the tenant's admins: the running set (every policy, the operator's
//! files), validating a candidate file without installing it (each problem located by
//! file, line, column and policy), and testing an AuthZEN request against the running
//! set — the request shape `mandate policy test` takes — to see allow or deny and the
//! policies that determined it; and replaying the gateway's recorded decisions under a
//! candidate file (`mandate_core::replay`, as `mandate policy replay` does).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use mandate_core::replay::ReplayReport;
use mandate_core::{CoreError, PolicySummary};
use mandate_policy::{
    Decision, PolicySetError, PolicySource, Remedy, SourceFile, parse_evaluation,
};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use crate::layout::{badge, page};
use crate::names::Names;
use crate::operators::{admin_of, answer};
use crate::{Console, Form, Session, UiError, csrf_field};

/// The longest type, id or action name the test form takes.
const MAX_NAME: usize = 1024;

/// What a form on the page produced.
#[derive(Debug)]
enum Outcome {
    Valid(PolicySummary),
    Invalid(PolicySetError),
    Decided(Decision),
    /// The report, and the names of the agents it lists.
    Replayed(ReplayReport, Names),
    /// Bad input to one of the forms: shown with the form, answered with 400.
    Refused(String),
}

fn remedy_str(r: Remedy) -> &'static str {
    match r {
        Remedy::Approval => "approval",
        Remedy::Recommend => "recommend",
        Remedy::Consent => "consent",
    }
}

fn problems(e: &PolicySetError) -> Markup {
    html! {
        div role="alert" {
            p class="flash error" { "Not valid: " (e.problems.len()) " problem(s). Nothing was installed." }
            table {
                thead { tr {
                    th scope="col" { "File" } th scope="col" { "Line" } th scope="col" { "Column" }
                    th scope="col" { "Policy" } th scope="col" { "Problem" }
                } }
                tbody { @for p in &e.problems {
                    tr {
                        td { code { (p.file) } }
                        td { @if let Some(l) = p.line { (l) } }
                        td { @if let Some(c) = p.column { (c) } }
                        td { @if let Some(id) = &p.policy { code { (id) } } }
                        td { (p.message) }
                    }
                } }
            }
        }
    }
}

fn decision(d: &Decision) -> Markup {
    let verdict = if d.allowed { "allow" } else { "deny" };
    html! {
        div role="status" class="result" {
            p { "Decision: " strong { (verdict) } " " (badge(verdict)) }
            dl class="terms" {
                dt { "Determined by" } dd {
                    @if d.policies.is_empty() { span class="muted" { "no policy (nothing permitted it)" } }
                    @for p in &d.policies { code { (p) } " " }
                }
                dt { "Reason" } dd { (d.reason) }
                @if let Some(r) = d.remedy { dt { "Remedy" } dd { (remedy_str(r)) } }
                @if !d.errors.is_empty() {
                    dt { "Evaluation errors" } dd { ul { @for e in &d.errors { li { (e) } } } }
                }
            }
        }
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn replayed(r: &ReplayReport, names: &Names) -> Markup {
    let to_deny = r.changed.iter().filter(|c| c.recorded).count();
    let to_allow = r.changed.len() - to_deny;
    let skipped: usize = r.skipped.values().sum();
    html! {
        div role="status" class="result" {
            p {
                "Replayed " (r.replayed) " decisions: " strong { (r.changed.len()) " would change" }
                " (" (to_deny) " allow → deny, " (to_allow) " deny → allow), " (skipped) " skipped."
                " Nothing was installed."
            }
            @if !r.skipped.is_empty() {
                ul { @for (why, n) in &r.skipped { li { (n) " " (why.as_str()) } } }
            }
            @if r.truncated {
                p class="flash error" { "Only the oldest " (mandate_core::replay::CONSOLE_MAX_EVENTS) " decisions were replayed; choose a later time, or run " code { "mandate policy replay" } " for all of them." }
            }
            @if r.unreproduced > 0 {
                p class="muted" { "The running set answers " (r.unreproduced) " replayed decision(s) differently from the record: policies changed since, or those requests cannot be rebuilt exactly (see the Running column)." }
            }
            @if !r.changed.is_empty() {
                table {
                    thead { tr {
                        th scope="col" { "Seq" } th scope="col" { "Time" } th scope="col" { "Mandate" }
                        th scope="col" { "Agent" } th scope="col" { "Tool" } th scope="col" { "Recorded → candidate" }
                        th scope="col" { "Running" } th scope="col" { "Reason" }
                    } }
                    tbody { @for c in &r.changed {
                        tr {
                            td { (c.seq) }
                            td { (c.at.to_rfc3339_opts(SecondsFormat::Secs, true)) }
                            td { a href={ "/ui/mandates/" (c.mandate) } { code { (c.mandate) } } }
                            td { a href={ "/ui/agents/" (c.agent) } { (names.agent(c.agent)) } }
                            td { code { (c.tool) } }
                            td { (verdict(c.recorded)) " → " strong { (verdict(c.candidate.allowed)) } }
                            td { (verdict(c.current.allowed)) }
                            td {
                                (c.candidate.reason)
                                @for p in &c.candidate.policies { " " code { (p) } }
                                @for n in &c.notes { br; span class="muted" { (n) } }
                            }
                        }
                    } }
                }
            }
        }
    }
}

/// An RFC 3339 time, or a browser's `datetime-local` value (read as UTC).
fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err("The time is not an RFC 3339 time (e.g. 2026-01-31T09:00:00Z).".to_owned())
}

/// A form field as sent, or its default.
fn sent<'a>(form: Option<&'a Form>, name: &str, default: &'a str) -> &'a str {
    form.and_then(|f| f.raw(name)).unwrap_or(default)
}

fn render(
    console: &Console,
    session: &Session,
    summary: &PolicySummary,
    source: &PolicySource,
    form: Option<&Form>,
    outcome: Option<(&str, &Outcome)>,
) -> Markup {
    let result_of = |which: &str| -> Markup {
        match outcome {
            Some((w, o)) if w == which => match o {
                Outcome::Valid(s) => html! {
                    p class="flash done" role="status" {
                        "Valid: " (s.operator_policies) " operator policies, " (s.policies.len()) " in all (" code { (s.digest) } "). Nothing was installed."
                    }
                },
                Outcome::Invalid(e) => problems(e),
                Outcome::Decided(d) => decision(d),
                Outcome::Replayed(r, names) => replayed(r, names),
                Outcome::Refused(m) => html! { p class="flash error" role="alert" { (m) } },
            },
            _ => html! {},
        }
    };
    let home = console.service.policies().home();
    html! {
        h1 { "Policies" }
        h2 { "The running set" }
        dl class="terms" {
            dt { "Digest" } dd { code { (summary.digest) } }
            dt { "Kept in" } dd { (home) }
            @if let Some(v) = console.service.policies().version() { dt { "Version" } dd { (v) } }
            dt { "Operator policies" } dd { (summary.operator_policies) }
            dt { "All policies" } dd { (summary.policies.len()) }
        }
        table {
            thead { tr {
                th scope="col" { "Policy" } th scope="col" { "File" } th scope="col" { "Effect" }
                th scope="col" { "Reason" } th scope="col" { "Remedy" } th scope="col" { "Origin" }
            } }
            tbody { @for p in &summary.policies {
                tr {
                    td { code { (p.id) } }
                    td { code { (p.file) } }
                    td { (p.effect) }
                    td { @if let Some(r) = &p.reason { (r) } }
                    td { @if let Some(r) = p.remedy { (remedy_str(r)) } }
                    td { @if p.builtin { "built-in" } @else { "operator" } }
                }
            } }
        }
        @if source.policies.is_empty() && source.schemas.is_empty() && source.entities.is_none() {
            p class="muted" { "The operator has no files: only Mandate's built-in policies run." }
        }
        @for f in source.policies.iter().chain(&source.schemas).chain(source.entities.as_ref()) {
            h3 { code { (f.name) } }
            pre aria-label={ "Text of " (f.name) } { (f.text) }
        }

        h2 id="validate" { "Validate a candidate" }
        p class="muted" { "The candidate file replaces the operator's policy files as a whole; the running set's schema fragments and entities are kept unless you paste a schema fragment below (Mandate's own schema and built-in policies always stay). It is compiled exactly as the server would, and never installed from here." }
        (result_of("validate"))
        form method="post" action="/ui/policies/validate" {
            (csrf_field(session))
            label for="file" { "File name" }
            input id="file" type="text" name="file" value=(sent(form, "file", "candidate.cedar")) maxlength="255";
            label for="text" { "Cedar policies" }
            textarea id="text" name="text" rows="12" spellcheck="false" { (sent(form, "text", "")) }
            label for="schema" { "Schema fragment (optional; replaces the running set's fragments)" }
            textarea id="schema" name="schema" rows="4" spellcheck="false" { (sent(form, "schema", "")) }
            button type="submit" { "Validate" }
        }

        h2 id="replay" { "Replay recorded decisions" }
        p class="muted" { "The gateway's decisions since the time given are decided again under the candidate file (with the running set's schema fragments and entities), as " code { "mandate policy replay" } " does; each decision that would change is listed. Nothing is installed." }
        (result_of("replay"))
        form method="post" action="/ui/policies/replay" {
            (csrf_field(session))
            label for="replay_text" { "Candidate Cedar policies" }
            textarea id="replay_text" name="candidate" rows="12" spellcheck="false" { (sent(form, "candidate", "")) }
            label for="since" { "Since (RFC 3339, UTC)" }
            input id="since" type="text" name="since" value=(sent(form, "since", "")) placeholder="2026-01-31T09:00:00Z" maxlength="64";
            button type="submit" { "Replay" }
        }

        h2 id="test" { "Test a request" }
        p class="muted" { "An AuthZEN evaluation against the operator's running policies, as " code { "mandate policy test" } " runs it." }
        (result_of("test"))
        form method="post" action="/ui/policies/test" {
            (csrf_field(session))
            fieldset {
                legend { "Subject" }
                label for="subject_type" { "Type" }
                input id="subject_type" type="text" name="subject_type" value=(sent(form, "subject_type", "user")) maxlength=(MAX_NAME);
                label for="subject_id" { "Id" }
                input id="subject_id" type="text" name="subject_id" value=(sent(form, "subject_id", "")) maxlength=(MAX_NAME);
            }
            label for="action" { "Action name" }
            input id="action" type="text" name="action" value=(sent(form, "action", "")) maxlength=(MAX_NAME);
            fieldset {
                legend { "Resource" }
                label for="resource_type" { "Type" }
                input id="resource_type" type="text" name="resource_type" value=(sent(form, "resource_type", "")) maxlength=(MAX_NAME);
                label for="resource_id" { "Id" }
                input id="resource_id" type="text" name="resource_id" value=(sent(form, "resource_id", "")) maxlength=(MAX_NAME);
            }
            label for="context" { "Context (a JSON object, optional)" }
            textarea id="context" name="context" rows="4" spellcheck="false" { (sent(form, "context", "")) }
            button type="submit" { "Decide" }
        }
    }
}

async fn respond(
    console: &Console,
    session: &Session,
    form: Option<&Form>,
    outcome: Option<(&str, &Outcome)>,
) -> Result<Response, UiError> {
    let admin = admin_of(session)?;
    let summary = console.service.policy_summary(&admin)?;
    let source = console.service.policy_source(&admin)?;
    let bad = matches!(
        outcome,
        Some((_, Outcome::Invalid(_) | Outcome::Refused(_)))
    );
    let body = render(console, session, &summary, &source, form, outcome);
    // The message stands beside the form it is about, as an alert of its own.
    Ok(answer(bad, page("Policies", session, None, body)))
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
) -> Result<Response, UiError> {
    respond(&console, &session, None, None).await
}

pub(crate) async fn validate(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    session.check(&form)?;
    let name = form.get("file").unwrap_or("candidate.cedar").to_owned();
    let text = form.raw("text").unwrap_or_default().to_owned();
    let running = console.service.policy_source(&admin)?;
    let schemas = match form.get("schema") {
        Some(schema) => vec![SourceFile {
            name: "candidate.cedarschema".to_owned(),
            text: schema.to_owned(),
        }],
        None => running.schemas,
    };
    let candidate = PolicySource {
        policies: vec![SourceFile { name, text }],
        schemas,
        entities: running.entities,
    };
    let outcome = match console.service.validate_policies(&admin, candidate) {
        Ok(summary) => Outcome::Valid(summary),
        Err(CoreError::PolicySet(e)) => Outcome::Invalid(e),
        Err(e) => return Err(e.into()),
    };
    respond(
        &console,
        &session,
        Some(&form),
        Some(("validate", &outcome)),
    )
    .await
}

pub(crate) async fn replay(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    session.check(&form)?;
    let outcome = match parse_since(form.get("since").unwrap_or("")) {
        Err(message) => Outcome::Refused(message),
        Ok(since) => {
            let running = console.service.policy_source(&admin)?;
            let candidate = PolicySource {
                policies: vec![SourceFile {
                    name: "candidate.cedar".to_owned(),
                    text: form.raw("candidate").unwrap_or_default().to_owned(),
                }],
                schemas: running.schemas,
                entities: running.entities,
            };
            match console
                .service
                .replay_policies(&admin, candidate, since)
                .await
            {
                Ok(report) => {
                    let agents = report.changed.iter().map(|c| c.agent);
                    let names = Names::of_agents(&console, admin.tenant(), agents).await;
                    Outcome::Replayed(report, names)
                }
                Err(CoreError::PolicySet(e)) => Outcome::Invalid(e),
                Err(e) => return Err(e.into()),
            }
        }
    };
    respond(&console, &session, Some(&form), Some(("replay", &outcome))).await
}

/// The AuthZEN evaluation request the form describes.
fn request_of(form: &Form) -> Result<Value, String> {
    let field = |name: &str, what: &str| -> Result<String, String> {
        let v = form
            .get(name)
            .ok_or_else(|| format!("{what} is required."))?;
        if v.chars().count() > MAX_NAME {
            return Err(format!("{what} is longer than {MAX_NAME} characters."));
        }
        Ok(v.to_owned())
    };
    let subject = json!({"type": field("subject_type", "The subject type")?, "id": field("subject_id", "The subject id")?});
    let action = json!({"name": field("action", "The action name")?});
    let resource = json!({"type": field("resource_type", "The resource type")?, "id": field("resource_id", "The resource id")?});
    let mut request = json!({"subject": subject, "action": action, "resource": resource});
    if let Some(text) = form.get("context") {
        let context: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| format!("The context is not a JSON object: {e}."))?;
        if let Some(r) = request.as_object_mut() {
            r.insert("context".into(), Value::Object(context));
        }
    }
    Ok(request)
}

pub(crate) async fn test(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    session.check(&form)?;
    let outcome = match request_of(&form)
        .and_then(|r| parse_evaluation(&r).map_err(|e| format!("The request is not valid: {e}.")))
    {
        Ok(request) => {
            Outcome::Decided(console.service.authzen_set(&admin)?.decide_access(&request))
        }
        Err(message) => Outcome::Refused(message),
    };
    respond(&console, &session, Some(&form), Some(("test", &outcome))).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn replay_times() {
        assert_eq!(
            parse_since("2026-01-31T09:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-01-31T08:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-01-31T09:00").unwrap().to_rfc3339(),
            "2026-01-31T09:00:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("").is_err());
    }

    #[test]
    fn the_test_form_becomes_an_authzen_request() {
        let r = request_of(&Form::parse(
            b"subject_type=user&subject_id=alice&action=read&resource_type=doc&resource_id=1&context=%7B%22ip%22%3A%221.2.3.4%22%7D",
        ))
        .unwrap();
        assert_eq!(r["subject"], json!({"type": "user", "id": "alice"}));
        assert_eq!(r["context"], json!({"ip": "1.2.3.4"}));
        assert!(parse_evaluation(&r).is_ok());
        let e = request_of(&Form::parse(
            b"subject_type=user&subject_id=a&action=r&resource_type=d&resource_id=1&context=%5B1%5D",
        ))
        .unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = request_of(&Form::parse(b"subject_type=user")).unwrap_err();
        assert!(e.contains("subject id is required"), "{e}");
        let long = format!(
            "subject_type=user&subject_id={}&action=r&resource_type=d&resource_id=1",
            "a".repeat(MAX_NAME + 1)
        );
        assert!(
            request_of(&Form::parse(long.as_bytes()))
                .unwrap_err()
                .contains("longer")
        );
    }
}
