//! The audit log, for the tenant's admins: a paged search by event type, mandate and
//! time, and verifying the hash chain and its signed checkpoints. Rows show what the
//! API's audit listing returns, and of an event's data only named key fields — never
//! captured arguments.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use mandate_audit::{Event, EventKind};
use mandate_core::Verification;
use mandate_store::AuditFilter;
use mandate_types::MandateId;
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Flash, page, when};
use crate::names::Names;
use crate::operators::{admin_of, answer};
use crate::{Console, Form, Session, UiError, csrf_field};

const PAGE: u32 = 50;

/// The fields of an event's data a row shows. Argument values are not among them.
const KEY_FIELDS: &[&str] = &[
    "tool",
    "decision",
    "outcome",
    "reason",
    "remedy",
    "channel",
    "status",
    "scope",
    "depth",
    "arguments_hash",
    "digest",
    "latency_ms",
];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    mandate: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
}

/// A time as typed: RFC 3339, or a browser's `datetime-local` value read as UTC.
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|t| t.and_utc())
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The filter the query describes, and every problem with it.
fn filter_of(q: &SearchQuery) -> (AuditFilter, Option<u64>, Vec<String>) {
    let mut problems = Vec::new();
    let mut filter = AuditFilter::default();
    if let Some(k) = blank(&q.kind) {
        match k.parse::<EventKind>() {
            Ok(kind) => filter.kind = Some(kind),
            Err(e) => problems.push(format!("Event type: {e}.")),
        }
    }
    if let Some(m) = blank(&q.mandate) {
        match m.parse::<MandateId>() {
            Ok(id) => filter.mandate = Some(id),
            Err(_) => problems.push("The mandate must be a mandate id (mnd_…).".to_owned()),
        }
    }
    for (raw, slot, name) in [
        (&q.since, &mut filter.since, "Since"),
        (&q.until, &mut filter.until, "Until"),
    ] {
        if let Some(t) = blank(raw) {
            match parse_time(t) {
                Some(at) => *slot = Some(at),
                None => problems.push(format!(
                    "{name} must be a time such as 2026-11-23T09:00 (UTC) or RFC 3339."
                )),
            }
        }
    }
    let after = match blank(&q.after).map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            problems.push("The page position must be a sequence number.".to_owned());
            None
        }
    };
    (filter, after, problems)
}

