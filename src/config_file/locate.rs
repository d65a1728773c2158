//! Where in the file an error is: the line of a TOML span and the key it belongs to,
//! or the line that set a key whose value was refused later.
use std::path::Path;

use crate::config::ConfigError;

pub(super) fn file_error(
    path: &Path,
    line: Option<usize>,
    key: Option<&str>,
    why: impl ToString,
) -> ConfigError {
    ConfigError::File {
        path: path.display().to_string(),
        line,
        key: key.map(str::to_owned),
        why: why.to_string(),
    }
}

/// The 1-based line holding octet `at` of `text`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()
        .iter()
        .take(at)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key a span at `at` belongs to: that of the nearest `key = ` line at or above it
/// (a value may sit on a later line of a multi-line array). For an unknown key the span
/// is the key itself.
pub(super) fn key_before(text: &str, at: usize) -> Option<String> {
    let head = text.get(..at.min(text.len()))?;
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    let rest = text.get(line_start..)?.lines().next().unwrap_or("");
    std::iter::once(rest)
        .chain(head.get(..line_start)?.lines().rev())
        .find_map(assigned_key)
        .map(str::to_owned)
}

/// `cache-size` for a line `cache-size = 1` (bare or quoted key), else `None`.
pub(super) fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

/// The line where `key` is set in `text`.
pub(super) fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| assigned_key(l) == Some(key))
        .map(|i| i + 1)
}
