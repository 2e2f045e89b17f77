//! Checks real responses against the served OpenAPI document. Each status
//! code must be documented for its operation, and the media type must be a
//! documented one. Headers written out in the operation must be sent, and
//! JSON bodies must validate against the documented schema. A small JSON
//! Schema checker below covers the keywords the document uses.

use std::collections::BTreeSet;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use super::{operation, operations, served_document};
use crate::helpers::{poll_until, TestApp, USER_PASSWORD};

/// A request body for [`Conformance::call`].
enum Body {
    Empty,
    Json(Value),
    /// A media type and the raw text.
    Raw(&'static str, String),
}

/// One documented request to send.
struct Call<'a> {
    method: Method,
    /// The path template as the document lists it.
    template: &'a str,
    /// The concrete path and query.
    path: String,
    token: Option<&'a str>,
    api_key: Option<&'a str>,
    if_match: Option<&'a str>,
    body: Body,
}

impl<'a> Call<'a> {
    fn new(method: Method, template: &'a str) -> Self {
        Call {
            method,
            template,
            path: template.to_string(),
            token: None,
            api_key: None,
            if_match: None,
            body: Body::Empty,
        }
    }

    fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    fn api_key(mut self, key: &'a str) -> Self {
        self.api_key = Some(key);
        self
    }

    fn if_match(mut self, etag: &'a str) -> Self {
        self.if_match = Some(etag);
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    fn raw(mut self, media_type: &'static str, text: impl Into<String>) -> Self {
        self.body = Body::Raw(media_type, text.into());
        self
    }
}

/// Sends documented calls and checks each response against the document.
struct Conformance<'a> {
    app: &'a TestApp,
    schemas: SchemaChecker,
    /// The (METHOD, template) pairs sent so far.
    exercised: BTreeSet<(String, String)>,
}

impl<'a> Conformance<'a> {
    async fn new(app: &'a TestApp) -> Self {
        Conformance {
            app,
            schemas: SchemaChecker {
                document: served_document(app).await,
            },
            exercised: BTreeSet::new(),
        }
    }

    /// Sends `call`, asserts that the response is `expected` and conforms
    /// to the document, and returns the body (JSON, or the text of other
    /// media types as a string).
    async fn call(&mut self, call: Call<'_>, expected: u16) -> Value {
        let mut request = self.app.request(call.method.clone(), &call.path, call.token);
        if let Some(key) = call.api_key {
            request = request.header("x-api-key", key);
        }
        if let Some(etag) = call.if_match {
            request = request.header("if-match", etag);
        }
        request = match call.body {
            Body::Empty => request,
            Body::Json(body) => request.json(&body),
            Body::Raw(media_type, text) => request.header("content-type", media_type).body(text),
        };
        let response = request.send().await.expect("request sent");
        let label = format!("{} {}", call.method, call.path);
        let (status, body) = self.check(&call.method, call.template, &label, response).await;
        assert_eq!(
            status, expected,
            "{label}: expected status {expected}, got {status} with {body}"
        );
        self.exercised
            .insert((call.method.as_str().to_string(), call.template.to_string()));
        body
    }

    async fn check(&self, method: &Method, template: &str, label: &str, response: Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let schemas = &self.schemas;
        let operation = operation(&schemas.document, method.as_str(), template);
        assert!(operation.is_object(), "{method} {template} is not documented");
        let documented = operation["responses"]
            .get(status.to_string())
            .map(|response| schemas.resolve(response))
            .unwrap_or_else(|| panic!("{label}: status {status} is not documented"));

        let headers = response.headers().clone();
        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            let value = headers.get(name.as_str()).and_then(|value| value.to_str().ok());
            // Headers written out in the operation are always sent, while
            // shared ones (by reference) come with some routes and responses only.
            if header.get("$ref").is_none() {
                assert!(value.is_some(), "{label}: documented header {name} is missing");
            }
            if let Some(value) = value {
                let schema = &schemas.resolve(header)["schema"];
                let parsed = if schema["type"] == "integer" {
                    value
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(value.into()))
                } else {
                    Value::String(value.into())
                };
                schemas.assert_valid(schema, &parsed, &format!("{label}: header {name}"));
            }
        }

        let media_type = headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_string());
        let text = response.text().await.expect("response body");
        let Some(content) = documented.get("content") else {
            assert!(
                text.is_empty(),
                "{label}: status {status} is documented without a body: {text}"
            );
            return (status, Value::Null);
        };
        let media_type = media_type.unwrap_or_else(|| panic!("{label}: no Content-Type"));
        let media = content
            .get(&media_type)
            .unwrap_or_else(|| panic!("{label}: media type {media_type} is not documented for {status}"));
        if media_type == "application/json" || media_type.ends_with("+json") {
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{label}: body is not JSON"));
            schemas.assert_valid(&media["schema"], &body, label);
            (status, body)
        } else {
            (status, Value::String(text))
        }
    }

    /// Asserts that every documented operation was called at least once.
    fn assert_all_exercised(&self) {
        let documented = operations(&self.schemas.document);
        let missing: Vec<_> = documented.difference(&self.exercised).cloned().collect();
        assert!(
            missing.is_empty(),
            "operations never called by the conformance test: {missing:?}"
        );
    }
}

