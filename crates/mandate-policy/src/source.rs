//! Where a policy set comes from: named Cedar files, schema fragments and an entities
//! document, read from a directory or handed over through the API.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The largest single file a policy set may hold.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// The most files a policy set may hold.
pub const MAX_FILES: usize = 10_000;

/// One named text: a `.cedar` policy file, a `.cedarschema` fragment, or `entities.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// An operator policy set before it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// `.cedar` files, in name order.
    #[serde(default)]
    pub policies: Vec<SourceFile>,
    /// `.cedarschema` fragments that extend Mandate's schema with the operator's types.
    #[serde(default)]
    pub schemas: Vec<SourceFile>,
    /// Entities in Cedar's JSON format (`entities.json`), checked against the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<SourceFile>,
}

/// A problem found in a policy set, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The file (or `<builtin>` for Mandate's own schema and policies).
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The policy the problem is in, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub message: String,
}

impl Problem {
    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            line: None,
            column: None,
            policy: None,
            message: message.into(),
        }
    }

    /// Places the problem at a byte offset of `text`.
    pub(crate) fn at(mut self, text: &str, offset: usize) -> Self {
        let (line, column) = line_column(text, offset);
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(policy) = &self.policy {
            write!(f, ": policy `{policy}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Why a policy set was refused. It never replaces the running set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct PolicySetError {
    pub problems: Vec<Problem>,
}

impl PolicySetError {
    /// One problem with a file (or directory) as a whole.
    pub fn one_in(file: &str, message: impl Into<String>) -> Self {
        PolicySetError::one(Problem::in_file(file, message))
    }

    pub(crate) fn one(problem: Problem) -> Self {
        PolicySetError {
            problems: vec![problem],
        }
    }
}

impl fmt::Display for PolicySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for problem in &self.problems {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl PolicySource {
    /// Reads `*.cedar`, `*.cedarschema` and `entities.json` from `dir` (not recursive;
    /// other files are ignored). Names are sorted so that a set reads the same everywhere.
    pub fn from_dir(dir: &Path) -> Result<Self, PolicySetError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| PolicySetError::one(Problem::in_file(&shown, e.to_string())))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| PolicySetError::one(Problem::in_file(&shown, e.to_string())))?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        let mut source = PolicySource::default();
        for name in names {
            let kind = FileKind::of(&name);
            if kind == FileKind::Other {
                continue;
            }
            let text = read_limited(&dir.join(&name))
                .map_err(|message| PolicySetError::one(Problem::in_file(&name, message)))?;
            let file = SourceFile { name, text };
            match kind {
                FileKind::Policies => source.policies.push(file),
                FileKind::Schema => source.schemas.push(file),
                FileKind::Entities => source.entities = Some(file),
                FileKind::Other => {}
            }
        }
        source.check_limits()?;
        Ok(source)
    }

    /// Refuses sets too large to be a policy set rather than an attack on memory.
    pub fn check_limits(&self) -> Result<(), PolicySetError> {
        let count = self.policies.len() + self.schemas.len() + usize::from(self.entities.is_some());
        if count > MAX_FILES {
            return Err(PolicySetError::one(Problem::in_file(
                "<set>",
                format!("a policy set holds at most {MAX_FILES} files"),
            )));
        }
        let all = self
            .policies
            .iter()
            .chain(&self.schemas)
            .chain(self.entities.as_ref());
        for file in all {
            if file.text.len() > MAX_FILE_BYTES {
                return Err(PolicySetError::one(Problem::in_file(
                    &file.name,
                    format!("larger than {MAX_FILE_BYTES} bytes"),
                )));
            }
            if !mandate_types::is_plain_name(&file.name) {
                return Err(PolicySetError::one(Problem::in_file(
                    &file.name,
                    "file names are 1 to 128 characters of `a-z A-Z 0-9 . _ -`, not starting with `.`",
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Policies,
    Schema,
    Entities,
    Other,
}

impl FileKind {
    fn of(name: &str) -> FileKind {
        if name.starts_with('.') {
            FileKind::Other
        } else if name == "entities.json" {
            FileKind::Entities
        } else if name.ends_with(".cedarschema") {
            FileKind::Schema
        } else if name.ends_with(".cedar") {
            FileKind::Policies
        } else {
            FileKind::Other
        }
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 3));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 999), (3, 2));
    }

    #[test]
    fn a_directory_reads_in_name_order_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.cedar"), "// b").unwrap();
        std::fs::write(dir.path().join("a.cedar"), "// a").unwrap();
        std::fs::write(dir.path().join("types.cedarschema"), "").unwrap();
        std::fs::write(dir.path().join("entities.json"), "[]").unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        std::fs::write(dir.path().join(".hidden.cedar"), "x").unwrap();
        let source = PolicySource::from_dir(dir.path()).unwrap();
        let names: Vec<_> = source.policies.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.cedar", "b.cedar"]);
        assert_eq!(source.schemas.len(), 1);
        assert!(source.entities.is_some());
    }

    #[test]
    fn hostile_names_and_sizes_are_refused() {
        let mut source = PolicySource::default();
        source.policies.push(SourceFile {
            name: "../etc/passwd.cedar".into(),
            text: String::new(),
        });
        assert!(source.check_limits().is_err());
        source.policies[0].name = "ok.cedar".into();
        source.policies[0].text = "x".repeat(MAX_FILE_BYTES + 1);
        let err = source.check_limits().unwrap_err();
        assert!(err.to_string().contains("ok.cedar"), "{err}");
    }
}
