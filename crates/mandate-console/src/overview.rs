//! The overview: what the agents did over the last day, week or month — calls let
//! through, denials, approvals asked, drift alerts — in all, per agent and per mandate,
//! and how far each active mandate's budget has burned down. Pictures are inline SVG
//! drawn here (`charts.rs`); every picture's numbers are also in a table or its label.
//!
//! An admin sees the whole tenant; anyone else the mandates they consent to
//! (`mandate_core::activity`).

use axum::extract::{Query, State};
use axum::response::Response;
use mandate_core::activity::{Activity, BurnDown, MAX_SERIES, Series, Subject, WINDOWS};
use maud::{Markup, html};
use serde::Deserialize;

use crate::charts::{KINDS, burn_down, legend, parts, sparkline, stacked, tick};
use crate::layout::{Flash, money, page, when};
use crate::names::Names;
use crate::operators::answer;
use crate::{Console, Session, UiError};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct OverviewQuery {
    days: Option<String>,
}

fn window_name(days: u32) -> String {
    match days {
        1 => "Last 24 hours".to_owned(),
        d => format!("Last {d} days"),
    }
}

fn windows(chosen: u32) -> Markup {
    html! {
        nav class="windows" aria-label="Window" {
            @for d in WINDOWS {
                @if d == chosen {
                    a href={ "/ui/overview?days=" (d) } aria-current="page" { (window_name(d)) }
                } @else {
                    a href={ "/ui/overview?days=" (d) } { (window_name(d)) }
                }
            }
        }
    }
}

/// The totals per period, as a table (inside a disclosure, for screen readers and for
/// anyone who wants the exact numbers).
fn numbers(a: &Activity) -> Markup {
    html! {
        details {
            summary { "The numbers, by period" }
            table {
                caption class="muted" { "Per " (period(a)) ", oldest first" }
                thead { tr {
                    th scope="col" { "From" }
                    @for (name, _) in KINDS { th scope="col" { (capitalised(name)) } }
                } }
                tbody {
                    @for (start, c) in a.starts.iter().zip(&a.total) {
                        tr {
                            th scope="row" { (tick(*start, a.bucket)) }
                            @for v in parts(c) { td { (v) } }
                        }
                    }
                }
            }
        }
    }
}

