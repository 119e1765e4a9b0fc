//! Charts drawn as inline SVG on the server, like the delegation tree: no script, nothing
//! fetched. Every chart is an image with a label saying what it shows in words and
//! numbers; each page that draws one also gives its numbers as a table. All text goes
//! through maud, so a name cannot break out of the markup.

use chrono::{DateTime, Duration, Utc};
use mandate_core::activity::{BurnDown, Counts};
use maud::{Markup, html};

use crate::layout::money;

/// The four things the overview counts, in drawing order, with their colours (each at
/// least 4.5:1 against white) and names.
pub(crate) const KINDS: [(&str, &str); 4] = [
    ("calls", "#1b5e20"),
    ("denials", "#a4161a"),
    ("approvals asked", "#7a4b00"),
    ("drift alerts", "#4a2a8a"),
];

pub(crate) fn parts(c: &Counts) -> [u64; 4] {
    [c.calls, c.denials, c.approvals, c.drift_alerts]
}

/// How a bucket's start reads on an axis: the hour for buckets shorter than a day.
pub(crate) fn tick(at: DateTime<Utc>, bucket: Duration) -> String {
    if bucket < Duration::days(1) {
        at.format("%m-%d %H:%M").to_string()
    } else {
        at.format("%Y-%m-%d").to_string()
    }
}

/// A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v;
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

#[allow(clippy::cast_precision_loss, reason = "pixel positions")]
fn scale(v: u64, max: u64, px: f64) -> f64 {
    if max == 0 {
        0.0
    } else {
        v.min(max) as f64 / max as f64 * px
    }
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// Stacked bars per bucket: calls, denials, approvals asked, drift alerts.
pub(crate) fn stacked(
    title: &str,
    starts: &[DateTime<Utc>],
    buckets: &[Counts],
    bucket: Duration,
) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 10.0;
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let top = nice(buckets.iter().map(Counts::total).max().unwrap_or(0).max(1));
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    let slot = plot_w / buckets.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut sum = Counts::default();
    for b in buckets {
        sum.calls += b.calls;
        sum.denials += b.denials;
        sum.approvals += b.approvals;
        sum.drift_alerts += b.drift_alerts;
    }
    let label = format!(
        "{title}: {} calls, {} denials, {} approvals asked, {} drift alerts in {} periods",
        sum.calls,
        sum.denials,
        sum.approvals,
        sum.drift_alerts,
        buckets.len()
    );
    // Each bar's segments, bottom up: x, y, height, colour, what it shows.
    let mut rects = Vec::new();
    for (i, c) in buckets.iter().enumerate() {
        let x = LEFT + slot * f64::from(u32::try_from(i).unwrap_or(0)) + (slot - bar) / 2.0;
        let at = starts.get(i).map(|s| tick(*s, bucket)).unwrap_or_default();
        let mut y = TOP + plot_h;
        for ((name, colour), v) in KINDS.iter().zip(parts(c)) {
            if v > 0 {
                let h = scale(v, top, plot_h).max(1.0);
                y -= h;
                rects.push((x, y, h, *colour, format!("{at}: {v} {name}")));
            }
        }
    }
    let last = starts.len().saturating_sub(1);
    // The first, middle and last buckets' starts, kept inside the picture.
    let ticks = [(0, "start"), (last / 2, "middle"), (last, "end")];
    html! {
        svg class="chart" role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) {
            title { (title) }
            @for (v, y) in [(top, TOP), (top / 2, TOP + plot_h / 2.0), (0, TOP + plot_h)] {
                line x1=(LEFT) x2=(W - 8.0) y1=(f1(y)) y2=(f1(y)) stroke="#c8c8c8" {}
                text x=(LEFT - 6.0) y=(f1(y + 4.0)) text-anchor="end" font-size="11" fill="#4a4a4a" { (v) }
            }
            @for (x, y, h, colour, what) in &rects {
                rect x=(f1(*x)) y=(f1(*y)) width=(f1(bar)) height=(f1(*h)) fill=(colour) {
                    title { (what) }
                }
            }
            @for (i, anchor) in &ticks {
                @if let Some(s) = starts.get(*i) {
                    @let x = LEFT + slot * f64::from(u32::try_from(*i).unwrap_or(0)) + slot / 2.0;
                    text x=(f1(x)) y=(f1(H - 8.0)) text-anchor=(anchor) font-size="11" fill="#4a4a4a" { (tick(*s, bucket)) }
                }
            }
        }
    }
}

/// The chart's key: each kind's colour and name.
pub(crate) fn legend() -> Markup {
    html! {
        ul class="legend" aria-hidden="true" {
            @for (name, colour) in KINDS {
                li {
                    svg width="12" height="12" xmlns="http://www.w3.org/2000/svg" { rect width="12" height="12" fill=(colour) {} }
                    " " (name)
                }
            }
        }
    }
}