/// Validates JSON values against the schemas of an OpenAPI document.
struct SchemaChecker {
    document: Value,
}

impl SchemaChecker {
    /// Follows `$ref` until it reaches a value that is not a reference.
    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("local reference");
                self.resolve(self.document.pointer(pointer).expect("reference resolves"))
            }
            None => value,
        }
    }

    fn assert_valid(&self, schema: &Value, instance: &Value, label: &str) {
        let mut errors = Vec::new();
        self.validate(schema, instance, "", &mut errors);
        assert!(
            errors.is_empty(),
            "{label}: the body does not match its schema:\n  {}\nbody: {instance}",
            errors.join("\n  ")
        );
    }

    /// Validates `instance` against `schema`, adding one message per
    /// violation to `errors`. Covers $ref, type, enum, properties, required,
    /// additionalProperties, items, oneOf, anyOf, allOf, the length, item and
    /// number bounds, and the formats date-time, date and uuid.
    fn validate(&self, schema: &Value, instance: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let Some(keywords) = schema.as_object() else {
            return;
        };
        let fail = |errors: &mut Vec<String>, message: String| errors.push(format!("{}: {message}", at_or_root(at)));

        if let Some(types) = keywords.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(name) => vec![name.as_str()],
                Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.iter().any(|name| has_type(instance, name)) {
                fail(errors, format!("{instance} is not of type {allowed:?}"));
                return;
            }
        }
        if let Some(Value::Array(values)) = keywords.get("enum") {
            if !values.contains(instance) {
                fail(errors, format!("{instance} is not one of {values:?}"));
            }
        }
        for (keyword, combine) in [("oneOf", "exactly one"), ("anyOf", "at least one")] {
            if let Some(Value::Array(alternatives)) = keywords.get(keyword) {
                let matching = alternatives
                    .iter()
                    .filter(|alternative| {
                        let mut inner = Vec::new();
                        self.validate(alternative, instance, at, &mut inner);
                        inner.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    fail(
                        errors,
                        format!("{matching} alternatives of {keyword} match, {combine} must"),
                    );
                }
            }
        }
        if let Some(Value::Array(all)) = keywords.get("allOf") {
            all.iter().for_each(|part| self.validate(part, instance, at, errors));
        }

        match instance {
            Value::Object(members) => self.validate_object(keywords, members, at, errors),
            Value::Array(items) => {
                if let Some(max) = keywords.get("maxItems").and_then(Value::as_u64) {
                    if items.len() as u64 > max {
                        fail(errors, format!("{} items, at most {max} allowed", items.len()));
                    }
                }
                if let Some(min) = keywords.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        fail(errors, format!("{} items, at least {min} needed", items.len()));
                    }
                }
                if let Some(item_schema) = keywords.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.validate(item_schema, item, &format!("{at}/{index}"), errors);
                    }
                }
            }
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if keywords
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|max| length > max)
                {
                    fail(errors, format!("{length} characters is too long"));
                }
                if keywords
                    .get("minLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|min| length < min)
                {
                    fail(errors, format!("{length} characters is too short"));
                }
                if let Some(format) = keywords.get("format").and_then(Value::as_str) {
                    if !has_format(text, format) {
                        fail(errors, format!("{text:?} is not a {format}"));
                    }
                }
            }
            Value::Number(number) => {
                let value = number.as_f64().unwrap_or(f64::NAN);
                if keywords
                    .get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|min| value < min)
                {
                    fail(errors, format!("{value} is below the minimum"));
                }
                if keywords
                    .get("maximum")
                    .and_then(Value::as_f64)
                    .is_some_and(|max| value > max)
                {
                    fail(errors, format!("{value} is above the maximum"));
                }
            }
            _ => {}
        }
    }

    fn validate_object(
        &self,
        keywords: &serde_json::Map<String, Value>,
        members: &serde_json::Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let empty = serde_json::Map::new();
        let properties = keywords.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        for required in keywords.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !members.contains_key(name) {
                errors.push(format!("{}: required member `{name}` is missing", at_or_root(at)));
            }
        }
        for (name, value) in members {
            let member_at = format!("{at}/{name}");
            match (properties.get(name), keywords.get("additionalProperties")) {
                (Some(property), _) => self.validate(property, value, &member_at, errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{}: member `{name}` is not documented", at_or_root(at)));
                }
                (None, Some(extra @ Value::Object(_))) => self.validate(extra, value, &member_at, errors),
                (None, _) => {}
            }
        }
    }
}

