//! The entry as clients send it ([`EntryInput`]) and see it ([`EntryView`]).

use std::collections::HashSet;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::*;
use crate::storage::StoredEntry;

/// Fields only the server sets; a body that contains one is rejected.
pub const SERVER_FIELDS: &[&str] = &["id", "owner_id", "revision", "created_at", "updated_at"];

/// One invalid field, for the `errors` list of a 422 response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A validated entry body for create, replace and import.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub sensitive: Option<Map<String, Value>>,
}

impl EntryInput {
    /// Parses and validates a JSON body.
    ///
    /// # Errors
    /// Every field at fault: server-set fields, unknown fields, wrong types
    /// and rule violations.
    pub fn from_value(value: Value) -> Result<EntryInput, Vec<FieldError>> {
        let Value::Object(object) = value else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let server_set: Vec<FieldError> = SERVER_FIELDS
            .iter()
            .filter(|field| object.contains_key(**field))
            .map(|field| FieldError::new(field, "is set by the server and cannot be sent"))
            .collect();
        if !server_set.is_empty() {
            return Err(server_set);
        }
        let mut input: EntryInput = serde_json::from_value(Value::Object(object))
            .map_err(|error| vec![FieldError::new("body", describe_serde_error(&error))])?;
        input.normalize();
        input.validate()?;
        Ok(input)
    }

