//! The delegation tree of a mandate, drawn server-side as inline SVG.
//!
//! The tree comes from the mandate's token events: each `token.issued`,
//! `token.exchanged` or `token.renewed` event names its actor chain (the receiving
//! agent first, then whoever it received from). A chain, read from its root, is a path
//! in the tree; a renewal repeats its parent's chain and so lands on the same node.
//! Layout ([`layout`]) is a pure function so that it can be tested on its own.

use std::collections::BTreeMap;

use maud::{Markup, html};

/// One agent as it holds tokens at one place in the delegation chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The agent id, as the audit event names it (without the `agent:` prefix).
    pub agent: String,
    /// What the picture shows: the agent's name where known, its id otherwise.
    pub label: String,
    /// INVARIANT: a parent's index is lower than its children's.
    pub parent: Option<usize>,
    /// Tokens issued to this node (renewals included).
    pub tokens: u32,
    /// The tools this hop's tokens carried (their `scope`, united), when known.
    pub scope: Vec<String>,
    /// Whether this hop still holds a live token.
    pub state: NodeState,
}

/// Whether a hop of the tree can still act.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// At least one of its tokens is neither revoked nor expired (or none is known).
    #[default]
    Live,
    /// Every token it held was revoked (or its mandate ended by someone's hand).
    Revoked,
    /// Its tokens expired (none was revoked while any was still live).
    Expired,
}

impl NodeState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NodeState::Live => "live",
            NodeState::Revoked => "revoked",
            NodeState::Expired => "expired",
        }
    }
}

/// Nodes in the order first seen; parents always before their children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Builds the tree from actor chains, each receiver first (as audit events hold
    /// them). Entries that are not agents (`admin`, `human:…`) are skipped.
    pub fn from_chains<'a, I, C>(chains: I) -> Tree
    where
        I: IntoIterator<Item = C>,
        C: IntoIterator<Item = &'a str>,
        C::IntoIter: DoubleEndedIterator,
    {
        let mut tree = Tree::default();
        let mut at: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        for chain in chains {
            let mut path: Vec<String> = Vec::new();
            let mut last = None;
            for actor in chain.into_iter().rev() {
                let Some(agent) = actor.strip_prefix("agent:") else {
                    continue;
                };
                path.push(agent.to_owned());
                let index = match at.get(&path) {
                    Some(i) => *i,
                    None => {
                        tree.nodes.push(Node {
                            agent: agent.to_owned(),
                            label: agent.to_owned(),
                            parent: last,
                            tokens: 0,
                            scope: Vec::new(),
                            state: NodeState::Live,
                        });
                        let i = tree.nodes.len() - 1;
                        at.insert(path.clone(), i);
                        i
                    }
                };
                last = Some(index);
            }
            if let Some(node) = last.and_then(|i| tree.nodes.get_mut(i)) {
                node.tokens = node.tokens.saturating_add(1);
            }
        }
        tree
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node a chain (receiver first, as audit events hold it) lands on.
    pub fn find<'a>(
        &self,
        chain: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    ) -> Option<usize> {
        let mut at: Option<usize> = None;
        for actor in chain.into_iter().rev() {
            let Some(agent) = actor.strip_prefix("agent:") else {
                continue;
            };
            at = Some(
                self.nodes
                    .iter()
                    .position(|n| n.parent == at && n.agent == agent)?,
            );
        }
        at
    }

    /// Every parent → child edge, by index.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.parent.map(|p| (p, i)))
    }
}

/// The width of one leaf's column and the height of one level, in SVG units.
pub(crate) const COLUMN: f64 = 180.0;
pub(crate) const LEVEL: f64 = 80.0;
const BOX_W: f64 = 160.0;
const BOX_H: f64 = 50.0;
/// Longer labels are shortened in the picture (the full text is in the tooltip).
const MAX_LABEL: usize = 22;

/// Where each node's centre is, and the picture's size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Indexed like [`Tree::nodes`].
    pub centres: Vec<(f64, f64)>,
    pub width: f64,
    pub height: f64,
}