fn at_or_root(at: &str) -> &str {
    if at.is_empty() {
        "(body)"
    } else {
        at
    }
}

fn has_type(instance: &Value, name: &str) -> bool {
    match name {
        "object" => instance.is_object(),
        "array" => instance.is_array(),
        "string" => instance.is_string(),
        "boolean" => instance.is_boolean(),
        "null" => instance.is_null(),
        "number" => instance.is_number(),
        "integer" => instance.is_i64() || instance.is_u64(),
        _ => false,
    }
}

fn has_format(text: &str, format: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "uuid" => text.len() == 36 && uuid::Uuid::parse_str(text).is_ok(),
        "uri" => text.starts_with("https://"),
        _ => true,
    }
}

fn totp_code(app: &TestApp, secret_base32: &str) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .expect("base32 secret");
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).expect("TOTP parameters");
    totp.generate(app.state.clock.now().timestamp() as u64)
}

/// The checker must be able to fail, or a passing conformance test means nothing.
#[test]
fn schema_checker_finds_violations() {
    let checker = SchemaChecker {
        document: json!({"components": {"schemas": {
            "Status": {"type": "string", "enum": ["active", "archived"]},
            "Item": {
                "type": "object",
                "required": ["id", "when", "note"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "when": {"type": "string", "format": "date-time"},
                    "note": {"type": ["string", "null"], "maxLength": 3},
                    "count": {"type": "integer", "minimum": 1},
                    "status": {"oneOf": [{"$ref": "#/components/schemas/Status"}, {"type": "null"}]},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
                },
                "additionalProperties": false,
            },
        }}}),
    };
    let schema = json!({"$ref": "#/components/schemas/Item"});
    let errors_of = |instance: Value| {
        let mut errors = Vec::new();
        checker.validate(&schema, &instance, "", &mut errors);
        errors
    };
    let valid = json!({
        "id": "0d7c3c1e-5a0b-4f51-9d7e-6c1f2b3a4d5e", "when": "2026-12-04T10:00:00Z",
        "note": null, "count": 2, "status": "active", "tags": ["a"],
    });
    assert_eq!(errors_of(valid.clone()), Vec::<String>::new());

    // Each case changes one member of the valid instance, or removes it (`None`).
    let cases = [
        ("undocumented member", "extra", Some(json!(1))),
        ("missing required member", "id", None),
        ("wrong type", "count", Some(json!("2"))),
        ("below minimum", "count", Some(json!(0))),
        ("not in enum", "status", Some(json!("gone"))),
        ("too long", "note", Some(json!("long"))),
        ("bad uuid", "id", Some(json!("42"))),
        ("bad date-time", "when", Some(json!("yesterday"))),
        ("too many items", "tags", Some(json!(["a", "b"]))),
        ("wrong item type", "tags", Some(json!([1]))),
    ];
    for (case, member, value) in cases {
        let mut instance = valid.clone();
        let object = instance.as_object_mut().expect("object");
        match value {
            Some(value) => object.insert(member.to_string(), value),
            None => object.remove(member),
        };
        assert!(!errors_of(instance).is_empty(), "{case} passed the checker");
    }
}

