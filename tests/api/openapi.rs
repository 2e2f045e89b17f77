//! `GET /openapi.json` and how the document is kept in step with the router.
//!
//! Routes and document come from the same registrations: every resource
//! router adds its handlers with `utoipa_axum::routes!`, which reads the
//! method and path from the handler's `#[utoipa::path]` attribute and adds
//! the operation to the document as it adds the route. The tests here guard
//! the ways that link could still break:
//!
//! - `document_served_without_credentials`: the served document is the one
//!   that `hyper_registry::api::openapi::document()` builds.
//! - `document_matches_route_table`: the document's operations equal
//!   `ROUTES`, the routes of the product contract, so a route added to the
//!   code but not to the table, or the other way round, fails.
//! - `documented_operations_are_routed`: each documented operation reaches a
//!   handler (no fallback 404, no 405), and every other method on a
//!   documented path gets 405, so the router serves no undocumented method.
//! - `routes_registered_only_with_openapi`: no file under `src/api`
//!   registers a route with plain axum calls (`.route(`, `.nest(`, …), the
//!   one way to serve a path that the document would not know.
//! - `conformance::responses_conform_to_document`: real responses of every
//!   operation match the documented status codes, media types, headers and
//!   schemas.

mod conformance;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// Every route of the HTTP API: the product contract's list. Adding a route
/// means adding it here, and the tests below fail until the document and
/// the router agree with this table.
const ROUTES: &[(&str, &str)] = &[
    // Operations.
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    // Sessions.
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("POST", "/auth/password"),
    ("POST", "/auth/mfa/setup"),
    ("POST", "/auth/mfa/confirm"),
    ("POST", "/auth/mfa/disable"),
    // Registry.
    ("POST", "/api/v1/registry/entries"),
    ("GET", "/api/v1/registry/entries"),
    ("GET", "/api/v1/registry/entries/{id}"),
    ("PUT", "/api/v1/registry/entries/{id}"),
    ("PATCH", "/api/v1/registry/entries/{id}"),
    ("DELETE", "/api/v1/registry/entries/{id}"),
    ("GET", "/api/v1/registry/search"),
    ("GET", "/api/v1/registry/analytics"),
    ("POST", "/api/v1/registry/import"),
    ("GET", "/api/v1/registry/export"),
    // API keys.
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys/{id}/rotate"),
    ("DELETE", "/api/v1/keys/{id}"),
    // Administration.
    ("POST", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/users/{id}"),
    ("PATCH", "/api/v1/admin/users/{id}"),
    ("GET", "/api/v1/admin/roles"),
    ("POST", "/api/v1/admin/roles"),
    ("GET", "/api/v1/admin/roles/{name}"),
    ("PUT", "/api/v1/admin/roles/{name}"),
    ("DELETE", "/api/v1/admin/roles/{name}"),
    ("GET", "/api/v1/admin/audit"),
    ("POST", "/api/v1/admin/audit/events"),
    ("GET", "/api/v1/admin/logging"),
    ("PUT", "/api/v1/admin/logging"),
    ("GET", "/api/v1/admin/emergency"),
    ("POST", "/api/v1/admin/emergency"),
    ("DELETE", "/api/v1/admin/emergency"),
];

/// Routes that need no credentials.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
];

/// The methods that a path item may hold, as the document names them.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Returns the document's operations as (METHOD, path template) pairs.
pub fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    let paths = document["paths"].as_object().expect("`paths` is an object");
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in item.keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

fn route_set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect()
}

/// Returns the operation object of `method` on `path`.
pub fn operation<'a>(document: &'a Value, method: &str, path: &str) -> &'a Value {
    &document["paths"][path][method.to_lowercase()]
}

/// Fetches the served document without credentials.
pub async fn served_document(app: &TestApp) -> Value {
    let response = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("the document is JSON")
}

/// Fills the parameters of a path template with values that name nothing.
fn sample_path(template: &str) -> String {
    template
        .replace("{id}", "6f0c1f4e-2a51-4bd6-9e37-3f2b8c1d0a99")
        .replace("{name}", "no-such-role")
}

