//! Config diagnostics: every error names the file, the line and column, the key, and where
//! possible gives a hint.

use std::fmt;
use std::ops::Range;

use serde::Serialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem has no place in a file (e.g. a missing file).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The key in dotted form, e.g. `target[1].behavior.scale_up.select`; empty for the file.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// One line for the error and one for its hint: control characters a value brought in
    /// (a `\r`, a tab, an escape sequence) are written escaped, so they can neither break
    /// the line nor move the terminal's cursor.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = Escaped(&self.file);
        if self.line > 0 {
            write!(f, "{file}:{}:{}: ", self.line, self.column)?;
        } else {
            write!(f, "{file}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", Escaped(&self.key))?;
        }
        write!(f, "{}", Escaped(&self.message))?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {}", Escaped(h))?;
        }
        Ok(())
    }
}

/// Text with its control characters and bidirectional overrides escaped (`\r`, `\t`,
/// `\u{1b}`, `\u{202e}`).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A path into the TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Builds a path from `"target"`, `0usize`, `"min"` ... pieces.
pub trait IntoSeg {
    fn into_seg(self) -> Seg;
}
impl IntoSeg for &str {
    fn into_seg(self) -> Seg {
        Seg::Key(self.to_string())
    }
}
impl IntoSeg for String {
    fn into_seg(self) -> Seg {
        Seg::Key(self)
    }
}
impl IntoSeg for usize {
    fn into_seg(self) -> Seg {
        Seg::Index(self)
    }
}

/// A path as a value, cheap to extend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }
    pub fn at(&self, seg: impl IntoSeg) -> Path {
        let mut v = self.0.clone();
        v.push(seg.into_seg());
        Path(v)
    }
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// Maps byte offsets of one source text to 1-based line and column.
pub struct SourceMap<'a> {
    pub file: &'a str,
    pub text: &'a str,
    /// Byte offsets where each line starts, found on first use (a file of thousands of
    /// targets asks for many positions).
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        SourceMap {
            file,
            text,
            line_starts: std::cell::OnceCell::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        // The last line start at or before the offset.
        let line = starts.partition_point(|&s| s <= offset);
        let line_start = starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    pub fn diag(
        &self,
        span: Option<Range<usize>>,
        key: String,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = match span {
            Some(s) => self.line_col(s.start),
            None => (1, 1),
        };
        Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            key,
            message,
            hint,
        }
    }
}

/// Where a key sits: the span of its value, or of the nearest parent that exists (for a
/// missing key, that is the table that lacks it).
pub fn span_of(root: &Spanned<DeTable<'_>>, path: &Path) -> Range<usize> {
    let mut span = root.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    for seg in &path.0 {
        let next: Option<&Spanned<DeValue<'_>>> = match (seg, table, cur) {
            (Seg::Key(k), Some(t), _) => t.get(k.as_str()),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        match next {
            Some(v) => {
                span = v.span();
                cur = Some(v.get_ref());
                table = match v.get_ref() {
                    DeValue::Table(t) => Some(t),
                    _ => None,
                };
            }
            None => break,
        }
    }
    span
}

/// The span of a key itself (not its value), searched for below `within`.
pub fn key_span_within(
    root: &Spanned<DeTable<'_>>,
    within: &Range<usize>,
    key: &str,
) -> Option<Range<usize>> {
    fn walk(t: &DeTable<'_>, within: &Range<usize>, key: &str) -> Option<Range<usize>> {
        for (k, v) in t.iter() {
            let ks = k.span();
            if k.get_ref() == key && ks.start >= within.start && ks.end <= within.end {
                return Some(ks);
            }
            if let Some(found) = walk_value(v.get_ref(), within, key) {
                return Some(found);
            }
        }
        None
    }
    fn walk_value(v: &DeValue<'_>, within: &Range<usize>, key: &str) -> Option<Range<usize>> {
        match v {
            DeValue::Table(t) => walk(t, within, key),
            DeValue::Array(a) => a.iter().find_map(|e| walk_value(e.get_ref(), within, key)),
            _ => None,
        }
    }
    walk(root.get_ref(), within, key)
}

fn contains(r: &Range<usize>, offset: usize) -> bool {
    r.start <= offset && offset < r.end.max(r.start + 1)
}

