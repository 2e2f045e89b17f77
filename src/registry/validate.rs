//! Field rules shared by the API, import and the CLI.

use super::FieldError;

/// Allowed entry statuses.
pub const STATUSES: &[&str] = &["active", "deprecated", "archived"];

pub const MAX_SLUG_CHARS: usize = 128;
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
pub const MAX_VERSION_CHARS: usize = 64;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
/// Largest serialised `metadata` or `sensitive` object.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;
/// Deepest nesting accepted inside `metadata` or `sensitive`; documents are
/// later hashed and analysed recursively, so depth is bounded on the way in.
pub const MAX_OBJECT_DEPTH: usize = 32;
/// Most words used from one search query.
pub const MAX_SEARCH_TERMS: usize = 16;

fn is_slug_segment(text: &str) -> bool {
    let mut bytes = text.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a lowercase slug: `[a-z0-9][a-z0-9._-]*`, at most 128 characters.
/// With `allow_scope`, an npm-style `@scope/` prefix is accepted too.
///
/// # Errors
/// A [`FieldError`] for `field` saying what is wrong.
pub fn validate_slug(field: &str, value: &str, allow_scope: bool) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > MAX_SLUG_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_SLUG_CHARS} characters"),
        ));
    }
    let body = match value.strip_prefix('@') {
        Some(scoped) if allow_scope => match scoped.split_once('/') {
            Some((scope, name)) if is_slug_segment(scope) => name,
            _ => return Err(FieldError::new(field, "a scoped name reads @scope/name")),
        },
        _ => value,
    };
    if !is_slug_segment(body) {
        return Err(FieldError::new(
            field,
            "must be a lowercase slug: letters a-z, digits, '.', '_' and '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Checks free text: length in characters, no NUL or other control characters
/// (line breaks and tabs allowed where `multiline`).
pub fn validate_text(field: &str, value: &str, max_chars: usize, multiline: bool) -> Result<(), FieldError> {
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    let bad = value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad {
        return Err(FieldError::new(field, "must not contain NUL or control characters"));
    }
    Ok(())
}

/// Checks a JSON object's size, depth and strings (no NUL anywhere, keys included).
pub fn validate_object(field: &str, value: &serde_json::Map<String, serde_json::Value>) -> Result<(), FieldError> {
    fn walk(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
        if depth > MAX_OBJECT_DEPTH {
            return Err("is nested too deeply");
        }
        match value {
            serde_json::Value::String(text) if text.contains('\0') => Err("must not contain NUL characters"),
            serde_json::Value::Array(items) => items.iter().try_for_each(|item| walk(item, depth + 1)),
            serde_json::Value::Object(map) => map.iter().try_for_each(|(key, item)| {
                if key.contains('\0') {
                    return Err("must not contain NUL characters");
                }
                walk(item, depth + 1)
            }),
            _ => Ok(()),
        }
    }

    let object = serde_json::Value::Object(value.clone());
    walk(&object, 1).map_err(|problem| {
        let problem = if problem == "is nested too deeply" {
            format!("is nested deeper than {MAX_OBJECT_DEPTH} levels")
        } else {
            problem.to_string()
        };
        FieldError::new(field, problem)
    })?;
    let size = serde_json::to_vec(&object)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OBJECT_BYTES {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_OBJECT_BYTES} bytes as JSON"),
        ));
    }
    Ok(())
}

/// Splits a search query into plain lowercase words (letters and digits),
/// dropping everything else, so no query syntax reaches the index.
pub fn search_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        // Lowercasing can add a combining mark: 'İ' becomes "i\u{307}".
        let word: String = word.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
        if !word.is_empty() && !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_SEARCH_TERMS {
            break;
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        let cases = [
            ("requests", false, true),
            ("zope.interface", false, true),
            ("typing_extensions", false, true),
            ("@types/node", true, true),
            ("@types/node", false, false),
            ("Requests", false, false),
            ("-leading", false, false),
            ("../etc/passwd", true, false),
            ("a/b", true, false),
            ("", false, false),
            ("name with space", false, false),
            ("x\0y", false, false),
        ];
        for (value, scoped, ok) in cases {
            assert_eq!(validate_slug("name", value, scoped).is_ok(), ok, "{value:?}");
        }
        assert!(validate_slug("name", &"a".repeat(129), false).is_err());
        assert!(validate_slug("name", &"a".repeat(128), false).is_ok());
    }

    #[test]
    fn text_rejects_nul() {
        assert!(validate_text("title", "a\0b", 10, false).is_err());
        assert!(validate_text("description", "line\nline", 100, true).is_ok());
        assert!(validate_text("title", "line\nline", 100, false).is_err());
    }

    #[test]
    fn object_depth_bounded() {
        let mut value = serde_json::json!(1);
        for _ in 0..40 {
            value = serde_json::json!({ "a": value });
        }
        let object = value.as_object().unwrap().clone();
        assert!(validate_object("metadata", &object).is_err());
    }

    #[test]
    fn search_terms_strip_syntax() {
        assert_eq!(search_terms("http client"), vec!["http", "client"]);
        assert_eq!(
            search_terms("\"x\" OR 1=1; -- NEAR(a b) *"),
            vec!["x", "or", "1", "near", "a", "b"]
        );
        assert!(search_terms("'\"*()").is_empty());
    }

    #[test]
    fn search_terms_drop_combining_marks() {
        assert_eq!(search_terms("İstanbul"), vec!["istanbul"]);
        assert_eq!(search_terms("İ"), vec!["i"]);
        assert_eq!(search_terms("café Ⅻ"), vec!["café", "ⅻ"]);
    }
}