/// A tidy layout: each leaf gets its own column, left to right in the order seen; a
/// parent sits centred over its first and last child; each level is one row.
pub(crate) fn layout(tree: &Tree) -> Layout {
    let n = tree.nodes.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    let mut depth = vec![0usize; n];
    for (i, node) in tree.nodes.iter().enumerate() {
        match node.parent.filter(|p| *p < i) {
            Some(p) => {
                if let Some(c) = children.get_mut(p) {
                    c.push(i);
                }
                let d = depth.get(p).map_or(0, |d| d + 1);
                if let Some(slot) = depth.get_mut(i) {
                    *slot = d;
                }
            }
            None => roots.push(i),
        }
    }
    let mut x = vec![0.0f64; n];
    let mut next_column = 0usize;
    // Post-order without recursion: (node, whether its children are placed).
    let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|r| (*r, false)).collect();
    while let Some((i, done)) = stack.pop() {
        let kids = children.get(i).map(Vec::as_slice).unwrap_or_default();
        if kids.is_empty() {
            if let Some(slot) = x.get_mut(i) {
                *slot = (next_column as f64 + 0.5) * COLUMN;
            }
            next_column += 1;
        } else if done {
            let first = kids.first().and_then(|k| x.get(*k)).copied().unwrap_or(0.0);
            let last = kids.last().and_then(|k| x.get(*k)).copied().unwrap_or(0.0);
            if let Some(slot) = x.get_mut(i) {
                *slot = (first + last) / 2.0;
            }
        } else {
            stack.push((i, true));
            stack.extend(kids.iter().rev().map(|k| (*k, false)));
        }
    }
    let levels = depth.iter().max().map_or(0, |d| d + 1);
    let centres = x
        .iter()
        .zip(&depth)
        .map(|(x, d)| (*x, (*d as f64 + 0.5) * LEVEL))
        .collect();
    Layout {
        centres,
        width: next_column.max(1) as f64 * COLUMN,
        height: levels.max(1) as f64 * LEVEL,
    }
}

/// A hop as the description and the tooltip read it: name, state when not live, scope.
fn described(node: &Node) -> String {
    let mut text = node.label.clone();
    if node.state != NodeState::Live {
        text.push_str(&format!(" ({})", node.state.as_str()));
    }
    if !node.scope.is_empty() {
        text.push_str(&format!(" [{}]", node.scope.join(", ")));
    }
    text
}

fn shortened(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        label.to_owned()
    } else {
        let mut s: String = label.chars().take(MAX_LABEL - 1).collect();
        s.push('…');
        s
    }
}