const ENTRIES: &str = "/api/v1/registry/entries";
const ENTRY: &str = "/api/v1/registry/entries/{id}";
const USERS: &str = "/api/v1/admin/users";
const USER: &str = "/api/v1/admin/users/{id}";
const ROLES: &str = "/api/v1/admin/roles";
const ROLE: &str = "/api/v1/admin/roles/{name}";
const KEYS: &str = "/api/v1/keys";
const NO_SUCH_ID: &str = "6f0c1f4e-2a51-4bd6-9e37-3f2b8c1d0a99";

#[tokio::test]
async fn responses_conform_to_document() {
    let app = TestApp::spawn().await;
    let mut check = Conformance::new(&app).await;

    operations_and_sessions(&mut check).await;
    let viewer_token = users_and_roles(&mut check).await;
    registry(&mut check, &viewer_token).await;
    keys(&mut check).await;
    audit_and_incidents(&mut check).await;
    mfa_and_password(&mut check).await;

    check.assert_all_exercised();
}

async fn operations_and_sessions(check: &mut Conformance<'_>) {
    use Method as M;
    check.call(Call::new(M::GET, "/health"), 200).await;
    check.call(Call::new(M::GET, "/ready"), 200).await;
    check.call(Call::new(M::GET, "/openapi.json"), 200).await;

    let login = |password: &str| json!({"username": "admin", "password": password});
    let tokens = check
        .call(
            Call::new(M::POST, "/auth/login").json(login(crate::helpers::ADMIN_PASSWORD)),
            200,
        )
        .await;
    check
        .call(Call::new(M::POST, "/auth/login").json(login("wrong-password-1")), 401)
        .await;
    check
        .call(
            Call::new(M::POST, "/auth/login").raw("application/json", "{\"username\":"),
            400,
        )
        .await;
    check
        .call(Call::new(M::POST, "/auth/login").raw("text/plain", "admin"), 415)
        .await;
    check
        .call(
            Call::new(M::POST, "/auth/login").json(json!({"username": "admin"})),
            422,
        )
        .await;

    let refresh_token = tokens["refresh_token"].as_str().expect("refresh token").to_string();
    let refresh = json!({"refresh_token": refresh_token});
    let renewed = check
        .call(Call::new(M::POST, "/auth/refresh").json(refresh.clone()), 200)
        .await;

    // Sign out the renewed session, not the one the rest of the test uses.
    let renewed_token = renewed["access_token"].as_str().expect("access token").to_string();
    check
        .call(Call::new(M::POST, "/auth/logout").token(&renewed_token), 204)
        .await;
    check
        .call(Call::new(M::POST, "/auth/logout").token(&renewed_token), 401)
        .await;
    check.call(Call::new(M::POST, "/auth/refresh").json(refresh), 401).await;

    let token = check.app.admin_token.clone();
    check.call(Call::new(M::GET, "/auth/me").token(&token), 200).await;
    check.call(Call::new(M::GET, "/auth/me"), 401).await;
}

