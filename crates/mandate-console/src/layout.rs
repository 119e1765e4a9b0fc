//! The page shell (landmarks, navigation, messages) and the two assets the console
//! serves itself. Nothing is fetched from anywhere else.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::session::{Session, csrf_field};

/// A message shown at the top of a page.
#[derive(Debug, Clone)]
pub enum Flash {
    Done(String),
    Error(String),
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Mandate" }
            link rel="stylesheet" href="/ui/assets/console.css";
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A page for a signed-in human.
pub fn page(title: &str, session: &Session, flash: Option<&Flash>, body: Markup) -> Markup {
    let admin = session.admin().is_some();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    nav aria-label="Console" {
                        a class="brand" href="/ui/" { "Mandate" }
                        a href="/ui/overview" { "Overview" }
                        a href="/ui/approvals" { "Approvals" }
                        a href="/ui/mandates" { "Mandates" }
                        a href="/ui/reviews" { "Reviews" }
                        a href="/ui/connections" { "Connections" }
                        @if admin {
                            a href="/ui/agents" { "Agents" }
                            a href="/ui/tools" { "Tools" }
                            a href="/ui/policies" { "Policies" }
                            a href="/ui/audit" { "Audit" }
                        }
                    }
                    form method="post" action="/ui/logout" class="who" {
                        span { (session.signed.human.display_name) @if admin { " (admin)" } }
                        (csrf_field(session))
                        button type="submit" { "Sign out" }
                    }
                }
                main id="main" {
                    @if let Some(f) = flash { (flash_box(f)) }
                    (body)
                }
            }
        }
    }
}

/// A page for no one in particular: sign-in, errors.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header class="top" { nav aria-label="Console" { a class="brand" href="/ui/" { "Mandate" } } }
                main id="main" class="narrow" { (body) }
            }
        }
    }
}

pub fn flash_box(flash: &Flash) -> Markup {
    match flash {
        Flash::Done(m) => html! { p class="flash done" role="status" { (m) } },
        Flash::Error(m) => html! { p class="flash error" role="alert" { (m) } },
    }
}

/// A time as people read it, with the exact value for machines.
pub fn when(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// An amount in a currency's minor units as people read it: `25000` USD is
/// `250.00 USD`, `500` JPY is `500 JPY`, `1234` BHD is `1.234 BHD` (ISO 4217
/// exponents); without a currency, the number as it is.
pub fn money(minor: u64, currency: Option<&str>) -> String {
    let Some(code) = currency else {
        return minor.to_string();
    };
    let digits: u32 = match code.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    };
    let unit = 10u64.pow(digits);
    if digits == 0 {
        return format!("{minor} {code}");
    }
    let width = digits as usize;
    format!("{}.{:0width$} {code}", minor / unit, minor % unit)
}

/// A status as a labelled badge.
pub fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        JS,
    )
}