/// The tree as inline SVG, described for screen readers. All text goes through maud,
/// which escapes it.
pub(crate) fn svg(tree: &Tree, title: &str) -> Markup {
    let placed = layout(tree);
    let at = |i: usize| placed.centres.get(i).copied().unwrap_or((0.0, 0.0));
    let description = tree
        .edges()
        .filter_map(|(p, c)| {
            Some(format!(
                "{} delegated to {}",
                tree.nodes.get(p)?.label,
                described(tree.nodes.get(c)?)
            ))
        })
        .collect::<Vec<_>>();
    let description = if description.is_empty() {
        tree.nodes
            .iter()
            .map(|n| format!("{} holds tokens", described(n)))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        description.join("; ")
    };
    let label = format!("{title}: {description}");
    html! {
        svg class="tree" role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg"
            width=(placed.width) height=(placed.height)
            viewBox={ "0 0 " (placed.width) " " (placed.height) } {
            title { (title) }
            desc { (description) }
            @for (p, c) in tree.edges() {
                @let ((x1, y1), (x2, y2)) = (at(p), at(c));
                line x1=(x1) y1=(y1 + BOX_H / 2.0) x2=(x2) y2=(y2 - BOX_H / 2.0)
                    stroke="#4a4a4a" stroke-width="1.5" {}
            }
            @for (i, node) in tree.nodes.iter().enumerate() {
                @let (x, y) = at(i);
                @let live = node.state == NodeState::Live;
                g class={ "hop " (node.state.as_str()) } {
                    title { (described(node)) " — " (node.tokens) " token(s)" }
                    @if live {
                        rect x=(x - BOX_W / 2.0) y=(y - BOX_H / 2.0) width=(BOX_W) height=(BOX_H)
                            rx="4" fill="#ffffff" stroke="#0b4f9c" stroke-width="1.5" {}
                    } @else {
                        rect x=(x - BOX_W / 2.0) y=(y - BOX_H / 2.0) width=(BOX_W) height=(BOX_H)
                            rx="4" fill="#eeeeee" stroke="#8a1c1c" stroke-width="1.5"
                            stroke-dasharray="5 3" {}
                    }
                    text x=(x) y=(y - 4.0) text-anchor="middle" font-size="13" fill="#1a1a1a" {
                        (shortened(&node.label))
                        @if !live { " (" (node.state.as_str()) ")" }
                    }
                    text x=(x) y=(y + 14.0) text-anchor="middle" font-size="11" fill="#4a4a4a" {
                        (shortened(&node.scope.join(", ")))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn chains(list: &[&[&str]]) -> Tree {
        Tree::from_chains(list.iter().map(|c| c.iter().copied()))
    }

    #[test]
    fn chains_make_paths_and_renewals_land_on_their_node() {
        let t = chains(&[
            &["agent:a"],
            &["agent:b", "agent:a"],
            &["agent:c", "agent:b", "agent:a"],
            &["agent:b", "agent:a"],
            &["agent:d", "agent:a"],
        ]);
        let agents: Vec<_> = t.nodes.iter().map(|n| n.agent.as_str()).collect();
        assert_eq!(agents, ["a", "b", "c", "d"]);
        let parents: Vec<_> = t.nodes.iter().map(|n| n.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(1), Some(0)]);
        let tokens: Vec<_> = t.nodes.iter().map(|n| n.tokens).collect();
        assert_eq!(tokens, [1, 2, 1, 1]);
        assert_eq!(t.edges().collect::<Vec<_>>(), [(0, 1), (1, 2), (0, 3)]);
    }

    #[test]
    fn a_missing_root_event_still_draws_the_chain_and_non_agents_are_skipped() {
        let t = chains(&[&["agent:b", "agent:a"], &["admin"], &["human:hum_x"]]);
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.nodes[0].tokens, 0);
        assert_eq!(t.nodes[1].parent, Some(0));
        assert!(chains(&[]).is_empty());
    }

    #[test]
    fn layout_centres_parents_over_their_children() {
        // a ─┬─ b ─ c
        //    └─ d
        let t = chains(&[
            &["agent:a"],
            &["agent:b", "agent:a"],
            &["agent:c", "agent:b", "agent:a"],
            &["agent:d", "agent:a"],
        ]);
        let l = layout(&t);
        assert_eq!(
            l.centres,
            [(180.0, 40.0), (90.0, 120.0), (90.0, 200.0), (270.0, 120.0)]
        );
        assert_eq!((l.width, l.height), (360.0, 240.0));
        let single = layout(&chains(&[&["agent:a"]]));
        assert_eq!(single.centres, [(90.0, 40.0)]);
        assert_eq!((single.width, single.height), (180.0, 80.0));
        let empty = layout(&Tree::default());
        assert!(empty.centres.is_empty());
        assert_eq!((empty.width, empty.height), (180.0, 80.0));
    }

    #[test]
    fn two_roots_sit_side_by_side() {
        let t = chains(&[&["agent:a"], &["agent:z"]]);
        assert_eq!(layout(&t).centres, [(90.0, 40.0), (270.0, 40.0)]);
    }

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let mut t = chains(&[&["agent:a"], &["agent:b", "agent:a"]]);
        t.nodes[0].label = "</text><script>alert(1)</script>".into();
        t.nodes[1].label = "\"><svg onload=alert(2)>".into();
        let out = svg(&t, "Delegation <tree>").into_string();
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<svg onload"), "{out}");
        assert!(out.contains("&lt;/text&gt;&lt;script&gt;"), "{out}");
        assert!(out.contains("&quot;&gt;&lt;svg onload"), "{out}");
        assert!(
            out.contains("<title>Delegation &lt;tree&gt;</title>"),
            "{out}"
        );
        assert!(out.starts_with("<svg class=\"tree\" role=\"img\" aria-label=\""));
        assert_eq!(out.matches("<line ").count(), 1);
        assert_eq!(out.matches("<rect ").count(), 2);
    }

    #[test]
    fn chains_are_found_on_their_node() {
        let t = chains(&[&["agent:a"], &["agent:b", "agent:a"], &["agent:b"]]);
        assert_eq!(t.find(["agent:a"]), Some(0));
        assert_eq!(t.find(["agent:b", "agent:a"]), Some(1));
        assert_eq!(t.find(["agent:b"]), Some(2));
        assert_eq!(t.find(["agent:c", "agent:a"]), None);
        assert_eq!(t.find(["admin"]), None);
    }

    #[test]
    fn ended_hops_are_marked_and_each_hop_shows_its_scope() {
        let mut t = chains(&[
            &["agent:a"],
            &["agent:b", "agent:a"],
            &["agent:c", "agent:a"],
        ]);
        t.nodes[0].scope = vec!["bank.get_balance".into(), "bank.transfer".into()];
        t.nodes[1].scope = vec!["bank.get_balance".into()];
        t.nodes[1].state = NodeState::Revoked;
        t.nodes[2].state = NodeState::Expired;
        let out = svg(&t, "t").into_string();
        assert!(out.contains("bank.get_balance, bank.transfer"), "{out}");
        assert_eq!(out.matches("stroke-dasharray").count(), 2, "{out}");
        assert!(
            out.contains("b (revoked)") && out.contains("c (expired)"),
            "{out}"
        );
        assert!(
            out.contains("a delegated to b (revoked) [bank.get_balance]"),
            "{out}"
        );
        assert!(out.contains(r#"class="hop live""#), "{out}");
    }

    #[test]
    fn long_labels_are_shortened_in_the_picture_only() {
        let long = "x".repeat(40);
        let mut t = chains(&[&["agent:a"]]);
        t.nodes[0].label = long.clone();
        let out = svg(&t, "t").into_string();
        assert!(out.contains(&format!("{}…", "x".repeat(21))));
        assert!(out.contains(&long), "the tooltip keeps it whole");
    }
}
