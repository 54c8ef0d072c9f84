//! Finds where each `[[target]]` table of a config text starts and ends, so that a file of
//! thousands of targets can be parsed and validated one target at a time: the whole file's
//! TOML tree (every token and every spanned value at once) is several times the size of the
//! validated config, and it is the largest allocation a daemon makes, at start and at each
//! reload.
//!
//! The text is read by the TOML lexer (strings, comments and brackets are its tokens, so a
//! `[[target]]` inside a string or an array is never taken for a header), without building
//! anything. The split is used only for the layout it can prove the same as one parse: a
//! prefix without any `target` key (usually `[global]`), then `[[target]]` tables, each
//! with its own `[target.*]` and `[[target.*]]` sub-tables. Anything else (a table other
//! than a target's after the first `[[target]]`, a quoted or dotted `target` key) gives
//! `None`, and the caller parses the file whole, as does a text any of whose parts fails to
//! parse, so syntax errors are reported exactly as by one parse.

use std::ops::Range;

use toml_parser::lexer::TokenKind;
use toml_parser::Source;

/// A config text cut into its prefix and its `[[target]]` tables.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// Where the first `[[target]]` table starts: `text[..prefix_end]` is the rest.
    pub prefix_end: usize,
    /// Each target's text, from the start of its header's line to the start of the next
    /// target's (or the end of the text).
    pub targets: Vec<Range<usize>>,
}

/// What a table header names.
enum Header {
    /// `[[target]]`: a new target.
    Target,
    /// `[target.x]`, `[[target.x]]`: part of the target before it.
    TargetPart,
    /// Anything else.
    Other,
}

/// Splits `text` at its `[[target]]` headers, or `None` when the layout is not the simple
/// one (see the module documentation) or there is no `[[target]]` header.
pub fn split(text: &str) -> Option<Split> {
    let source = Source::new(text);
    let mut tokens = source.lex().peekable();
    // Brackets and braces open in a value (an array or an inline table may span lines).
    let mut depth = 0usize;
    // Only whitespace and comments since the last newline outside a value.
    let mut line_start = true;
    // Where the current line starts.
    let mut line_begin = 0usize;
    let mut starts: Vec<usize> = Vec::new();
    while let Some(t) = tokens.next() {
        match t.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline => {
                if depth == 0 {
                    line_start = true;
                }
                line_begin = t.span().end();
            }
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::LeftSquareBracket if depth == 0 && line_start => {
                // A table header: `[` or `[[`, then its key, to the end of the line.
                let double = tokens.peek().is_some_and(|n| {
                    n.kind() == TokenKind::LeftSquareBracket && n.span().start() == t.span().end()
                });
                if double {
                    tokens.next();
                }
                let mut key = Vec::new();
                while let Some(n) = tokens.peek() {
                    match n.kind() {
                        TokenKind::Newline | TokenKind::Eof => break,
                        TokenKind::Whitespace => {}
                        kind => key.push((kind, n.span())),
                    }
                    tokens.next();
                }
                let first_is_target = matches!(key.first(),
                    Some((TokenKind::Atom, s)) if &text[s.start()..s.end()] == "target");
                let dotted = matches!(key.get(1), Some((TokenKind::Dot, _)));
                let header = match (first_is_target, dotted, double) {
                    (true, false, true) => Header::Target,
                    (true, true, _) => Header::TargetPart,
                    _ => Header::Other,
                };
                match header {
                    Header::Target => starts.push(line_begin),
                    Header::TargetPart if !starts.is_empty() => {}
                    // A `[target.x]` before any target, a `[target]`, or another table
                    // after the targets: parse the file whole.
                    Header::TargetPart => return None,
                    Header::Other if !starts.is_empty() => return None,
                    Header::Other => {}
                }
                line_start = false;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                depth += 1;
                line_start = false;
            }
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.saturating_sub(1);
                line_start = false;
            }
            _ => line_start = false,
        }
    }
    let prefix_end = *starts.first()?;
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    let targets = starts.iter().zip(ends).map(|(&s, e)| s..e).collect();
    Some(Split {
        prefix_end,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Option<(String, Vec<String>)> {
        let s = split(text)?;
        Some((
            text[..s.prefix_end].to_string(),
            s.targets
                .iter()
                .map(|r| text[r.clone()].to_string())
                .collect(),
        ))
    }

    #[test]
    fn cuts_at_each_target_header_with_its_sub_tables() {
        let text = "[global]\npoll_interval = \"15s\"\n\n  [[target]] # one\nname = \"a\"\n[target.bounds]\nmin = 1\n[[target.policy]]\nkind = \"x\"\n[[target]]\nname = \"b\"\n";
        let (prefix, targets) = parts(text).unwrap();
        assert_eq!(prefix, "[global]\npoll_interval = \"15s\"\n\n");
        assert_eq!(
            targets,
            [
                "  [[target]] # one\nname = \"a\"\n[target.bounds]\nmin = 1\n[[target.policy]]\nkind = \"x\"\n",
                "[[target]]\nname = \"b\"\n"
            ]
        );
        // The parts put together are the text.
        assert_eq!(prefix + &targets.concat(), text);
    }

    #[test]
    fn headers_inside_strings_arrays_and_comments_are_not_headers() {
        let text = "[[target]]\nname = \"a\"\nnote = \"\"\"\n[[target]]\n\"\"\"\nlist = [\n[[1]],\n]\n# [[target]]\nx = '[[target]]'\n[[target]]\nname = \"b\"\n";
        let (_, targets) = parts(text).unwrap();
        assert_eq!(targets.len(), 2);
        assert!(targets[1].starts_with("[[target]]\nname = \"b\""));
    }

    #[test]
    fn layouts_a_split_would_change_are_left_whole() {
        // Another table after the targets, a target sub-table before any target, a plain
        // `[target]`, a quoted key: the caller parses these whole.
        for text in [
            "[[target]]\nname = \"a\"\n[global]\n",
            "[target.bounds]\nmin = 1\n[[target]]\n",
            "[target]\nname = \"a\"\n",
            "[[target]]\nname = \"a\"\n[\"target\".bounds]\n",
            "[[target]]\nname = \"a\"\n[[other]]\n",
        ] {
            assert_eq!(split(text), None, "{text}");
        }
        // No target at all: nothing to split.
        assert_eq!(split("[global]\n"), None);
        // `[[targets]]` is another table (reported as unknown by validation).
        assert_eq!(split("[[targets]]\n"), None);
    }

    #[test]
    fn crlf_and_a_byte_order_mark() {
        let text = "\u{feff}[global]\r\n[[target]]\r\nname = \"a\"\r\n[[target]]\r\n";
        let s = split(text).unwrap();
        assert_eq!(&text[..s.prefix_end], "\u{feff}[global]\r\n");
        assert_eq!(s.targets.len(), 2);
    }
}