#[tokio::test]
async fn document_served_without_credentials() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("request sent");

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers.contains_key("x-ratelimit-limit"),
        "/openapi.json is rate-limited like every route but /health and /ready"
    );
    let served: Value = response.json().await.expect("the document is JSON");
    let built = serde_json::to_value(hyper_registry::api::openapi::document()).expect("the document serialises");
    assert_eq!(served, built, "the served document is the generated one");
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn document_matches_route_table() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let documented = operations(&document);
    let table = route_set(ROUTES);

    let undocumented: Vec<_> = table.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unlisted: Vec<_> = documented.difference(&table).collect();
    assert!(
        unlisted.is_empty(),
        "documented operations missing from ROUTES (add them there and to the product contract): {unlisted:?}"
    );
}

#[tokio::test]
async fn security_declared_except_public_routes() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let public = route_set(PUBLIC_ROUTES);
    let both_schemes = serde_json::json!([{"bearerAuth": []}, {"apiKey": []}]);

    for (method, path) in operations(&document) {
        let operation = operation(&document, &method, &path);
        let documents_401 = operation["responses"].get("401").is_some();
        if public.contains(&(method.clone(), path.clone())) {
            assert!(operation.get("security").is_none(), "{method} {path} is public");
        } else {
            assert_eq!(
                operation["security"], both_schemes,
                "{method} {path} takes either credential"
            );
            assert!(documents_401, "{method} {path} can answer 401");
        }
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
}

#[tokio::test]
async fn operation_ids_unique() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let mut seen = BTreeSet::new();
    for (method, path) in operations(&document) {
        let id = operation(&document, &method, &path)["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_string();
        assert!(seen.insert(id.clone()), "operationId {id} is used twice");
    }
}

/// Every `$ref` in the document points at something that exists.
#[tokio::test]
async fn references_resolve() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
    }
}

fn collect_references(value: &Value, references: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref") {
                references.push(reference.clone());
            }
            object.values().for_each(|item| collect_references(item, references));
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, references)),
        _ => {}
    }
}

#[tokio::test]
async fn documented_operations_are_routed() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;

    // The router's fallback response to a path it does not have.
    let fallback = app
        .request(Method::GET, "/no/such/route", None)
        .send()
        .await
        .expect("request sent");
    assert_eq!(fallback.status(), StatusCode::NOT_FOUND);
    let fallback: Value = fallback.json().await.expect("problem body");
    let fallback_detail = fallback["detail"].clone();

    // Without credentials nothing changes state: secured routes stop at 401
    // and the public ones at a missing body.
    for (method, template) in operations(&document) {
        let path = sample_path(&template);
        let method = Method::from_bytes(method.as_bytes()).expect("valid method");
        let response = app
            .request(method.clone(), &path, None)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template} is documented but not routed"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && body["detail"] == fallback_detail),
            "{method} {template} is documented but reaches the fallback"
        );
    }

    // Every other method on a documented path is not served.
    let paths: BTreeSet<String> = operations(&document).into_iter().map(|(_, path)| path).collect();
    for template in paths {
        for method in METHODS {
            if document["paths"][&template].get(method).is_some() {
                continue;
            }
            let path = sample_path(&template);
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("valid method");
            let response = app
                .request(method.clone(), &path, None)
                .send()
                .await
                .expect("request sent");
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template} is served but not documented"
            );
        }
    }
}

#[test]
fn routes_registered_only_with_openapi() {
    let api_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = Vec::new();
    collect_rust_files(&api_dir, &mut files);
    assert!(files.len() > 10, "found the API sources in {}", api_dir.display());

    let plain_registrations = [".route(", ".route_service(", ".nest(", ".nest_service("];
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source readable");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for call in plain_registrations {
                assert!(
                    !code.contains(call),
                    "{}:{}: `{call}` serves a route that the OpenAPI document does not see; \
                     register it with `.routes(routes!(handler))` and a `#[utoipa::path]` attribute",
                    file.display(),
                    number + 1
                );
            }
        }
    }
}

fn collect_rust_files(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("directory readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}
