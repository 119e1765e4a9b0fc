//! Names instead of ids wherever a person reads: the agents and people behind actor
//! labels (`agent:agt_…`, `human:hum_…`) and agent ids, looked up once per page; the id
//! stays on hover (`title`). A label with no name (an admin token, a system task, an
//! agent deleted since) is shown as it is.

use std::collections::HashMap;

use mandate_types::{AgentId, TenantId};
use maud::{Markup, html};

use crate::Console;

/// The names found for a page's labels.
#[derive(Debug, Default)]
pub(crate) struct Names(pub(crate) HashMap<String, String>);

impl Names {
    /// Looks up the agents and people among `labels`.
    pub(crate) async fn of_labels(
        console: &Console,
        tenant: TenantId,
        labels: &[&String],
    ) -> Names {
        let mut names = HashMap::new();
        let mut missing = std::collections::HashSet::new();
        for &label in labels {
            if names.contains_key(label) || missing.contains(label) {
                continue;
            }
            let name = match label.split_once(':') {
                Some(("agent", id)) => match id.parse() {
                    Ok(id) => console.service.agent_name(tenant, id).await,
                    Err(_) => None,
                },
                Some(("human", id)) => match id.parse() {
                    Ok(id) => console.service.human_name(tenant, id).await,
                    Err(_) => None,
                },
                _ => None,
            };
            match name {
                Some(name) => {
                    names.insert(label.clone(), name);
                }
                None => {
                    missing.insert(label.clone());
                }
            }
        }
        Names(names)
    }

    /// Looks up agents by id.
    pub(crate) async fn of_agents(
        console: &Console,
        tenant: TenantId,
        ids: impl IntoIterator<Item = AgentId>,
    ) -> Names {
        let labels: Vec<String> = ids.into_iter().map(|id| format!("agent:{id}")).collect();
        let labels: Vec<&String> = labels.iter().collect();
        Names::of_labels(console, tenant, &labels).await
    }

    /// One label: its name with the label on hover, or the label.
    pub(crate) fn label(&self, label: &str) -> Markup {
        html! {
            @match self.0.get(label) {
                Some(name) => span title=(label) { (name) },
                None => (label),
            }
        }
    }

    /// An agent: its name with the id on hover, or the id.
    pub(crate) fn agent(&self, id: AgentId) -> Markup {
        html! {
            @match self.0.get(&format!("agent:{id}")) {
                Some(name) => span title=(id) { (name) },
                None => code { (id) },
            }
        }
    }

    /// An actor chain, outermost first.
    pub(crate) fn actors(&self, labels: &[String]) -> Markup {
        html! {
            @for (i, label) in labels.iter().enumerate() {
                @if i > 0 { " ← " }
                (self.label(label))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_show_with_their_label_on_hover_and_unknown_labels_as_they_are() {
        let agent = AgentId::generate();
        let names = Names(HashMap::from([
            (format!("agent:{agent}"), "Travel <bot>".to_owned()),
            ("human:hum_x".to_owned(), "Alice".to_owned()),
        ]));
        let chain = names
            .actors(&[
                "human:hum_x".to_owned(),
                format!("agent:{agent}"),
                "admin:tok_1".to_owned(),
            ])
            .into_string();
        assert_eq!(
            chain,
            format!(
                "<span title=\"human:hum_x\">Alice</span> ← <span title=\"agent:{agent}\">Travel &lt;bot&gt;</span> ← admin:tok_1"
            )
        );
        assert_eq!(
            names.agent(agent).into_string(),
            format!("<span title=\"{agent}\">Travel &lt;bot&gt;</span>")
        );
        let other = AgentId::generate();
        assert_eq!(
            names.agent(other).into_string(),
            format!("<code>{other}</code>")
        );
    }
}