/// Exercises users and roles, and returns a token of a user with role `viewer`.
async fn users_and_roles(check: &mut Conformance<'_>) -> String {
    use Method as M;
    let token = check.app.admin_token.clone();
    let viewer = json!({"username": "viewer-1", "password": USER_PASSWORD, "roles": ["viewer"]});
    let created = check
        .call(Call::new(M::POST, USERS).token(&token).json(viewer.clone()), 201)
        .await;
    check
        .call(Call::new(M::POST, USERS).token(&token).json(viewer), 409)
        .await;
    let weak = json!({"username": "viewer-2", "password": "short"});
    check
        .call(Call::new(M::POST, USERS).token(&token).json(weak), 422)
        .await;

    let id = created["id"].as_str().expect("user id").to_string();
    check
        .call(
            Call::new(M::GET, USERS).path(format!("{USERS}?limit=1")).token(&token),
            200,
        )
        .await;
    check
        .call(
            Call::new(M::GET, USERS).path(format!("{USERS}?limit=0")).token(&token),
            422,
        )
        .await;
    check
        .call(
            Call::new(M::GET, USERS)
                .path(format!("{USERS}?cursor=bogus"))
                .token(&token),
            400,
        )
        .await;
    check
        .call(Call::new(M::GET, USER).path(format!("{USERS}/{id}")).token(&token), 200)
        .await;
    check
        .call(
            Call::new(M::GET, USER)
                .path(format!("{USERS}/{NO_SUCH_ID}"))
                .token(&token),
            404,
        )
        .await;
    let update = json!({"disabled": false, "unlock": true});
    check
        .call(
            Call::new(M::PATCH, USER)
                .path(format!("{USERS}/{id}"))
                .token(&token)
                .json(update),
            200,
        )
        .await;

    let viewer_token = check.app.login("viewer-1", USER_PASSWORD).await;
    check.call(Call::new(M::GET, USERS).token(&viewer_token), 403).await;

    check.call(Call::new(M::GET, ROLES).token(&token), 200).await;
    let role = json!({"name": "auditor", "description": "Reads the trail", "permissions": ["audit:read"]});
    check
        .call(Call::new(M::POST, ROLES).token(&token).json(role.clone()), 201)
        .await;
    check
        .call(Call::new(M::POST, ROLES).token(&token).json(role), 409)
        .await;
    let auditor = format!("{ROLES}/auditor");
    check
        .call(Call::new(M::GET, ROLE).path(&auditor).token(&token), 200)
        .await;
    check
        .call(
            Call::new(M::GET, ROLE).path(format!("{ROLES}/nobody")).token(&token),
            404,
        )
        .await;
    let replacement = json!({"description": null, "permissions": ["audit:read", "read"], "inherits": ["viewer"]});
    check
        .call(
            Call::new(M::PUT, ROLE).path(&auditor).token(&token).json(replacement),
            200,
        )
        .await;
    let unknown_permission = json!({"permissions": ["no:such"]});
    check
        .call(
            Call::new(M::PUT, ROLE)
                .path(&auditor)
                .token(&token)
                .json(unknown_permission),
            422,
        )
        .await;
    check
        .call(Call::new(M::DELETE, ROLE).path(&auditor).token(&token), 204)
        .await;
    check
        .call(
            Call::new(M::DELETE, ROLE).path(format!("{ROLES}/admin")).token(&token),
            403,
        )
        .await;

    viewer_token
}

