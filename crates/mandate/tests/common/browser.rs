//! A real browser for the console tests: Debian's chromium driven by playwright-core
//! (`tests/browser/driver.mjs`), one step at a time, so a test can interleave what a
//! person does in the console with what an agent does over MCP. Screenshots of every
//! step go to `target/tmp/screenshots/<name>/`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

pub struct Browser {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    pub shots: PathBuf,
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

impl Browser {
    /// A fresh browser (no cookies) on `base`, its screenshots under `name`.
    pub fn open(base: &str, name: &str) -> Browser {
        Browser::start(base, name, None)
    }

    /// [`Browser::open`] whose every step may take up to `step` (the driver's default is
    /// 15 s): for long flows that run beside the whole suite on a loaded machine.
    pub fn open_patient(base: &str, name: &str, step: std::time::Duration) -> Browser {
        Browser::start(base, name, Some(step))
    }

    fn start(base: &str, name: &str, step: Option<std::time::Duration>) -> Browser {
        let dir = browser_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run `npm ci --prefix crates/mandate/tests/browser` (.ci/run does)"
        );
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("screenshots")
            .join(name);
        let _ = std::fs::remove_dir_all(&shots);
        let mut command = Command::new("node");
        if let Some(step) = step {
            command.env("STEP_TIMEOUT_MS", step.as_millis().to_string());
        }
        let mut child = command
            .arg(dir.join("driver.mjs"))
            .arg(base)
            .arg(&shots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (apt nodejs; .ci/run installs it)");
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            input,
            output,
            shots,
        }
    }

    /// Runs one step; its answer, whether it worked or not.
    pub fn try_step(&mut self, command: Value) -> Value {
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{command}").unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the browser driver died at {command}");
        serde_json::from_str(&line).unwrap()
    }

    /// Runs one step; a failed step fails the test with what the page showed.
    #[track_caller]
    pub fn step(&mut self, command: Value) -> Value {
        let answer = self.try_step(command.clone());
        assert!(
            answer["ok"] == true,
            "browser step {command} failed: {}\nat {}\npage text:\n{}\nscreenshot: {}",
            answer["error"],
            answer["url"],
            answer["text"].as_str().unwrap_or_default(),
            answer["screenshot"]
        );
        answer["value"].clone()
    }

    #[track_caller]
    pub fn goto(&mut self, path: &str) {
        self.step(json!({"do": "goto", "path": path}));
    }

    #[track_caller]
    pub fn fill(&mut self, label: &str, value: &str) {
        self.step(json!({"do": "fill", "label": label, "value": value}));
    }

    #[track_caller]
    pub fn click(&mut self, role: &str, name: &str) {
        self.step(
            json!({"do": "click", "role": role, "name": name, "shot": format!("click {name}")}),
        );
    }

    /// Waits (up to the step timeout) until `text` is visible.
    #[track_caller]
    pub fn see(&mut self, text: &str) {
        self.step(json!({"do": "see", "text": text, "shot": format!("see {text}")}));
    }

    pub fn url(&mut self) -> String {
        self.step(json!({"do": "url"})).as_str().unwrap().to_owned()
    }

    pub fn text(&mut self) -> String {
        self.step(json!({"do": "text"}))
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// How many elements match a CSS selector on the page.
    pub fn count(&mut self, selector: &str) -> u64 {
        self.step(json!({"do": "count", "selector": selector}))
            .as_u64()
            .unwrap()
    }

    /// Presses one key, as a person at the keyboard would.
    #[track_caller]
    pub fn press(&mut self, key: &str) {
        self.step(json!({"do": "press", "key": key, "shot": format!("press {key}")}));
    }

    /// Presses Tab until the focus is on an element whose text is `text` (at most
    /// `most` times), and checks the focus is drawn; fails if it never gets there.
    #[track_caller]
    pub fn tab_to(&mut self, text: &str, most: usize) {
        let mut seen = Vec::new();
        for _ in 0..most {
            self.step(json!({"do": "press", "key": "Tab", "shot": false}));
            let focused = self.step(json!({"do": "focused", "shot": false}));
            let here = focused["text"].as_str().unwrap_or_default().to_owned();
            if here == text {
                assert_eq!(
                    focused["outline"], true,
                    "the focus on {text:?} is not drawn: {focused}"
                );
                self.step(json!({"do": "focused", "shot": format!("focus on {text}")}));
                return;
            }
            seen.push(here);
        }
        panic!("{most} Tabs never reached {text:?}; the focus went through {seen:?}");
    }

    /// Signs in through the form, from wherever the console sent us.
    #[track_caller]
    pub fn sign_in(&mut self, email: &str, password: &str) {
        self.goto("/ui/");
        self.see("Sign in");
        self.fill("Email", email);
        self.fill("Password", password);
        self.click("button", "Sign in");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut input) = self.input.take() {
            let _ = writeln!(input, "{}", json!({"do": "quit"}));
            // Closing our end lets the driver see the end of its input, whatever it does.
        }
        let _ = self.child.wait();
    }
}