/// A row's small picture of one kind over time; its label gives every number.
pub(crate) fn sparkline(what: &str, colour: &str, values: &[u64]) -> Markup {
    const W: f64 = 150.0;
    const H: f64 = 26.0;
    let top = values.iter().copied().max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    let slot = W / values.len().max(1) as f64;
    let numbers: Vec<String> = values.iter().map(u64::to_string).collect();
    let label = format!("{what} per period, oldest first: {}", numbers.join(", "));
    html! {
        svg class="spark" role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) {
            line x1="0" x2=(W) y1=(H - 0.5) y2=(H - 0.5) stroke="#c8c8c8" {}
            @for (i, v) in values.iter().enumerate() {
                @if *v > 0 {
                    @let h = scale(*v, top, H - 2.0).max(1.0);
                    @let x = slot * f64::from(u32::try_from(i).unwrap_or(0));
                    rect x=(f1(x)) y=(f1(H - 1.0 - h)) width=(f1((slot - 1.0).max(1.0))) height=(f1(h)) fill=(colour) {}
                }
            }
        }
    }
}

/// What a burn-down draws: the share of each budget left, over the mandate's life.
struct Line {
    name: &'static str,
    colour: &'static str,
    dashed: bool,
    max: u64,
    used: Vec<(DateTime<Utc>, u64)>,
}

/// An active mandate's budgets left, from activation to expiry, with "now" marked.
pub(crate) fn burn_down(b: &BurnDown, now: DateTime<Utc>) -> Markup {
    const W: f64 = 420.0;
    const H: f64 = 178.0;
    const LEFT: f64 = 44.0;
    const TOP: f64 = 18.0;
    const BOTTOM: f64 = 28.0;
    let plot_w = W - LEFT - 10.0;
    let plot_h = H - TOP - BOTTOM;
    let span = (b.expires - b.started).num_seconds().max(1);
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    let x_of = |at: DateTime<Utc>| {
        let s = (at - b.started).num_seconds().clamp(0, span);
        LEFT + s as f64 / span as f64 * plot_w
    };
    let mut lines = Vec::new();
    if let Some(max) = b.max_calls {
        lines.push(Line {
            name: "calls left",
            colour: "#0b4f9c",
            dashed: false,
            max,
            used: b.points.iter().map(|p| (p.at, p.calls)).collect(),
        });
    }
    if let Some(max) = b.max_amount {
        lines.push(Line {
            name: "amount left",
            colour: "#1b5e20",
            dashed: true,
            max,
            used: b.points.iter().map(|p| (p.at, p.amount)).collect(),
        });
    }
    let left_words: Vec<String> = lines
        .iter()
        .map(|l| {
            let used = l.used.last().map_or(0, |p| p.1);
            let left = l.max.saturating_sub(used);
            if l.dashed {
                format!(
                    "{} of {} left",
                    money(left, b.currency.as_deref()),
                    money(l.max, b.currency.as_deref())
                )
            } else {
                format!("{left} of {} calls left", l.max)
            }
        })
        .collect();
    let label = format!(
        "Budget of “{}”: {}; active since {}, expires {}",
        b.intent,
        left_words.join(", "),
        b.started.format("%Y-%m-%d %H:%M UTC"),
        b.expires.format("%Y-%m-%d %H:%M UTC"),
    );
    let now_x = x_of(now);
    html! {
        svg class="chart burn" role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) {
            title { "Budget left: " (b.intent) }
            @for (text, y) in [("100%", TOP), ("50%", TOP + plot_h / 2.0), ("0", TOP + plot_h)] {
                line x1=(LEFT) x2=(W - 10.0) y1=(f1(y)) y2=(f1(y)) stroke="#c8c8c8" {}
                text x=(LEFT - 6.0) y=(f1(y + 4.0)) text-anchor="end" font-size="11" fill="#4a4a4a" { (text) }
            }
            line x1=(f1(now_x)) x2=(f1(now_x)) y1=(TOP) y2=(f1(TOP + plot_h)) stroke="#4a4a4a" stroke-dasharray="2 3" {}
            text x=(f1(now_x)) y="12" text-anchor=(if now_x < LEFT + 20.0 { "start" } else if now_x > W - 30.0 { "end" } else { "middle" }) font-size="11" fill="#4a4a4a" { "now" }
            text x=(LEFT) y=(f1(H - 8.0)) text-anchor="start" font-size="11" fill="#4a4a4a" { (b.started.format("%m-%d %H:%M")) }
            text x=(W - 10.0) y=(f1(H - 8.0)) text-anchor="end" font-size="11" fill="#4a4a4a" { (b.expires.format("%m-%d %H:%M")) }
            @for l in &lines {
                polyline fill="none" stroke=(l.colour) stroke-width="2"
                    stroke-dasharray=[l.dashed.then_some("6 3")]
                    points=(steps(&l.used, l.max, &x_of, TOP, plot_h)) {
                    title { (l.name) }
                }
            }
        }
    }
}

/// At most this many points of a step line (one per allowed call otherwise).
const MOST_POINTS: usize = 400;