async fn registry(check: &mut Conformance<'_>, viewer_token: &str) {
    use Method as M;
    let token = check.app.admin_token.clone();
    let entry = json!({
        "name": "requests",
        "category": "python-package",
        "description": "Python HTTP for Humans.",
        "version": "2.32.3",
        "tags": ["python", "http"],
        "metadata": {"ecosystem": "pypi", "stars": 52000},
        "sensitive": {"deploy_token": "s3cret"},
    });
    let created = check
        .call(Call::new(M::POST, ENTRIES).token(&token).json(entry.clone()), 201)
        .await;
    check
        .call(Call::new(M::POST, ENTRIES).token(&token).json(entry), 409)
        .await;
    let second = json!({"name": "httpx", "category": "python-package", "tags": ["http"]});
    check
        .call(Call::new(M::POST, ENTRIES).token(&token).json(second), 201)
        .await;
    let server_set = json!({"name": "x", "category": "y", "id": NO_SUCH_ID});
    check
        .call(Call::new(M::POST, ENTRIES).token(&token).json(server_set), 422)
        .await;
    check
        .call(
            Call::new(M::POST, ENTRIES)
                .token(viewer_token)
                .json(json!({"name": "v", "category": "c"})),
            403,
        )
        .await;
    check
        .call(
            Call::new(M::POST, ENTRIES).json(json!({"name": "v", "category": "c"})),
            401,
        )
        .await;

    let page = check
        .call(
            Call::new(M::GET, ENTRIES)
                .path(format!("{ENTRIES}?limit=1&tag=http"))
                .token(&token),
            200,
        )
        .await;
    let cursor = page["next_cursor"].as_str().expect("a second page").to_string();
    check
        .call(
            Call::new(M::GET, ENTRIES)
                .path(format!("{ENTRIES}?limit=1&tag=http&cursor={cursor}"))
                .token(&token),
            200,
        )
        .await;
    check
        .call(
            Call::new(M::GET, ENTRIES)
                .path(format!("{ENTRIES}?limit=101"))
                .token(&token),
            422,
        )
        .await;
    check
        .call(
            Call::new(M::GET, ENTRIES)
                .path(format!("{ENTRIES}?status=gone"))
                .token(&token),
            422,
        )
        .await;
    check
        .call(
            Call::new(M::GET, ENTRIES)
                .path(format!("{ENTRIES}?cursor=bogus"))
                .token(&token),
            400,
        )
        .await;

    let id = created["id"].as_str().expect("entry id").to_string();
    let path = format!("{ENTRIES}/{id}");
    check
        .call(Call::new(M::GET, ENTRY).path(&path).token(&token), 200)
        .await;
    check
        .call(Call::new(M::GET, ENTRY).path(&path).token(viewer_token), 200)
        .await;
    check
        .call(
            Call::new(M::GET, ENTRY)
                .path(format!("{ENTRIES}/{NO_SUCH_ID}"))
                .token(&token),
            404,
        )
        .await;
    check
        .call(
            Call::new(M::GET, ENTRY)
                .path(format!("{ENTRIES}/not-a-uuid"))
                .token(&token),
            404,
        )
        .await;

    let replacement =
        json!({"name": "requests", "category": "python-package", "status": "deprecated", "version": null});
    check
        .call(
            Call::new(M::PUT, ENTRY)
                .path(&path)
                .token(&token)
                .if_match("\"99\"")
                .json(replacement.clone()),
            412,
        )
        .await;
    check
        .call(
            Call::new(M::PUT, ENTRY)
                .path(&path)
                .token(&token)
                .if_match("\"1\"")
                .json(replacement),
            200,
        )
        .await;
    check
        .call(
            Call::new(M::PUT, ENTRY)
                .path(&path)
                .token(viewer_token)
                .json(json!({"name": "a", "category": "b"})),
            403,
        )
        .await;
    let patch =
        r#"{"tags": ["http", "client"], "metadata": {"ecosystem": null, "license": "Apache-2.0"}, "comment": null}"#;
    check
        .call(
            Call::new(M::PATCH, ENTRY)
                .path(&path)
                .token(&token)
                .raw("application/merge-patch+json", patch),
            200,
        )
        .await;
    check
        .call(
            Call::new(M::PATCH, ENTRY)
                .path(&path)
                .token(&token)
                .raw("text/plain", "tags"),
            415,
        )
        .await;
    check
        .call(
            Call::new(M::PATCH, ENTRY)
                .path(&path)
                .token(&token)
                .json(json!({"revision": 7})),
            422,
        )
        .await;
    let conflicting = json!({"name": "httpx"});
    check
        .call(
            Call::new(M::PATCH, ENTRY).path(&path).token(&token).json(conflicting),
            409,
        )
        .await;

    let search = "/api/v1/registry/search";
    check
        .call(
            Call::new(M::GET, search).path(format!("{search}?q=http")).token(&token),
            200,
        )
        .await;
    check.call(Call::new(M::GET, search).token(&token), 422).await;
    check
        .call(Call::new(M::GET, "/api/v1/registry/analytics").token(&token), 200)
        .await;
    check
        .call(Call::new(M::GET, "/api/v1/registry/analytics").token(viewer_token), 403)
        .await;

    let import = "/api/v1/registry/import";
    let lines = "{\"name\": \"flask\", \"category\": \"python-package\"}\nnot json\n{\"name\": \"Bad Name\", \"category\": \"x\"}\n";
    let report = check
        .call(
            Call::new(M::POST, import)
                .token(&token)
                .raw("application/x-ndjson", lines),
            200,
        )
        .await;
    assert_eq!(report["created"], 1, "{report}");
    check
        .call(Call::new(M::POST, import).token(&token).raw("text/csv", "a,b"), 415)
        .await;
    check
        .call(
            Call::new(M::POST, import)
                .path(format!("{import}?on_conflict=merge"))
                .token(&token)
                .raw("application/x-ndjson", ""),
            422,
        )
        .await;
    let exported = check
        .call(Call::new(M::GET, "/api/v1/registry/export").token(&token), 200)
        .await;
    for line in exported.as_str().expect("export text").lines() {
        let object: Value = serde_json::from_str(line).expect("each exported line is JSON");
        assert!(object.is_object(), "{line}");
    }

    check
        .call(Call::new(M::DELETE, ENTRY).path(&path).token(viewer_token), 403)
        .await;
    check
        .call(
            Call::new(M::DELETE, ENTRY).path(&path).token(&token).if_match("\"1\""),
            412,
        )
        .await;
    check
        .call(Call::new(M::DELETE, ENTRY).path(&path).token(&token), 204)
        .await;
    check
        .call(Call::new(M::DELETE, ENTRY).path(&path).token(&token), 404)
        .await;
}

