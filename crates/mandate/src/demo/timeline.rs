//! The demo's output: a numbered timeline of who did what and what came of it, and the
//! one place a step that did not go as expected stops the script.

use std::fmt::Display;
use std::time::Instant;

/// Where a step's outcome starts: under its description.
const INDENT: &str = "                            ";

/// Prints the timeline on stdout. Nothing secret is ever passed in: callers describe
/// calls and outcomes, never tokens.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    step: usize,
    quiet: bool,
}

/// Who acts in a step.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    /// `mandate demo` itself, setting the stage.
    Demo,
    /// The operator, with the bootstrap admin token.
    Operator,
    /// Alice, the human who grants the mandates.
    Alice,
    /// The script, acting in Alice's place where a real Alice would click.
    ScriptAsAlice,
    /// The main agent.
    Assistant,
    /// The agent the assistant delegates to.
    SubAgent,
    /// The demo bank, observed directly (its state is in this process).
    Bank,
}

impl Actor {
    fn label(self) -> &'static str {
        match self {
            Actor::Demo => "demo",
            Actor::Operator => "operator",
            Actor::Alice => "alice",
            Actor::ScriptAsAlice => "script→alice",
            Actor::Assistant => "assistant",
            Actor::SubAgent => "sub-agent",
            Actor::Bank => "bank",
        }
    }
}

/// A step did not behave as the script expects.
#[derive(Debug, thiserror::Error)]
#[error("step {step} ({what}): expected {expected}; got {got}")]
pub struct Deviation {
    pub step: usize,
    pub what: String,
    pub expected: String,
    pub got: String,
}

impl Timeline {
    pub fn new(quiet: bool) -> Self {
        Self {
            start: Instant::now(),
            step: 0,
            quiet,
        }
    }

    /// A section title: what the next steps show.
    pub fn section(&self, title: &str) {
        if !self.quiet {
            println!("\n── {title}");
        }
    }

    /// A line of plain text (no step number).
    pub fn text(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    /// A numbered step: `actor` did `what`, and `outcome` came of it.
    pub fn step(&mut self, actor: Actor, what: impl Display, outcome: impl Display) {
        self.step += 1;
        if self.quiet {
            return;
        }
        let at = format!("+{:.2}s", self.start.elapsed().as_secs_f64());
        println!("{:>3}  {at:>7}  {:<13} {what}", self.step, actor.label());
        println!("{INDENT}→ {outcome}");
    }

    /// An indented note under the last step.
    pub fn note(&self, text: impl Display) {
        if !self.quiet {
            println!("{INDENT}  {text}");
        }
    }

    /// `Ok` when `holds`; otherwise the deviation, numbered as the step about to be
    /// printed.
    pub fn check(
        &self,
        holds: bool,
        what: &str,
        expected: impl Display,
        got: impl Display,
    ) -> Result<(), Deviation> {
        if holds {
            return Ok(());
        }
        Err(Deviation {
            step: self.step + 1,
            what: what.to_owned(),
            expected: expected.to_string(),
            got: got.to_string(),
        })
    }
}
