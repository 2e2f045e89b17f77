//! Reusable problem responses and the response headers of the request
//! pipeline. Operations refer to them as `#/components/responses/…` and
//! `#/components/headers/…`.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::ToResponse;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

pub const REQUEST_ID: &str = "X-Request-Id";
pub const RATE_LIMIT_HEADERS: [&str; 3] = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"];
const RETRY_AFTER: &str = "Retry-After";
const WWW_AUTHENTICATE: &str = "WWW-Authenticate";

/// Returns the headers that the components section defines, by name.
pub fn header_components() -> Vec<(&'static str, Header)> {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let count = || ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
    let header = |schema: ObjectBuilder, description: &str| {
        HeaderBuilder::new()
            .schema(Some(schema))
            .description(Some(description))
            .build()
    };
    vec![
        (
            REQUEST_ID,
            header(
                string(),
                "The request's id: the client's own when it sent a plain one of at most 128 characters, else a new UUID. \
                 Problem bodies repeat it as `request_id`.",
            ),
        ),
        (
            "X-RateLimit-Limit",
            header(count(), "Requests per minute allowed to this client on this route. Rate-limited routes only."),
        ),
        (
            "X-RateLimit-Remaining",
            header(count(), "Whole requests the client may still make now. Rate-limited routes only."),
        ),
        (
            "X-RateLimit-Reset",
            header(count(), "Seconds until the client's bucket is full again. Rate-limited routes only."),
        ),
        (
            RETRY_AFTER,
            header(count(), "Seconds to wait before trying again."),
        ),
        (
            WWW_AUTHENTICATE,
            header(string(), "Always `Bearer realm=\"hyper-registry\"`."),
        ),
    ]
}

/// Returns a reference to a header of [`header_components`].
pub fn header_ref(name: &str) -> Ref {
    Ref::new(format!("#/components/headers/{name}"))
}

/// Builds a problem response with the pipeline's headers plus `extra_headers`.
fn problem(description: &str, extra_headers: &[&str]) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let mut builder = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    let names = [REQUEST_ID]
        .iter()
        .chain(RATE_LIMIT_HEADERS.iter())
        .chain(extra_headers);
    for name in names {
        builder = builder.header_ref(*name, header_ref(name));
    }
    builder.build().into()
}

/// Declares a unit type per reusable problem response, for
/// `responses((status = …, response = Type))` in `#[utoipa::path]`.
macro_rules! problem_responses {
    ($($name:ident [$($header:expr),*] => $description:expr;)*) => {
        $(
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), problem($description, &[$($header),*]))
                }
            }
        )*
    };
}

problem_responses! {
    BadRequest [] =>
        "The request cannot be read: the body is not JSON (`malformed_body`), the cursor is not one this \
         listing issued (`invalid_cursor`), or the message framing is ambiguous (`ambiguous_framing`, \
         and the connection is closed).";
    Unauthorized [WWW_AUTHENTICATE] =>
        "Credentials are missing or not valid: `missing_credentials`, `invalid_token`, `token_expired`, \
         `invalid_api_key`, `api_key_revoked`, `api_key_expired`, or, where the operation checks a password \
         or code, `invalid_credentials`, `mfa_required`, `invalid_mfa_code` or `refresh_token_reused`.";
    Forbidden [] =>
        "The caller may not do this: `permission_denied` (a permission is missing), `forbidden` (a rule of \
         the operation, such as ownership or the escalation rules), `mfa_enrollment_required`, \
         `account_disabled`, or `admin_address_not_allowed` (the admin API outside `ADMIN_ALLOWED_CIDRS`).";
    NotFound [] => "No such resource (`not_found`). Ids that are malformed cannot name a resource and get this too.";
    Conflict [] =>
        "The request conflicts with the current state; `code` says how (`entry_exists`, `concurrent_update`, \
         `username_taken`, `last_admin`, `role_exists`, `role_in_use`, `mfa_already_enabled`, \
         `mfa_not_enabled`, `mfa_setup_missing`, `key_limit_reached`).";
    PreconditionFailed [] => "`If-Match` does not match the entry's current `ETag` (`precondition_failed`).";
    PayloadTooLarge [] => "The request body is larger than allowed (`payload_too_large`).";
    UnsupportedMediaType [] =>
        "The body's `Content-Type` is not one the operation accepts (`unsupported_media_type`).";
    UnprocessableContent [] =>
        "The request is well-formed but invalid: `validation_failed` (with `errors` listing each field) or \
         `invalid_parameter` (a query parameter, header or body value out of range, unknown or repeated).";
    Locked [RETRY_AFTER] =>
        "The account is locked after too many failed password attempts (`account_locked`).";
    TooManyRequests [RETRY_AFTER] => "The client's rate limit is used up (`rate_limited`).";
    HeadersTooLarge [] =>
        "The request line and headers exceed 32 KiB (`headers_too_large`); the connection is closed.";
    ServiceUnavailable [] =>
        "A dependency is failing: the audit log cannot be written, so changes and refusals are not \
         recorded (`audit_unavailable`), or the database is unreachable (`database_unavailable`). \
         Service resumes by itself when the dependency recovers.";
}