    fn normalize(&mut self) {
        if let Some(tags) = &mut self.tags {
            // A set, because a 1 MiB body can hold some 100,000 tags and a
            // linear search per tag would take quadratic time.
            let mut seen = HashSet::with_capacity(tags.len());
            let mut unique: Vec<String> = Vec::with_capacity(tags.len());
            for tag in tags.drain(..) {
                let tag = tag.trim().to_string();
                if seen.insert(tag.clone()) {
                    unique.push(tag);
                }
            }
            *tags = unique;
        }
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |result: Result<(), FieldError>| {
            if let Err(error) = result {
                errors.push(error);
            }
        };

        check(validate_slug("name", &self.name, true));
        check(validate_slug("category", &self.category, false));

        // Free text and the status.
        if let Some(title) = &self.title {
            check(validate_text("title", title, MAX_TITLE_CHARS, false));
        }
        if let Some(description) = &self.description {
            check(validate_text("description", description, MAX_DESCRIPTION_CHARS, true));
        }
        if let Some(status) = &self.status {
            if !STATUSES.contains(&status.as_str()) {
                check(Err(FieldError::new(
                    "status",
                    "must be one of active, deprecated, archived",
                )));
            }
        }
        if let Some(version) = &self.version {
            check(validate_text("version", version, MAX_VERSION_CHARS, false));
        }

        if let Some(tags) = &self.tags {
            // Past the limit only the count is reported, so that the error
            // list cannot grow with the number of tags in the body.
            if tags.len() > MAX_TAGS {
                check(Err(FieldError::new("tags", format!("at most {MAX_TAGS} tags"))));
            } else {
                for tag in tags {
                    if tag.is_empty() {
                        check(Err(FieldError::new("tags", "tags must not be empty")));
                    } else {
                        check(validate_text("tags", tag, MAX_TAG_CHARS, false));
                    }
                }
            }
        }

        if let Some(metadata) = &self.metadata {
            check(validate_object("metadata", metadata));
        }
        if let Some(sensitive) = &self.sensitive {
            check(validate_object("sensitive", sensitive));
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Writes this input into `entry`, with `sensitive` already encrypted.
    pub fn apply_to(&self, entry: &mut StoredEntry, sensitive_ciphertext: Option<Vec<u8>>) {
        entry.name = self.name.clone();
        entry.category = self.category.clone();
        entry.title = self.title.clone().unwrap_or_else(|| self.name.clone());
        entry.description = self.description.clone().unwrap_or_default();
        entry.status = self.status.clone().unwrap_or_else(|| "active".into());
        entry.version = self.version.clone();
        entry.tags = self.tags.clone().unwrap_or_default();
        entry.metadata = Value::Object(self.metadata.clone().unwrap_or_default());
        entry.sensitive = sensitive_ciphertext;
    }
}

/// Turns serde's message into one that names the field but not the input.
fn describe_serde_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json appends " at line L column C"; the position is meaningless
    // for a value that was already parsed.
    let text = text.split(" at line ").next().unwrap_or(&text);
    text.chars().take(200).collect()
}

/// Returns an entry revision as a strong HTTP entity tag.
pub fn entity_tag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// An entry as returned by the API.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub id: String,
    pub name: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Value>,
    pub owner_id: String,
    pub revision: i64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl EntryView {
    pub fn new(entry: &StoredEntry, sensitive: Option<Value>) -> Self {
        EntryView {
            id: entry.id.to_string(),
            name: entry.name.clone(),
            category: entry.category.clone(),
            title: entry.title.clone(),
            description: entry.description.clone(),
            status: entry.status.clone(),
            version: entry.version.clone(),
            tags: entry.tags.clone(),
            metadata: entry.metadata.clone(),
            sensitive,
            owner_id: entry.owner_id.to_string(),
            revision: entry.revision,
            created_at: entry.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            updated_at: entry.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            score: None,
        }
    }

    /// Renders the import-format line for export. It has no server-set fields,
    /// so that an export can be imported again.
    pub fn to_import_line(&self) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), Value::String(self.name.clone()));
        object.insert("category".into(), Value::String(self.category.clone()));
        object.insert("title".into(), Value::String(self.title.clone()));
        object.insert("description".into(), Value::String(self.description.clone()));
        object.insert("status".into(), Value::String(self.status.clone()));
        if let Some(version) = &self.version {
            object.insert("version".into(), Value::String(version.clone()));
        }
        object.insert("tags".into(), Value::from(self.tags.clone()));
        object.insert("metadata".into(), self.metadata.clone());
        if let Some(sensitive) = &self.sensitive {
            object.insert("sensitive".into(), sensitive.clone());
        }
        Value::Object(object)
    }

    /// Returns the representation's revision as an HTTP entity tag.
    pub fn etag(&self) -> String {
        entity_tag(self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_fields_rejected() {
        for field in SERVER_FIELDS {
            let mut body = json!({"name": "x", "category": "c"});
            body[*field] = json!("1");
            let errors = EntryInput::from_value(body).unwrap_err();
            assert_eq!(errors[0].field, *field);
        }
    }

    #[test]
    fn unknown_field_rejected() {
        let errors = EntryInput::from_value(json!({"name": "x", "category": "c", "roles": ["admin"]})).unwrap_err();
        assert!(errors[0].message.contains("roles"), "{errors:?}");
    }

    #[test]
    fn wrong_type_rejected() {
        assert!(EntryInput::from_value(json!({"name": 5, "category": "c"})).is_err());
        assert!(EntryInput::from_value(json!({"name": "x", "category": "c", "tags": "t"})).is_err());
        assert!(EntryInput::from_value(json!({"name": "x", "category": "c", "metadata": []})).is_err());
    }

    #[test]
    fn every_invalid_field_listed() {
        let errors = EntryInput::from_value(json!({"name": "Bad Name", "category": "", "status": "gone"})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "category", "status"]);
    }

    #[test]
    fn many_invalid_tags_reported_once() {
        let tags: Vec<String> = (0..100_000).map(|n| format!("\u{1}{n}")).collect();
        let errors = EntryInput::from_value(json!({"name": "x", "category": "c", "tags": tags})).unwrap_err();
        assert_eq!(errors.len(), 1, "first errors: {:?}", &errors[..errors.len().min(3)]);
        assert_eq!(errors[0], FieldError::new("tags", "at most 32 tags"));
    }

    #[test]
    fn duplicate_tags_count_once_toward_limit() {
        let mut tags: Vec<String> = (0..MAX_TAGS).map(|n| format!("t{n}")).collect();
        tags.extend(tags.clone());
        let input = EntryInput::from_value(json!({"name": "x", "category": "c", "tags": tags})).unwrap();
        assert_eq!(input.tags.unwrap().len(), MAX_TAGS);
    }

    #[test]
    fn duplicate_tags_collapsed() {
        let input = EntryInput::from_value(json!({"name": "x", "category": "c", "tags": ["a", "a", " b"]})).unwrap();
        assert_eq!(input.tags.unwrap(), vec!["a", "b"]);
    }
}