fn value_text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn rows(events: &[Event], names: &Names) -> Markup {
    html! {
        @if events.is_empty() {
            p class="muted" { "No events match." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Seq" } th scope="col" { "Time" } th scope="col" { "Type" }
                    th scope="col" { "Mandate" } th scope="col" { "Actor chain" } th scope="col" { "Details" }
                } }
                tbody { @for e in events {
                    tr {
                        td { (e.seq) }
                        td { (when(e.at)) }
                        td { code { (e.kind.as_str()) } }
                        td { @if let Some(m) = e.mandate_id { a href={ "/ui/mandates/" (m) } { code { (m) } } } }
                        td { (names.actors(&e.actor)) }
                        td {
                            @for key in KEY_FIELDS {
                                @if let Some(v) = e.data.get(*key) {
                                    span class="field" { (key) "=" (value_text(v)) } " "
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn verification(v: &Verification) -> Markup {
    match v {
        Verification::Intact(ok) => html! {
            p class="flash done" role="status" {
                "Verified: the chain is intact. " (ok.events) " event(s) and " (ok.checkpoints)
                " signed checkpoint(s) checked; head at seq " (ok.head.seq) " (" code { (ok.head.hash) } ")."
            }
        },
        Verification::Broken(b) => html! {
            p class="flash error" role="alert" {
                "Broken: the chain fails at seq " (b.seq) ": " (b.reason) "."
            }
        },
    }
}

async fn respond(
    console: &Console,
    session: &Session,
    q: &SearchQuery,
    verified: Option<&Verification>,
) -> Result<Response, UiError> {
    let admin = admin_of(session)?;
    let (filter, after, problems) = filter_of(q);
    let (events, next) = if problems.is_empty() {
        let mut events = console
            .service
            .audit_events(&admin, filter, after, PAGE + 1)
            .await?;
        let more = events.len() > PAGE as usize;
        events.truncate(PAGE as usize);
        let next = more.then(|| events.last().map(|e| e.seq)).flatten();
        (events, next)
    } else {
        (Vec::new(), None)
    };
    let labels: Vec<&String> = events.iter().flat_map(|e| e.actor.iter()).collect();
    let names = Names::of_labels(console, admin.tenant(), &labels).await;
    let flash = (!problems.is_empty()).then(|| Flash::Error(problems.join(" ")));
    let kind = blank(&q.kind).unwrap_or_default();
    let next_link = next.map(|seq| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("type", &q.kind),
            ("mandate", &q.mandate),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = blank(v) {
                url.append_pair(k, v);
            }
        }
        url.append_pair("after", &seq.to_string());
        format!("/ui/audit?{}", url.finish())
    });
    let body = page(
        "Audit",
        session,
        flash.as_ref(),
        html! {
            h1 { "Audit log" }
            h2 { "Verify" }
            @if let Some(v) = verified { (verification(v)) }
            form method="post" action="/ui/audit/verify" {
                (csrf_field(session))
                p class="muted" { "Checks every event's hash against its predecessor and every signed checkpoint." }
                button type="submit" { "Verify the chain" }
            }
            h2 { "Search" }
            form method="get" action="/ui/audit" class="filters" {
                div {
                    label for="type" { "Event type" }
                    select id="type" name="type" {
                        option value="" { "any" }
                        @for k in EventKind::ALL {
                            option value=(k.as_str()) selected[k.as_str() == kind] { (k.as_str()) }
                        }
                    }
                }
                div {
                    label for="mandate" { "Mandate id" }
                    input id="mandate" type="text" name="mandate" value=(blank(&q.mandate).unwrap_or_default()) placeholder="mnd_…" maxlength="100";
                }
                div {
                    label for="since" { "Since (UTC)" }
                    input id="since" type="text" name="since" value=(blank(&q.since).unwrap_or_default()) placeholder="2026-11-23T09:00" maxlength="64";
                }
                div {
                    label for="until" { "Until (UTC)" }
                    input id="until" type="text" name="until" value=(blank(&q.until).unwrap_or_default()) placeholder="2026-11-24T09:00" maxlength="64";
                }
                button type="submit" class="secondary" { "Search" }
            }
            (rows(&events, &names))
            @if let Some(url) = next_link {
                p { a href=(url) { "Next page" } }
            }
        },
    );
    Ok(answer(flash.is_some(), body))
}

pub(crate) async fn search(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<SearchQuery>,
) -> Result<Response, UiError> {
    respond(&console, &session, &q, None).await
}

pub(crate) async fn verify(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    let admin = admin_of(&session)?;
    session.check(&form)?;
    let result = console.service.verify_audit_as(&admin).await?;
    respond(&console, &session, &SearchQuery::default(), Some(&result)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn queries_become_filters_or_problems() {
        let q = SearchQuery {
            kind: Some("token.issued".into()),
            since: Some("2026-11-23T09:00".into()),
            until: Some("2026-11-24T09:00:00Z".into()),
            after: Some("7".into()),
            ..SearchQuery::default()
        };
        let (f, after, problems) = filter_of(&q);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(f.kind, Some(EventKind::TokenIssued));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-23T09:00:00+00:00");
        assert!(f.until.is_some());
        assert_eq!(after, Some(7));
        let bad = SearchQuery {
            kind: Some("token.stolen".into()),
            mandate: Some("agt_nope".into()),
            since: Some("yesterday".into()),
            after: Some("-1".into()),
            ..SearchQuery::default()
        };
        let (_, _, problems) = filter_of(&bad);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_broken_chain_names_its_first_bad_seq() {
        let broken = Verification::Broken(mandate_audit::Broken {
            seq: 42,
            reason: "the hash does not match <b>".into(),
        });
        let out = verification(&broken).into_string();
        assert!(out.contains("role=\"alert\""), "{out}");
        assert!(
            out.contains("fails at seq 42: the hash does not match &lt;b&gt;"),
            "{out}"
        );
    }
}
