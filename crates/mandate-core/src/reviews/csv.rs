//! The review as CSV (RFC 4180): one row per finding, and one row with empty finding
//! columns for an agent without findings, so every reviewed agent appears. Every cell
//! is quoted when it holds a comma, quote or line break; a cell a spreadsheet would
//! read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is
//! prefixed with `'`, so it stays text.

use super::{AgentReview, Finding, ReviewReport};

/// The header row.
pub const CSV_COLUMNS: [&str; 16] = [
    "agent_id",
    "agent_name",
    "agent_status",
    "owner",
    "sponsors",
    "mandates_active",
    "tools_in_scope",
    "tools_used",
    "denied_attempts",
    "drift_alerts",
    "finding_id",
    "finding_kind",
    "finding_subject",
    "finding_detail",
    "mark_status",
    "mark_comment",
];

/// The report as CSV text, CRLF line ends, header first.
pub fn to_csv(report: &ReviewReport) -> String {
    let mut out = String::new();
    row(&mut out, CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    for agent in &report.agents {
        if agent.findings.is_empty() {
            row(&mut out, agent_cells(agent).chain(finding_cells(None)));
        }
        for finding in &agent.findings {
            row(
                &mut out,
                agent_cells(agent).chain(finding_cells(Some(finding))),
            );
        }
    }
    out
}

fn person(p: &super::PersonRef) -> String {
    match &p.name {
        Some(name) => format!("{name} ({})", p.id),
        None => p.id.to_string(),
    }
}

fn agent_cells(a: &AgentReview) -> impl Iterator<Item = String> {
    let active = a
        .mandates
        .iter()
        .filter(|m| m.status == mandate_domain::MandateStatus::Active)
        .count();
    let used: Vec<String> = a.tools_used.iter().map(|t| t.tool.clone()).collect();
    let status = match a.status {
        mandate_domain::AgentStatus::Active => "active",
        mandate_domain::AgentStatus::Disabled => "disabled",
    };
    [
        a.agent_id.to_string(),
        a.name.clone(),
        status.to_owned(),
        person(&a.owner),
        a.sponsors.iter().map(person).collect::<Vec<_>>().join("; "),
        active.to_string(),
        a.scope.join(" "),
        used.join(" "),
        a.denied.count.to_string(),
        a.drift_alerts.count.to_string(),
    ]
    .into_iter()
}

fn finding_cells(f: Option<&Finding>) -> impl Iterator<Item = String> {
    let cells = match f {
        None => Default::default(),
        Some(f) => [
            f.id.clone(),
            f.kind.as_str().to_owned(),
            f.subject.clone(),
            f.detail.clone(),
            f.mark
                .as_ref()
                .map(|m| m.status.as_str().to_owned())
                .unwrap_or_default(),
            f.mark
                .as_ref()
                .and_then(|m| m.comment.clone())
                .unwrap_or_default(),
        ],
    };
    cells.into_iter()
}

fn row(out: &mut String, cells: impl Iterator<Item = String>) {
    let mut first = true;
    for cell in cells {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&cell_text(&cell));
    }
    out.push_str("\r\n");
}

/// One cell: neutralised against formula injection, then quoted if it must be.
pub(crate) fn cell_text(raw: &str) -> String {
    let text = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::cell_text;

    #[test]
    fn cells_are_quoted_and_never_formulas() {
        assert_eq!(cell_text("plain"), "plain");
        assert_eq!(cell_text(""), "");
        assert_eq!(cell_text("a,b"), "\"a,b\"");
        assert_eq!(cell_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell_text("=1+2"), "'=1+2");
        assert_eq!(cell_text("+1"), "'+1");
        assert_eq!(cell_text("-1"), "'-1");
        assert_eq!(cell_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell_text("\tx"), "'\tx");
        assert_eq!(
            cell_text("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        // Not at the start: left alone.
        assert_eq!(cell_text("a=b"), "a=b");
    }
}