/// Colours meet WCAG AA contrast on their backgrounds; focus is always visible.
const CSS: &str = r#"
:root { --fg:#1a1a1a; --muted:#4a4a4a; --bg:#fff; --line:#c8c8c8; --accent:#0b4f9c; --bad:#a4161a; --good:#1b5e20; --warn:#7a4b00; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
a { color:var(--accent); }
a:focus, button:focus, input:focus, select:focus, textarea:focus, summary:focus { outline:3px solid #f0a000; outline-offset:2px; }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:#fff; padding:4px; z-index:9; }
header.top { display:flex; justify-content:space-between; align-items:center; gap:1rem; padding:.5rem 1rem; border-bottom:1px solid var(--line); flex-wrap:wrap; }
header.top nav a { margin-right:1rem; } .brand { font-weight:700; text-decoration:none; color:var(--fg); }
.who span { margin-right:.5rem; color:var(--muted); }
main { padding:1rem; max-width:72rem; margin:0 auto; } main.narrow { max-width:28rem; }
table { border-collapse:collapse; width:100%; margin:1rem 0; } th, td { text-align:left; padding:.4rem .5rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; }
label { display:block; font-weight:600; margin-top:.75rem; }
input[type=text], input[type=email], input[type=password], input[type=number], input[type=datetime-local], select, textarea { width:100%; padding:.4rem; font:inherit; border:1px solid #767676; border-radius:3px; }
fieldset { border:1px solid var(--line); margin:1rem 0; padding:.5rem 1rem 1rem; } legend { font-weight:600; }
fieldset label { font-weight:400; display:flex; gap:.5rem; align-items:baseline; margin-top:.35rem; }
.choice { display:flex; gap:.5rem; align-items:baseline; margin-top:.35rem; } .choice label, td label { margin:0; }
button { font:inherit; padding:.45rem 1rem; margin:.75rem .5rem 0 0; border:1px solid var(--accent); background:var(--accent); color:#fff; border-radius:3px; cursor:pointer; }
button.secondary { background:#fff; color:var(--accent); } button.danger { background:var(--bad); border-color:var(--bad); }
.flash { padding:.6rem .8rem; border-radius:3px; } .flash.done { background:#e8f5e9; color:var(--good); } .flash.error, .error { background:#fdecea; color:var(--bad); padding:.4rem .6rem; }
.field-error { color:var(--bad); font-weight:600; margin:.25rem 0 0; }
.badge { display:inline-block; padding:0 .45rem; border-radius:3px; border:1px solid currentColor; font-size:.85rem; }
.badge.high_impact, .badge.revoked, .badge.denied, .badge.expired, .badge.deny { color:var(--bad); }
.badge.write, .badge.pending, .badge.requested, .badge.recorded { color:var(--warn); }
.badge.read, .badge.active, .badge.approved, .badge.used, .badge.allow, .badge.executed { color:var(--good); }
pre { background:#f4f4f4; padding:.6rem; overflow:auto; border:1px solid var(--line); }
dl.terms { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; } dl.terms dt { font-weight:600; } dl.terms dd { margin:0; }
.muted { color:var(--muted); }
ol.timeline { list-style:none; padding-left:0; } ol.timeline li { border-left:3px solid var(--line); padding:.2rem .8rem; margin:0; }
ol.timeline li.d1 { margin-left:1.5rem; } ol.timeline li.d2 { margin-left:3rem; } ol.timeline li.d3 { margin-left:4.5rem; }
.filters { display:flex; gap:1rem; align-items:end; flex-wrap:wrap; } .filters label { margin-top:0; }
svg.tree { max-width:100%; height:auto; border:1px solid var(--line); }
section.review { border-top:2px solid var(--line); margin-top:1.5rem; } form.finding { border-bottom:1px solid var(--line); padding-bottom:.5rem; }
svg.chart { max-width:100%; height:auto; } figure { margin:1rem 0; }
ul.legend { list-style:none; display:flex; gap:1.25rem; padding:0; margin:.25rem 0; flex-wrap:wrap; }
nav.windows { display:flex; gap:1rem; margin:.5rem 0 1rem; } nav.windows a[aria-current] { font-weight:700; color:var(--fg); text-decoration:none; border-bottom:3px solid var(--accent); }
table.series td, table.series th { vertical-align:middle; } table.compact { width:auto; margin:.5rem 0; }
div.burns { display:grid; grid-template-columns:repeat(auto-fill, minmax(27rem, 1fr)); gap:1rem 2rem; }
details summary { cursor:pointer; color:var(--accent); margin:.5rem 0; }
.badge.unused_scope, .badge.denied_attempts, .badge.drift_alert, .badge.disabled { color:var(--warn); }
"#;

/// Live regions: an element with `data-live="URL"` is refreshed from that URL every
/// few seconds (the approvals inbox). Without JavaScript the page still works; it just
/// needs a reload.
const JS: &str = r#"
(function () {
  function refresh(el) {
    fetch(el.getAttribute('data-live'), { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null && html !== el.innerHTML) { el.innerHTML = html; } })
      .catch(function () {});
  }
  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('[data-live]').forEach(function (el) {
      setInterval(function () { refresh(el); }, 2000);
    });
  });
})();
"#;

#[cfg(test)]
mod money_tests {
    use super::money;

    #[test]
    fn amounts_read_in_their_currency() {
        assert_eq!(money(25_000, Some("USD")), "250.00 USD");
        assert_eq!(money(50_000, Some("eur")), "500.00 eur");
        assert_eq!(money(5, Some("USD")), "0.05 USD");
        assert_eq!(money(0, Some("USD")), "0.00 USD");
        assert_eq!(money(500, Some("JPY")), "500 JPY");
        assert_eq!(money(1_234, Some("BHD")), "1.234 BHD");
        assert_eq!(money(7, Some("CLF")), "0.0007 CLF");
        assert_eq!(money(25_000, None), "25000");
        assert_eq!(money(u64::MAX, Some("USD")), "184467440737095516.15 USD");
        // Whatever an operator wrote as a code is shown as written (escaped by maud).
        assert_eq!(money(100, Some("<b>")), "1.00 <b>");
    }
}