/// A step line of what is left: flat until each use, then down. A long history is
/// thinned to [`MOST_POINTS`] evenly spread uses, always keeping the first and last.
fn steps(
    used: &[(DateTime<Utc>, u64)],
    max: u64,
    x_of: &dyn Fn(DateTime<Utc>) -> f64,
    top: f64,
    plot_h: f64,
) -> String {
    let y_of = |u: u64| top + plot_h - scale(max.saturating_sub(u), max, plot_h);
    let every = used.len().div_ceil(MOST_POINTS).max(1);
    let last = used.len().saturating_sub(1);
    let kept = used
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == last)
        .map(|(_, p)| p);
    let mut out = Vec::new();
    let mut last_y = None;
    for (at, u) in kept {
        let (x, y) = (x_of(*at), y_of(*u));
        if let Some(prev) = last_y {
            out.push(format!("{},{}", f1(x), f1(prev)));
        }
        out.push(format!("{},{}", f1(x), f1(y)));
        last_y = Some(y);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use mandate_core::activity::Used;
    use mandate_types::{AgentId, MandateId};

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(0), 1);
        assert_eq!(nice(1), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(7), 10);
        assert_eq!(nice(11), 20);
        assert_eq!(nice(2_001), 5_000);
        assert_eq!(nice(u64::MAX), u64::MAX);
    }

    #[test]
    fn bars_say_their_numbers_and_stay_inside_the_plot() {
        let since = Utc::now();
        let starts = vec![
            since,
            since + Duration::hours(1),
            since + Duration::hours(2),
        ];
        let buckets = vec![
            Counts {
                calls: 40,
                denials: 3,
                approvals: 1,
                drift_alerts: 0,
            },
            Counts::default(),
            Counts {
                calls: 2,
                denials: 0,
                approvals: 0,
                drift_alerts: 1,
            },
        ];
        let out = stacked("Activity <all>", &starts, &buckets, Duration::hours(1)).into_string();
        assert!(out.contains("aria-label=\"Activity &lt;all&gt;: 42 calls, 3 denials, 1 approvals asked, 1 drift alerts in 3 periods\""), "{out}");
        assert_eq!(out.matches("<rect").count(), 5, "{out}");
        // The tallest bar reaches the top of the axis (50), never above the plot.
        assert!(out.contains(">50</text>"), "{out}");
        for y in out
            .split(" y=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            let y: f64 = y.parse().unwrap();
            assert!((0.0..=220.0).contains(&y), "{y}");
        }
    }

    #[test]
    fn a_sparkline_lists_every_number() {
        let out = sparkline("calls", "#000", &[0, 5, 1]).into_string();
        assert!(
            out.contains("aria-label=\"calls per period, oldest first: 0, 5, 1\""),
            "{out}"
        );
        assert_eq!(out.matches("<rect").count(), 2, "{out}");
        let empty = sparkline("calls", "#000", &[]).into_string();
        assert_eq!(empty.matches("<rect").count(), 0, "{empty}");
    }

    #[test]
    fn a_burn_down_steps_down_and_reads_in_money() {
        let started = Utc::now() - Duration::hours(1);
        let b = BurnDown {
            mandate: MandateId::generate(),
            intent: "pay <rent>".into(),
            agent: AgentId::generate(),
            started,
            expires: started + Duration::hours(2),
            max_calls: Some(4),
            max_amount: Some(50_000),
            currency: Some("USD".into()),
            points: vec![
                Used {
                    at: started,
                    calls: 0,
                    amount: 0,
                },
                Used {
                    at: started + Duration::minutes(30),
                    calls: 2,
                    amount: 25_000,
                },
            ],
            truncated: false,
        };
        let out = burn_down(&b, started + Duration::hours(1)).into_string();
        assert!(
            out.contains(
                "Budget of “pay &lt;rent&gt;”: 2 of 4 calls left, 250.00 USD of 500.00 USD left"
            ),
            "{out}"
        );
        assert_eq!(out.matches("<polyline").count(), 2, "{out}");
        // Full at the start (y = 18), half after the spend (y = 84), step shaped.
        assert!(
            out.contains("points=\"44.0,18.0 135.5,18.0 135.5,84.0\""),
            "{out}"
        );
        assert!(out.contains("stroke-dasharray=\"6 3\""), "{out}");
        // A long history is thinned, its first and last points kept.
        let mut long = b.clone();
        long.points = (0..2_000u64)
            .map(|i| Used {
                at: started + Duration::seconds(i64::try_from(i).unwrap()),
                calls: i,
                amount: i,
            })
            .collect();
        long.max_calls = Some(2_000);
        long.max_amount = None;
        let out = burn_down(&long, started + Duration::hours(1)).into_string();
        let points = out
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let n = points.split(' ').count();
        assert!(n <= 2 * (MOST_POINTS + 1), "{n}");
        assert!(points.starts_with("44.0,18.0"), "{points}");
        assert!(points.ends_with(",149.9"), "the last use drawn: {points}");
        let calls_only = BurnDown {
            max_amount: None,
            ..b
        };
        let out = burn_down(&calls_only, started).into_string();
        assert_eq!(out.matches("<polyline").count(), 1, "{out}");
    }
}