fn period(a: &Activity) -> String {
    match a.bucket.num_hours() {
        1 => "hour".to_owned(),
        24 => "day".to_owned(),
        h => format!("{h} hours"),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// One row per agent or mandate: its name, its calls and denials over time, its sums.
fn series_table(caption: &str, series: &[Series], admin: bool, names: &Names) -> Markup {
    html! {
        @if series.is_empty() {
            p class="muted" { "Nothing happened in this window." }
        } @else {
            table class="series" {
                caption class="muted" { (caption) }
                thead { tr {
                    th scope="col" { "Who" }
                    th scope="col" { "Calls over time" } th scope="col" { "Calls" }
                    th scope="col" { "Denials over time" } th scope="col" { "Denials" }
                    th scope="col" { "Approvals asked" } th scope="col" { "Drift alerts" }
                } }
                tbody {
                    @for s in series {
                        tr {
                            th scope="row" { (subject(s, admin, names)) }
                            td { (sparkline("calls", KINDS[0].1, &s.buckets.iter().map(|b| b.calls).collect::<Vec<_>>())) }
                            td { (s.sum.calls) }
                            td { (sparkline("denials", KINDS[1].1, &s.buckets.iter().map(|b| b.denials).collect::<Vec<_>>())) }
                            td { (s.sum.denials) }
                            td { (s.sum.approvals) }
                            td { (s.sum.drift_alerts) }
                        }
                    }
                }
            }
        }
    }
}

fn subject(s: &Series, admin: bool, names: &Names) -> Markup {
    match s.subject {
        Subject::Agent(id) if admin => {
            html! { a href={ "/ui/agents/" (id) } { (names.agent(id)) } }
        }
        Subject::Agent(id) => names.agent(id),
        Subject::Mandate(id) => html! {
            a href={ "/ui/mandates/" (id) } title=(id) {
                @match &s.label { Some(intent) => (intent), None => (id) }
            }
        },
    }
}

fn burn(b: &BurnDown, a: &Activity, names: &Names) -> Markup {
    let used = b.points.last();
    html! {
        figure class="burn" {
            (burn_down(b, a.until))
            figcaption {
                a href={ "/ui/mandates/" (b.mandate) } title=(b.mandate) { (b.intent) }
                " · " (names.agent(b.agent))
                @if b.truncated { " · " span class="muted" { "(the oldest calls only: the end is the usage now)" } }
            }
            table class="compact" {
                thead { tr { th scope="col" { "Budget" } th scope="col" { "Limit" } th scope="col" { "Used" } th scope="col" { "Left" } } }
                tbody {
                    @if let Some(max) = b.max_calls {
                        @let u = used.map_or(0, |p| p.calls);
                        tr { th scope="row" { "Calls" } td { (max) } td { (u) } td { (max.saturating_sub(u)) } }
                    }
                    @if let Some(max) = b.max_amount {
                        @let u = used.map_or(0, |p| p.amount);
                        @let c = b.currency.as_deref();
                        tr { th scope="row" { "Amount" } td { (money(max, c)) } td { (money(u, c)) } td { (money(max.saturating_sub(u), c)) } }
                    }
                }
            }
            p class="muted" { "Active since " (when(b.started)) "; expires " (when(b.expires)) "." }
        }
    }
}

pub(crate) async fn show(
    State(console): State<Console>,
    session: Session,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, UiError> {
    let (days, refused) = match mandate_core::activity::parse_window(q.days.as_deref()) {
        Ok(d) => (d, None),
        Err(e) => (
            7,
            Some(Flash::Error(format!("{e}; showing the last 7 days."))),
        ),
    };
    let viewer = session.viewer();
    let admin = session.admin().is_some();
    let activity = console.service.activity(&viewer, days).await?;
    let agents = activity
        .agents
        .iter()
        .filter_map(|s| match s.subject {
            Subject::Agent(id) => Some(id),
            Subject::Mandate(_) => None,
        })
        .chain(activity.burn_downs.iter().map(|b| b.agent));
    let names = Names::of_agents(&console, viewer.tenant(), agents).await;
    let notice = activity.truncated.then(|| {
        Flash::Error(format!(
            "More happened than one page draws: the busiest {MAX_SERIES} agents and mandates are shown, and very long histories are cut."
        ))
    });
    let bad_input = refused.is_some();
    let flash = refused.or(notice);
    let a = &activity;
    let body = page(
        "Overview",
        &session,
        flash.as_ref(),
        html! {
            h1 { "Overview" }
            p class="muted" {
                @if admin { "Every agent of the tenant. " } @else { "The mandates you consent to. " }
                "From " (when(a.since)) " to " (when(a.until)) ", per " (period(a)) "."
            }
            (windows(days))
            h2 id="activity" { "Activity" }
            p {
                strong { (a.sum.calls) } " calls, " strong { (a.sum.denials) } " denials, "
                strong { (a.sum.approvals) } " approvals asked, " strong { (a.sum.drift_alerts) } " drift alerts."
            }
            figure {
                (stacked("Activity", &a.starts, &a.total, a.bucket))
                figcaption { (legend()) }
            }
            (numbers(a))
            h2 id="agents" { "By agent" }
            (series_table("The busiest agents first", &a.agents, admin, &names))
            h2 id="mandates" { "By mandate" }
            (series_table("The busiest mandates first", &a.mandates, admin, &names))
            h2 id="budgets" { "Budgets of active mandates" }
            @if a.burn_downs.is_empty() {
                p class="muted" { "No active mandate has a budget." }
            } @else {
                p class="muted" { "The nearest to running out first. Solid: calls left; dashed: amount left." }
                div class="burns" { @for b in &a.burn_downs { (burn(b, a, &names)) } }
            }
        },
    );
    Ok(answer(bad_input, body))
}