/// The path of the deepest key whose key or value contains `offset`. Tables of an array
/// of tables span only their `[[header]]`, so every branch is searched.
fn find_path(v: &DeValue<'_>, offset: usize) -> Option<Vec<Seg>> {
    match v {
        DeValue::Table(t) => {
            for (k, child) in t.iter() {
                if let Some(mut sub) = find_path(child.get_ref(), offset) {
                    sub.insert(0, Seg::Key(k.get_ref().to_string()));
                    return Some(sub);
                }
            }
            t.iter()
                .find(|(k, child)| contains(&k.span(), offset) || contains(&child.span(), offset))
                .map(|(k, _)| vec![Seg::Key(k.get_ref().to_string())])
        }
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                if let Some(mut sub) = find_path(e.get_ref(), offset) {
                    sub.insert(0, Seg::Index(i));
                    return Some(sub);
                }
                if contains(&e.span(), offset) {
                    return Some(vec![Seg::Index(i)]);
                }
            }
            None
        }
        _ => None,
    }
}

/// The path of the deepest key whose key or value contains `offset` (empty if none).
pub fn path_at(root: &Spanned<DeTable<'_>>, offset: usize) -> Path {
    let root_value = DeValue::Table(root.get_ref().clone());
    Path(find_path(&root_value, offset).unwrap_or_default())
}

/// Removes the deepest key of `v` whose key or value contains `offset` and returns its
/// path below `v`. Used to deserialize the rest of a table after a bad key was reported.
pub fn remove_at(v: &mut DeValue<'_>, offset: usize) -> Option<Path> {
    let path = find_path(v, offset)?;
    let (last, parents) = path.split_last()?;
    let mut cur = v;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), DeValue::Table(t)) => t
                .iter_mut()
                .find(|(key, _)| key.get_ref() == k)
                .map(|(_, c)| c.get_mut())?,
            (Seg::Index(i), DeValue::Array(a)) => a.get_mut(*i).map(|c| c.get_mut())?,
            _ => return None,
        };
    }
    match (last, cur) {
        (Seg::Key(k), DeValue::Table(t)) => {
            let old = std::mem::take(t);
            *t = old
                .into_iter()
                .filter(|(key, _)| key.get_ref() != k)
                .collect();
        }
        // A bad array element: drop the whole array's key instead (the caller retries).
        _ => return None,
    }
    Some(Path(path))
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(word, c),
                strsim::jaro_winkler(word, c),
                c,
            )
        })
        .filter(|(d, jw, c)| *d <= (c.len() / 3).max(1) || *jw >= 0.9)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

/// The names between backticks in a serde message such as
/// "unknown field `cooldwon`, expected one of `a`, `b`".
pub fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["cooldown", "min", "max", "scale_in_cooldown", "warmup"];
        assert_eq!(closest("cooldwon", keys), Some("cooldown"));
        assert_eq!(closest("mxa", keys), Some("max"));
        assert_eq!(closest("warmpu", keys), Some("warmup"));
        assert_eq!(closest("banana", keys), None);
    }

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        let text = "a = 1\nbé = 2\n  c = 3\n";
        let map = SourceMap::new("f.toml", text);
        assert_eq!(map.line_col(0), (1, 1));
        assert_eq!(map.line_col(text.find('c').unwrap()), (3, 3));
        let after_e = text.find(" = 2").unwrap();
        assert_eq!(map.line_col(after_e), (2, 3));
        // A newline belongs to its line; the end of the text starts a new one.
        assert_eq!(map.line_col(5), (1, 6));
        assert_eq!(map.line_col(text.len()), (4, 1));
        assert_eq!(map.line_col(text.len() + 10), (4, 1));
    }

    #[test]
    fn spans_and_paths_resolve_into_arrays_of_tables() {
        let text = "[global]\ndry_run = true\n\n[[target]]\nname = \"a\"\n\n[[target]]\nname = \"b\"\nmin = 3\n";
        let root = DeTable::parse(text).unwrap();
        let p = Path::root().at("target").at(1usize).at("min");
        let span = span_of(&root, &p);
        assert_eq!(&text[span.clone()], "3");
        assert_eq!(path_at(&root, span.start).dotted(), "target[1].min");
        // A missing key resolves to its table.
        let missing = span_of(&root, &Path::root().at("target").at(0usize).at("max"));
        // (tables of an array of tables span their `[[target]]` header)
        assert_eq!(&text[missing.clone()], "[[target]]");
        assert_eq!(SourceMap::new("f", text).line_col(missing.start), (4, 1));
        assert_eq!(p.dotted(), "target[1].min");
    }

    #[test]
    fn backticks_are_extracted() {
        assert_eq!(
            backticked("unknown field `cooldwon`, expected one of `cooldown`, `warmup`"),
            vec!["cooldwon", "cooldown", "warmup"]
        );
    }
}