async fn keys(check: &mut Conformance<'_>) {
    use Method as M;
    let token = check.app.admin_token.clone();
    let request = json!({"name": "ci", "permissions": ["read"], "expires_in_days": 30, "rate_limit_per_minute": 100});
    let created = check
        .call(Call::new(M::POST, KEYS).token(&token).json(request), 201)
        .await;
    check
        .call(Call::new(M::POST, KEYS).token(&token).json(json!({"name": ""})), 422)
        .await;
    let foreign = json!({"name": "x", "user_id": NO_SUCH_ID});
    check
        .call(Call::new(M::POST, KEYS).token(&token).json(foreign), 404)
        .await;

    let key = created["key"].as_str().expect("key").to_string();
    let me = check.call(Call::new(M::GET, "/auth/me").api_key(&key), 200).await;
    assert_eq!(me["api_key_id"], created["id"]);
    check.call(Call::new(M::GET, KEYS).token(&token), 200).await;
    check
        .call(
            Call::new(M::GET, KEYS).path(format!("{KEYS}?user_id=me")).token(&token),
            422,
        )
        .await;

    let rotate = "/api/v1/keys/{id}/rotate";
    let id = created["id"].as_str().expect("key id").to_string();
    let rotated = check
        .call(
            Call::new(M::POST, rotate)
                .path(format!("{KEYS}/{id}/rotate"))
                .token(&token)
                .json(json!({"grace_period_hours": 1})),
            201,
        )
        .await;
    check
        .call(
            Call::new(M::POST, rotate)
                .path(format!("{KEYS}/{id}/rotate"))
                .token(&token),
            422,
        )
        .await;
    let new_id = rotated["id"].as_str().expect("key id").to_string();
    check
        .call(
            Call::new(M::POST, rotate)
                .path(format!("{KEYS}/{new_id}/rotate"))
                .token(&token),
            201,
        )
        .await;
    check
        .call(
            Call::new(M::POST, rotate)
                .path(format!("{KEYS}/nokey/rotate"))
                .token(&token),
            404,
        )
        .await;

    let key_path = "/api/v1/keys/{id}";
    check
        .call(
            Call::new(M::DELETE, key_path)
                .path(format!("{KEYS}/{new_id}"))
                .token(&token),
            204,
        )
        .await;
    check
        .call(
            Call::new(M::DELETE, key_path)
                .path(format!("{KEYS}/nokey"))
                .token(&token),
            404,
        )
        .await;
    check
        .call(Call::new(M::GET, "/auth/me").api_key("hrk_bogus"), 401)
        .await;
}

