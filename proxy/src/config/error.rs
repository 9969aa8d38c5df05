//! Configuration errors, and how each one is traced back to the place it was written.
//!
//! Errors are found in two stages: serde reports syntax, type and unknown-field errors with a
//! byte span, and `validate.rs` reports semantic errors as a [`Problem`] with a field path.
//! A [`Locator`] holds the file text parsed a second time as a `toml_edit::ImDocument`, whose
//! spans map in both directions: a span to the dotted path of the innermost key or value that
//! contains it, and a path to the span of the value written there. Values set by command-line
//! flags are recorded in the locator too, so an error in one names the flag instead of a line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml_edit::{ImDocument, Item, Table, Value};

/// A configuration that could not be loaded. `Display` gives the one-line message to print.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: `ringwall.toml: cannot read: <io error>`.
    #[error("{}: cannot read: {error}", file.display())]
    Read {
        file: PathBuf,
        error: Arc<std::io::Error>,
    },
    /// A problem in the file (or, with `file: None`, in text given to
    /// [`super::Config::from_toml_str`] without a path):
    /// `ringwall.toml:14:12: route[1].upstream: unknown upstream group "api"`.
    /// `location` is absent when the problem is about something the file leaves out;
    /// `field` is absent for TOML syntax errors.
    #[error("{}", render_invalid(file.as_deref(), *location, field.as_deref(), message))]
    Invalid {
        file: Option<PathBuf>,
        location: Option<Location>,
        field: Option<String>,
        message: String,
    },
    /// A problem in a value given by a command-line flag: `--workers: must be at least 1`.
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// Neither a file nor `--upstream` was given, so there is nothing to proxy to.
    #[error("nothing to proxy to: pass --upstream <ADDR>, --config <FILE> or --demo")]
    NoSource,
}

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

fn render_invalid(
    file: Option<&Path>,
    location: Option<Location>,
    field: Option<&str>,
    message: &str,
) -> String {
    use fmt::Write as _;
    let mut out = match file {
        Some(file) => file.display().to_string(),
        None => "<config>".to_owned(),
    };
    if let Some(Location { line, column }) = location {
        let _ = write!(out, ":{line}:{column}");
    }
    if let Some(field) = field {
        let _ = write!(out, ": {field}");
    }
    let _ = write!(out, ": {message}");
    out
}

/// One step of a field path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted path to a field, displayed as `route[1].headers.x-api-version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    pub fn key(&self, key: &str) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        FieldPath(segments)
    }

    pub fn index(&self, index: usize) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

/// Shorthand for a path of keys only: `path(&["engine", "workers"])`.
pub(crate) fn path(keys: &[&str]) -> FieldPath {
    FieldPath(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect())
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A semantic error found by `validate()`: what is wrong, and where.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub path: FieldPath,
    pub message: String,
}

impl Problem {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Problem {
        Problem {
            path,
            message: message.into(),
        }
    }
}

/// Turns serde errors and [`Problem`]s into [`ConfigError`]s that name a file, line and field,
/// or the flag that set the value.
pub(crate) struct Locator<'a> {
    file: Option<&'a Path>,
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
    flags: Vec<(FieldPath, &'static str)>,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file` (if any).
    pub fn new(file: Option<&'a Path>, text: &'a str) -> Locator<'a> {
        Locator {
            file,
            text,
            doc: ImDocument::parse(text).ok(),
            flags: Vec::new(),
        }
    }

    /// Records that the value at `path` (and everything below it) was set by `flag`.
    pub fn set_by_flag(&mut self, path: FieldPath, flag: &'static str) {
        self.flags.push((path, flag));
    }

    /// Converts a serde/TOML error, naming the field whose key or value holds its span.
    pub fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span();
        let field = match (&self.doc, &span) {
            (Some(doc), Some(span)) => path_at(doc.as_table(), span).filter(|p| !p.0.is_empty()),
            _ => None,
        };
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            location: span.map(|s| self.location(s.start)),
            field: field.map(|p| p.to_string()),
            message: one_line(error.message()),
        }
    }

    /// Converts a validation problem, naming the flag that set the value, or else the line of
    /// the value in the file (or of its nearest written ancestor).
    pub fn problem(&self, problem: Problem) -> ConfigError {
        let flag = self
            .flags
            .iter()
            .filter(|(prefix, _)| problem.path.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.0.len());
        if let Some((_, flag)) = flag {
            return ConfigError::Flag {
                flag,
                message: problem.message,
            };
        }
        let span = self
            .doc
            .as_ref()
            .and_then(|doc| span_of(doc.as_item(), &problem.path));
        ConfigError::Invalid {
            file: self.file.map(Path::to_path_buf),
            location: span.map(|s| self.location(s.start)),
            field: Some(problem.path.to_string()),
            message: problem.message,
        }
    }

    fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// TOML syntax messages span lines ("invalid table header\nexpected `.`, `]`"); errors are
/// printed on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The span of the deepest item along `path` that the document actually contains.
fn span_of(root: &Item, path: &FieldPath) -> Option<Range<usize>> {
    let mut item = root;
    let mut best = None;
    for segment in &path.0 {
        let next = match segment {
            Segment::Key(key) => item.get(key.as_str()),
            Segment::Index(index) => item.get(*index),
        };
        let Some(next) = next else { break };
        item = next;
        best = item.span().or(best);
    }
    best
}

/// The path of the smallest key or value whose span contains `target`.
fn path_at(root: &Table, target: &Range<usize>) -> Option<FieldPath> {
    let mut spans = Vec::new();
    walk_table(root, &mut FieldPath::default(), &mut spans);
    spans
        .into_iter()
        .filter(|(_, span)| {
            span.start <= target.start
                && (target.end <= span.end || (target.is_empty() && target.start < span.end))
        })
        .min_by_key(|(_, span)| span.len())
        .map(|(path, _)| path)
}

type SpanList = Vec<(FieldPath, Range<usize>)>;

fn walk_table(table: &Table, here: &mut FieldPath, out: &mut SpanList) {
    if let Some(span) = table.span() {
        out.push((here.clone(), span));
    }
    for (key, item) in table {
        here.0.push(Segment::Key(key.to_owned()));
        if let Some(span) = table.key(key).and_then(toml_edit::Key::span) {
            out.push((here.clone(), span));
        }
        walk_item(item, here, out);
        here.0.pop();
    }
}

fn walk_item(item: &Item, here: &mut FieldPath, out: &mut SpanList) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, here, out),
        Item::Table(table) => walk_table(table, here, out),
        Item::ArrayOfTables(array) => {
            for (index, table) in array.iter().enumerate() {
                here.0.push(Segment::Index(index));
                walk_table(table, here, out);
                here.0.pop();
            }
        }
    }
}

fn walk_value(value: &Value, here: &mut FieldPath, out: &mut SpanList) {
    if let Some(span) = value.span() {
        out.push((here.clone(), span));
    }
    match value {
        Value::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                here.0.push(Segment::Index(index));
                walk_value(element, here, out);
                here.0.pop();
            }
        }
        Value::InlineTable(table) => {
            for (key, element) in table {
                here.0.push(Segment::Key(key.to_owned()));
                if let Some(span) = table.key(key).and_then(toml_edit::Key::span) {
                    out.push((here.clone(), span));
                }
                walk_value(element, here, out);
                here.0.pop();
            }
        }
        _ => {}
    }
}
