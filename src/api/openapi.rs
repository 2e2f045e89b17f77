//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! Each handler describes its own operation with `#[utoipa::path]`: its
//! parameters, body, success response and the errors that the handler and
//! its extractors return. [`document`] then adds what the request pipeline
//! (`middleware::pipeline`) does to every route alike: 400 for ambiguous
//! framing, 431 for oversized heads, and on rate-limited routes 429, 503 and
//! the `X-RateLimit-*` headers.

mod responses;
mod schemas;

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{self, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as Document, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use responses::{
    BadRequest, Conflict, Forbidden, HeadersTooLarge, Locked, NotFound, PayloadTooLarge, PreconditionFailed,
    ServiceUnavailable, TooManyRequests, Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
pub use schemas::*;

use super::error::ApiError;
use crate::app::AppState;

/// The parts of the document that no single route contributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hyper Registry API",
        description = "A self-hosted registry of an organization's components. Errors are RFC 9457 problem \
                       documents (`application/problem+json`) whose `code` is a stable identifier. \
                       Authenticate with `Authorization: Bearer <access token>` or `X-API-Key: <key>`, \
                       never both at once.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "operations", description = "Liveness, readiness and this document, with no credentials needed."),
        (name = "sessions", description = "Sign-in, tokens, password and MFA."),
        (name = "registry", description = "Entries, search, analytics, import and export."),
        (name = "keys", description = "API keys."),
        (name = "admin", description = "Users, roles, the audit trail and incident controls, \
                                        reachable only from `ADMIN_ALLOWED_CIDRS`."),
    ),
    components(
        schemas(Problem, ProblemCode, FieldError),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            UnprocessableContent,
            Locked,
            TooManyRequests,
            HeadersTooLarge,
            ServiceUnavailable,
        ),
    ),
    modifiers(&SharedComponents),
)]
pub struct ApiDoc;

/// Adds the security schemes and the pipeline's response headers.
struct SharedComponents;

impl Modify for SharedComponents {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Components::new);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An access token from `/auth/login` or `/auth/refresh`."))
            .build();
        components
            .security_schemes
            .insert("bearerAuth".into(), SecurityScheme::Http(bearer).into());
        let api_key = security::ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An API key, `hrk_<key id>_<secret>`, from `POST /api/v1/keys`.",
        ));
        components
            .security_schemes
            .insert("apiKey".into(), SecurityScheme::ApiKey(api_key).into());
        for (name, header) in responses::header_components() {
            components.headers.insert(name.into(), header.into());
        }
    }
}

/// Returns the complete document: every routed operation plus what the
/// request pipeline adds to each.
pub fn document() -> Document {
    let mut document = super::routes().into_openapi();
    if let Some(components) = &mut document.components {
        accept_only_null_extra_members(components, "EntryPatch");
    }
    for (path, item) in document.paths.paths.iter_mut() {
        let metered = !super::middleware::is_unmetered(path);
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_pipeline_responses(operation, metered);
            drop_null_body(operation);
        }
    }
    document
}

/// Adds the responses and headers that `middleware::pipeline` gives every
/// request to `operation`, keeping any the handler already declared.
fn add_pipeline_responses(operation: &mut Operation, metered: bool) {
    let responses = &mut operation.responses.responses;
    let mut shared = vec![("400", "BadRequest"), ("431", "HeadersTooLarge")];
    if metered {
        shared.extend([("429", "TooManyRequests"), ("503", "ServiceUnavailable")]);
    }
    for (status, name) in shared {
        responses
            .entry(status.to_string())
            .or_insert_with(|| Ref::new(format!("#/components/responses/{name}")).into());
    }

    // Responses written out in the operation get the headers here, while
    // the shared problem responses carry them in their component.
    for response in responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let mut names = vec![responses::REQUEST_ID];
        if metered {
            names.extend(responses::RATE_LIMIT_HEADERS);
        }
        for name in names {
            response
                .headers
                .entry(name.to_string())
                .or_insert_with(|| RefOr::Ref(responses::header_ref(name)));
        }
    }
}

/// Restricts the members of schema `name` that it does not list to `null`.
/// A merge patch may name any member with `null`, which removes nothing
/// when the entry has no such member, while any other value for an unknown
/// member makes the patched entry invalid. utoipa can only open or close an
/// object entirely, hence this step.
fn accept_only_null_extra_members(components: &mut Components, name: &str) {
    if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
        let null = ObjectBuilder::new().schema_type(Type::Null);
        object.additional_properties = Some(Box::new(AdditionalProperties::RefOr(null.into())));
    }
}

/// Removes the `null` alternative from an optional request body. utoipa
/// marks a body optional only when it is written `Option<T>`, which also
/// lets the schema accept a JSON `null`. The handlers reject a `null` body
/// because it is not an object, and `required: false` alone already lets
/// the body be left out.
fn drop_null_body(operation: &mut Operation) {
    let Some(RefOr::T(body)) = &mut operation.request_body else {
        return;
    };
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else {
            continue;
        };
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let mut alternatives: Vec<&RefOr<Schema>> = one_of.items.iter().filter(|item| !is_null_type(item)).collect();
        if alternatives.len() == 1 && one_of.items.len() == 2 {
            content.schema = alternatives.pop().cloned();
        }
    }
}

fn is_null_type(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(object)) if object.schema_type == SchemaType::Type(Type::Null))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(serve_document))
}

/// The serialised document, built on first use because it depends on nothing but the code.
static DOCUMENT_JSON: OnceLock<Option<Bytes>> = OnceLock::new();

/// Serves this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document.", body = Object, content_type = "application/json"),
    ),
)]
async fn serve_document() -> Result<Response, ApiError> {
    let body = DOCUMENT_JSON
        .get_or_init(|| {
            serde_json::to_vec(&document())
                .map(Bytes::from)
                .map_err(|error| tracing::error!(error = %error, "could not serialise the OpenAPI document"))
                .ok()
        })
        .clone()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the OpenAPI document could not be serialised")))?;
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
