//! Turns a TOML error's byte span into a line, a column and the dotted key it is about.
//!
//! The key is recovered from the text with a small scan (the table header above, the key
//! left of `=`), good for the hand-written files this crate reads; when the scan cannot
//! tell, the key is left out rather than guessed.

use std::ops::Range;
use std::path::Path;

use crate::ConfigError;

/// Converts a `toml` error on `text` into [`ConfigError::Parse`].
pub(crate) fn parse_error(text: &str, err: &toml::de::Error, path: Option<&Path>) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let start = floor_char_boundary(text, span.start);
    let (line, column) = line_column(text, start);
    ConfigError::Parse {
        path: path.map(Path::to_path_buf),
        line,
        column,
        key: key_at(text, span),
        message: err.message().trim_end().to_owned(),
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Strips a trailing `# comment` (outside quotes) from a line.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') => return line.get(..i).unwrap_or(line),
            _ => {}
        }
    }
    line
}

/// `[a.b]` or `[[a.b]]` → `a.b`.
fn header_path(line: &str) -> Option<String> {
    let t = strip_comment(line).trim();
    let inner = t.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(normalize_key(inner.get(..end)?))
}

/// `a . "b"` → `a.b`.
fn normalize_key(k: &str) -> String {
    k.split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\''))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

fn is_header(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('[') && header_path(line).is_some()
}

/// The key of the segment `piece` (text from a `{` or line start up to a value): the
/// text after the last `,` and before the last `=`.
fn key_of_piece(piece: &str) -> Option<String> {
    let eq = piece.rfind('=')?;
    let lhs = piece.get(..eq)?;
    let lhs = lhs.rsplit(',').next().unwrap_or(lhs);
    let k = normalize_key(lhs);
    (!k.is_empty()).then_some(k)
}

pub(crate) fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let start = floor_char_boundary(text, span.start);
    let end = floor_char_boundary(text, span.end.max(start));
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text
        .get(start..)?
        .find('\n')
        .map_or(text.len(), |i| start + i);
    let line = text.get(line_start..line_end)?;
    let spanned = text.get(start..end).unwrap_or("").trim();

    // The table the line belongs to.
    let above = text.get(..line_start)?;
    let table = above
        .lines()
        .rev()
        .find_map(|l| if is_header(l) { header_path(l) } else { None });
    let join = |k: String| match &table {
        Some(t) if !t.is_empty() => format!("{t}.{k}"),
        _ => k,
    };

    if is_header(line) {
        // An unknown table `[server.pol]` points at `pol`: keep the header up to it.
        let upto = text.get(line_start..end.min(line_end))?;
        let k = normalize_key(upto.trim_start().trim_start_matches('['));
        return (!k.is_empty()).then_some(k);
    }

    let prefix = text.get(line_start..start)?;
    let rest = text.get(end.min(line_end)..line_end).unwrap_or("");
    let span_is_key = !spanned.is_empty()
        && !spanned.contains('=')
        && (rest.trim_start().starts_with('=') || rest.trim_start().starts_with('.'));

    let mut parts: Vec<String> = Vec::new();
    let mut pieces: Vec<&str> = prefix.split('{').collect();
    let last = pieces.pop().unwrap_or("");
    for p in pieces {
        parts.push(key_of_piece(p)?);
    }
    if span_is_key {
        let lhs = last.rsplit(',').next().unwrap_or(last);
        let k = normalize_key(&format!("{lhs}{spanned}"));
        parts.push(k);
    } else if let Some(k) = key_of_piece(last) {
        parts.push(k);
    } else if prefix.trim().is_empty() && !spanned.is_empty() && spanned.starts_with('[') {
        // A whole table (e.g. "missing field"): the span covers its header.
        return header_path(spanned);
    } else {
        // A continuation line of a multi-line array: the key is on a line above.
        let k = above.lines().rev().find_map(|l| {
            if is_header(l) {
                Some(None)
            } else {
                strip_comment(l)
                    .split_once('=')
                    .map(|(lhs, _)| Some(normalize_key(lhs)))
            }
        })??;
        parts.push(k);
    }
    Some(join(parts.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str, needle: &str) -> Option<String> {
        let start = text.find(needle).unwrap_or(0);
        key_at(text, start..start + needle.len())
    }

    #[test]
    fn finds_keys() {
        let t = "[server]\nname = \"x\"\n\n[server.pool]\ncidr = \"bad\" # c\nstatic = { alice = \"10.0.0.300\" }\n";
        assert_eq!(key(t, "\"bad\""), Some("server.pool.cidr".into()));
        assert_eq!(key(t, "cidr"), Some("server.pool.cidr".into()));
        assert_eq!(
            key(t, "\"10.0.0.300\""),
            Some("server.pool.static.alice".into())
        );
        assert_eq!(key(t, "pool"), Some("server.pool".into()));
        let t = "[transport]\ncarriers = [\n  \"udp\",\n  \"wg\",\n]\n";
        assert_eq!(key(t, "\"wg\""), Some("transport.carriers".into()));
        let t = "top = 1\n";
        assert_eq!(key(t, "1"), Some("top".into()));
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nx", 5), (2, 3));
    }
}