async fn audit_and_incidents(check: &mut Conformance<'_>) {
    use Method as M;
    let token = check.app.admin_token.clone();
    let audit = "/api/v1/admin/audit";
    // The database copy of the trail is written in the background, at
    // least every half second, so wait for its first events.
    let app = check.app;
    poll_until(std::time::Duration::from_secs(10), || async {
        let page: Value = app.get(&format!("{audit}?limit=5"), &token).await.json().await.ok()?;
        let arrived = !page["items"].as_array()?.is_empty();
        arrived.then_some(())
    })
    .await;
    let page = check
        .call(
            Call::new(M::GET, audit).path(format!("{audit}?limit=5")).token(&token),
            200,
        )
        .await;
    assert!(!page["items"].as_array().expect("items").is_empty(), "{page}");
    check
        .call(
            Call::new(M::GET, audit)
                .path(format!("{audit}?severity=loud"))
                .token(&token),
            422,
        )
        .await;

    let events = "/api/v1/admin/audit/events";
    let note =
        json!({"event_type": "incident_note", "severity": "high", "description": "key leaked", "user_id": "u-1"});
    check
        .call(Call::new(M::POST, events).token(&token).json(note), 201)
        .await;
    let reserved = json!({"event_type": "login_success", "severity": "info", "description": "forged"});
    check
        .call(Call::new(M::POST, events).token(&token).json(reserved), 422)
        .await;

    let logging = "/api/v1/admin/logging";
    check.call(Call::new(M::GET, logging).token(&token), 200).await;
    check
        .call(
            Call::new(M::PUT, logging).token(&token).json(json!({"level": "ERROR"})),
            200,
        )
        .await;
    check
        .call(
            Call::new(M::PUT, logging).token(&token).json(json!({"level": "loud"})),
            422,
        )
        .await;

    let emergency = "/api/v1/admin/emergency";
    check.call(Call::new(M::GET, emergency).token(&token), 200).await;
    let drill = json!({"rate_limit_per_minute": 100000, "reason": "drill", "duration_minutes": 5});
    check
        .call(Call::new(M::POST, emergency).token(&token).json(drill), 200)
        .await;
    let state = check.call(Call::new(M::GET, emergency).token(&token), 200).await;
    assert_eq!(state["active"], true, "{state}");
    let until_lifted = json!({"rate_limit_per_minute": 100000, "reason": "drill"});
    check
        .call(Call::new(M::POST, emergency).token(&token).json(until_lifted), 200)
        .await;
    check.call(Call::new(M::GET, emergency).token(&token), 200).await;
    check.call(Call::new(M::DELETE, emergency).token(&token), 200).await;
    let invalid = json!({"rate_limit_per_minute": 0, "reason": "drill"});
    check
        .call(Call::new(M::POST, emergency).token(&token).json(invalid), 422)
        .await;
}

async fn mfa_and_password(check: &mut Conformance<'_>) {
    use Method as M;
    let (_, token) = check.app.create_user("mfa-user", &["user"]).await;

    let setup = check
        .call(Call::new(M::POST, "/auth/mfa/setup").token(&token), 200)
        .await;
    let secret = setup["secret"].as_str().expect("secret").to_string();
    check
        .call(
            Call::new(M::POST, "/auth/mfa/confirm")
                .token(&token)
                .json(json!({"code": "12345"})),
            401,
        )
        .await;
    let code = totp_code(check.app, &secret);
    let codes = check
        .call(
            Call::new(M::POST, "/auth/mfa/confirm")
                .token(&token)
                .json(json!({"code": code})),
            200,
        )
        .await;
    assert_eq!(codes["recovery_codes"].as_array().map(Vec::len), Some(10));
    check
        .call(Call::new(M::POST, "/auth/mfa/setup").token(&token), 409)
        .await;

    let me = check.call(Call::new(M::GET, "/auth/me").token(&token), 200).await;
    assert_eq!(me["mfa_enabled"], true);
    let wrong = json!({"password": "wrong-password-1", "code": "000000"});
    check
        .call(Call::new(M::POST, "/auth/mfa/disable").token(&token).json(wrong), 401)
        .await;
    check.app.clock.advance(chrono::Duration::seconds(30));
    let code = totp_code(check.app, &secret);
    let disable = json!({"password": USER_PASSWORD, "code": code});
    check
        .call(
            Call::new(M::POST, "/auth/mfa/disable")
                .token(&token)
                .json(disable.clone()),
            204,
        )
        .await;
    check
        .call(Call::new(M::POST, "/auth/mfa/disable").token(&token).json(disable), 409)
        .await;

    let password = "/auth/password";
    let wrong = json!({"current_password": "wrong-password-1", "new_password": "another-passphrase-2"});
    check
        .call(Call::new(M::POST, password).token(&token).json(wrong), 401)
        .await;
    let weak = json!({"current_password": USER_PASSWORD, "new_password": "short"});
    check
        .call(Call::new(M::POST, password).token(&token).json(weak), 422)
        .await;
    let change = json!({"current_password": USER_PASSWORD, "new_password": "another-passphrase-2"});
    check
        .call(Call::new(M::POST, password).token(&token).json(change), 200)
        .await;
}
