//! Configuration errors: `file:line:column: key.path: what is wrong`.

use std::fmt;
use std::ops::Range;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no position (e.g. the file cannot be read).
    pub line: usize,
    pub column: usize,
    /// Dotted key path such as `deployments[1].api_keys[0]`; empty when unknown.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the file: {err}"),
        }
    }

    /// An error at a byte span of `text`.
    pub fn at(
        path: &Path,
        text: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError {
            file: path.display().to_string(),
            line,
            column,
            path: key.into(),
            message: message.into(),
        }
    }
}

/// Fields whose values are secrets, or may carry one (a URL's userinfo, a header's token).
const SECRET_FIELDS: &[&str] = &[
    "api_keys",
    "key",
    "admin_key",
    "signing_secret",
    "secret",
    "redis_url",
    "database_url",
    "url",
    "base_url",
    "endpoint",
    "webhook_url",
    "headers",
    "azure_ad_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

/// Whether a dotted key path (`deployments[0].api_keys[1]`) names a secret-bearing field or
/// something inside one.
pub(super) fn is_secret_path(path: &str) -> bool {
    path.split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment))
        .any(|field| SECRET_FIELDS.contains(&field))
}

/// A parser's message without the literal values it quotes (`invalid type: string "sk-…"` →
/// `invalid type: string (value hidden)`): for a secret-bearing field the kind of mistake is
/// said, the value never.
pub(super) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let Some(close) = rest[open + 1..].find(quote) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str("(value hidden)");
        rest = &rest[open + 1 + close + 1..];
    }
    out.push_str(rest);
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::{is_secret_path, without_values};

    #[test]
    fn secret_paths_are_recognised_at_any_depth() {
        assert!(is_secret_path("deployments[0].api_keys[1]"));
        assert!(is_secret_path("auth.keys[2].key"));
        assert!(is_secret_path("telemetry.otlp.headers.authorization"));
        assert!(is_secret_path("limits.redis_url"));
        assert!(!is_secret_path("deployments[0].model"));
        assert!(!is_secret_path("routing.strategy"));
    }

    #[test]
    fn quoted_values_are_hidden() {
        assert_eq!(
            without_values(r#"invalid type: string "sk-live-123", expected a sequence"#),
            "invalid type: string (value hidden), expected a sequence"
        );
        assert_eq!(
            without_values("invalid type: integer `5`, expected a string"),
            "invalid type: integer (value hidden), expected a string"
        );
        assert_eq!(
            without_values(r#"unbalanced "quote"#),
            r#"unbalanced "quote"#
        );
    }
}
