//! Schemas of the JSON that handlers build with `serde_json::json!` or that
//! other modules define without a schema. These types exist only to be
//! described: nothing constructs them, and `Serialize` is derived only so
//! that utoipa reads their `serde` attributes (`deny_unknown_fields` becomes
//! `additionalProperties: false`). The `openapi` integration test checks real
//! responses against them, so a handler that changes its output without
//! changing its schema fails there.

// Never constructed, see above.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::rbac::KNOWN_PERMISSIONS;

/// An RFC 9457 problem document, the body of every error response.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// `https://hyper-registry.dev/problems/` followed by `code` with `_` replaced by `-`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub problem_type: String,
    pub title: String,
    /// The HTTP status code of the response.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// An explanation of the failure and, where it helps, of the fix.
    pub detail: String,
    pub code: ProblemCode,
    /// The `X-Request-Id` of the response, which also identifies the request in the server log.
    pub request_id: String,
    /// Every invalid field, only when `code` is `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
}

/// The stable, snake_case identifier of a problem.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    // 400
    MalformedBody,
    InvalidCursor,
    AmbiguousFraming,
    BadRequest,
    // 401
    MissingCredentials,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    MfaRequired,
    InvalidMfaCode,
    RefreshTokenReused,
    // 403
    PermissionDenied,
    Forbidden,
    AccountDisabled,
    MfaEnrollmentRequired,
    AdminAddressNotAllowed,
    CorsRequestNotAllowed,
    // 404, 405
    NotFound,
    MethodNotAllowed,
    // 409
    EntryExists,
    ConcurrentUpdate,
    UsernameTaken,
    LastAdmin,
    RoleExists,
    RoleInUse,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaSetupMissing,
    KeyLimitReached,
    // 412, 413, 415
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    // 422
    ValidationFailed,
    InvalidParameter,
    // 423, 429, 431
    AccountLocked,
    RateLimited,
    HeadersTooLarge,
    // 5xx
    AuditUnavailable,
    DatabaseUnavailable,
    InternalError,
}

/// One invalid field of a request body.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    /// The field's name, or `body` for the body as a whole.
    pub field: String,
    pub message: String,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// `GET /ready`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// `unavailable` (with status 503) when the database cannot be reached,
    /// `degraded` when Redis or the audit log is failing.
    pub status: ReadinessStatus,
    pub checks: ReadinessChecks,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    Degraded,
    Unavailable,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessChecks {
    pub database: CheckStatus,
    /// `not_configured` without `REDIS_URL`.
    pub redis: RedisStatus,
    pub audit_log: CheckStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Unavailable,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedisStatus {
    Ok,
    Unavailable,
    NotConfigured,
}

/// A pair of tokens from a login, a refresh or a password change.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenPair {
    /// HS256 JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single use: exchanging it at `/auth/refresh` spends it.
    pub refresh_token: String,
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Bearer,
}

/// The caller's identity.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Me {
    #[schema(format = "uuid")]
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    /// Effective permissions, inherited ones included.
    pub permissions: Vec<String>,
    pub mfa_enabled: bool,
    /// Present, and `true`, while a role of the user requires MFA that is
    /// not enabled yet. Until then only `/auth/me`, `/auth/logout` and
    /// `/auth/mfa/*` accept the user's tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub mfa_enrollment_required: Option<bool>,
    /// Present when the request was authenticated with an API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub api_key_id: Option<String>,
}

/// A pending TOTP enrolment (RFC 6238, SHA-1, 6 digits, 30 s).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaSetup {
    /// The shared secret in base32.
    pub secret: String,
    /// The same secret as an `otpauth://totp/…` URI, for QR codes.
    pub otpauth_uri: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodes {
    /// Ten single-use codes, each accepted once as `recovery_code` at login.
    #[schema(min_items = 10, max_items = 10)]
    pub recovery_codes: Vec<String>,
}

/// An entry of the registry.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub status: EntryStatus,
    #[schema(required = true)]
    pub version: Option<String>,
    pub tags: Vec<String>,
    #[schema(additional_properties)]
    pub metadata: BTreeMap<String, Value>,
    /// Decrypted sensitive fields, only for the owner and holders of
    /// `entries:manage`, and only when the entry has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, additional_properties)]
    pub sensitive: Option<BTreeMap<String, Value>>,
    #[schema(format = "uuid")]
    pub owner_id: String,
    /// Starts at 1 and grows by one with each change. The `ETag` is this number in quotes.
    #[schema(minimum = 1)]
    pub revision: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A search hit: an entry with its rank.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchHit {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub status: EntryStatus,
    #[schema(required = true)]
    pub version: Option<String>,
    pub tags: Vec<String>,
    #[schema(additional_properties)]
    pub metadata: BTreeMap<String, Value>,
    /// As in [`Entry`].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, additional_properties)]
    pub sensitive: Option<BTreeMap<String, Value>>,
    #[schema(format = "uuid")]
    pub owner_id: String,
    #[schema(minimum = 1)]
    pub revision: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Relevance, higher is better, rounded to three decimals.
    pub score: f64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    Active,
    Deprecated,
    Archived,
}

// The patterns repeat the rules of `registry::validate`: lowercase slugs for
// `name` and `category`, and no control characters (Unicode category Cc,
// U+0000-U+001F and U+007F-U+009F) in free text, where `description` alone
// allows tab, line feed and carriage return.
/// The body of `POST` and `PUT /api/v1/registry/entries…`. `id`,
/// `owner_id`, `revision`, `created_at`, `updated_at` and any unknown field
/// are rejected with 422.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$"
    )]
    pub name: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    pub category: String,
    /// Defaults to `name`.
    #[schema(max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub title: Option<String>,
    /// Defaults to the empty string.
    #[schema(max_length = 8192, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    /// Defaults to `active`.
    pub status: Option<EntryStatus>,
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub version: Option<String>,
    /// Trimmed and deduplicated, and then at most 32 tags of 1 to 64
    /// characters without control characters.
    pub tags: Option<Vec<String>>,
    /// Any JSON object of at most 64 KiB and 32 levels, with no NUL character.
    #[schema(additional_properties)]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// As `metadata`, but encrypted at rest and shown only to the owner and
    /// to holders of `entries:manage`.
    #[schema(additional_properties)]
    pub sensitive: Option<BTreeMap<String, Value>>,
}

/// A JSON merge patch (RFC 7396) of an entry: members set to `null` are
/// removed, objects are merged, everything else replaces. The patched entry
/// must satisfy [`EntryInput`]. Other members are accepted only as `null`,
/// which removes nothing.
#[derive(Serialize, ToSchema)]
pub struct EntryPatch {
    // Members other than objects replace the entry's, so they carry the
    // rules of `EntryInput`. `null` for `name` or `category` would remove a
    // required member, which is always rejected.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$"
    )]
    pub name: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = r"^[a-z0-9][a-z0-9._-]*$"
    )]
    pub category: Option<String>,
    #[schema(max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub title: Option<String>,
    #[schema(max_length = 8192, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    pub status: Option<EntryStatus>,
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub version: Option<String>,
    pub tags: Option<Vec<String>>,
    #[schema(additional_properties)]
    pub metadata: Option<BTreeMap<String, Value>>,
    #[schema(additional_properties)]
    pub sensitive: Option<BTreeMap<String, Value>>,
}

/// One page of entries.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPage {
    pub items: Vec<Entry>,
    /// The `cursor` of the next page, or `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One page of search hits, best first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    /// The `cursor`, with the same `q`, of the next page, or `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Counts over the whole registry.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Analytics {
    pub total: i64,
    /// Entries per category.
    pub by_category: BTreeMap<String, i64>,
    /// Entries per status.
    pub by_status: BTreeMap<String, i64>,
    /// The ten most used tags, most used first.
    #[schema(max_items = 10)]
    pub top_tags: Vec<TagCount>,
    /// Entries created on each UTC day of the last 30 days that had any.
    pub created_per_day: Vec<DayCount>,
    /// The ten principals with the most requests since this instance started.
    #[schema(max_items = 10)]
    pub most_active_principals: Vec<PrincipalRequests>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagCount {
    pub tag: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayCount {
    #[schema(format = Date)]
    pub date: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequests {
    /// A user id.
    pub principal_id: String,
    pub requests: u64,
}

/// The outcome of an import. A bad line is reported here and never stops the others.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    /// The first 1000 problems, by line.
    pub errors: Vec<ImportError>,
    /// Problems beyond those listed in `errors`.
    pub errors_omitted: u64,
}

/// The action of an import on a line whose category and name exist.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    Skip,
    Update,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportError {
    /// 1-based line number.
    #[schema(minimum = 1)]
    pub line: u64,
    pub code: String,
    pub detail: String,
}

/// An API key as listed, without the secret, which only its creation shows.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key id, the public part of `hrk_<id>_…`.
    pub id: String,
    pub name: String,
    /// `hrk_<id>`, to recognise the key by its beginning.
    pub prefix: String,
    #[schema(format = "uuid")]
    pub user_id: String,
    /// The key's own permissions, intersected with the owner's at each use.
    pub permissions: Vec<String>,
    /// Requests per minute, also the burst, or `null` for the server default.
    #[schema(required = true)]
    pub rate_limit_per_minute: Option<u32>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// May lag the true last use by up to 60 seconds.
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
}

/// A new API key with its secret, shown only in this response.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatedApiKey {
    /// The whole key, for `X-API-Key`.
    pub key: String,
    pub id: String,
    pub name: String,
    pub prefix: String,
    #[schema(format = "uuid")]
    pub user_id: String,
    pub permissions: Vec<String>,
    #[schema(required = true)]
    pub rate_limit_per_minute: Option<u32>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Always `null` for a new key.
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// Always `null` for a new key.
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
}

/// The API keys the caller may see, in one unpaginated list.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
    /// Always `null`.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[schema(format = "uuid")]
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Locked out after too many failed logins, until the lockout ends or an administrator unlocks.
    pub locked: bool,
    pub mfa_enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    pub items: Vec<User>,
    /// The `cursor` of the next page, or `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// The permissions granted directly.
    pub permissions: Vec<String>,
    /// Roles whose permissions this one includes.
    pub inherits: Vec<String>,
    /// Built-in roles cannot be changed or deleted.
    pub builtin: bool,
    /// Own and inherited permissions together.
    pub effective_permissions: Vec<String>,
}

/// Every role, built-in ones included, by name in one unpaginated list.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleList {
    pub items: Vec<Role>,
    /// Always `null`.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One event of the audit trail, with its place in the hash chain.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    #[schema(format = DateTime)]
    pub timestamp: String,
    #[schema(format = "uuid")]
    pub event_id: String,
    pub event_type: String,
    pub action: String,
    pub status: AuditStatus,
    pub severity: Severity,
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(required = true)]
    pub api_key_id: Option<String>,
    #[schema(required = true)]
    pub client_ip: Option<String>,
    #[schema(required = true)]
    pub method: Option<String>,
    #[schema(required = true)]
    pub path: Option<String>,
    #[schema(required = true)]
    pub http_status: Option<u16>,
    #[schema(required = true)]
    pub request_id: Option<String>,
    pub description: String,
    /// The verified client certificate's subject, under mutual TLS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_cert_subject: Option<String>,
    /// `hash` of the event before this one in the file.
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEventPage {
    /// Newest first.
    pub items: Vec<AuditEvent>,
    /// The `cursor` of older events, or `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    Success,
    Failed,
    Denied,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// An operator's event as recorded.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordedEvent {
    #[schema(format = "uuid")]
    pub event_id: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub event_type: String,
    pub severity: Severity,
    /// The user the event is about.
    #[schema(required = true)]
    pub user_id: Option<String>,
    /// The description sent, followed by the recording operator's user id.
    pub description: String,
}

/// Emergency mode. When `active` is `false` no other field is present.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyState {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rate_limit_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub started_at: Option<String>,
    /// Absent when `active` is `false`, and `null` when the emergency lasts until it is lifted.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The user id of the operator who started it, or `command line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub started_by: Option<String>,
}

/// The log level in force.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLevel {
    /// The level set at run time, else `LOG_LEVEL` as configured.
    pub level: String,
}

/// The body of `POST /api/v1/admin/roles`. The handler reads the same
/// fields as for `PUT`, where `name` may be left out, but rejects a missing
/// `name` here.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    /// A lowercase letter, then lowercase letters, digits, `_` or `-`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z][a-z0-9_-]*$")]
    pub name: String,
    /// At most 1024 characters, without NUL.
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// The caller must hold each.
    #[schema(value_type = Vec<PermissionName>)]
    pub permissions: Vec<String>,
    /// Names of existing roles whose permissions this one includes. A cycle is rejected.
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// The filters shared by the entry listing and search.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntryFilters {
    /// Only entries of this category.
    #[param(min_length = 1, max_length = 128, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    pub category: Option<String>,
    /// Only entries with this status.
    #[param(inline)]
    pub status: Option<EntryStatus>,
    #[param(schema_with = tag_filter)]
    pub tag: Option<Vec<String>>,
    /// Only entries owned by this user.
    #[param(schema_with = uuid_input)]
    pub owner_id: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// The filter of the API key listing.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilters {
    /// Only this user's keys. Another user's need `keys:admin`.
    #[param(schema_with = uuid_input)]
    pub user_id: Option<String>,
}

/// The filters of the audit query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilters {
    /// Events of this severity and above.
    #[param(inline)]
    pub severity: Option<Severity>,
    #[param(max_length = 256)]
    pub user_id: Option<String>,
    /// For example `GET /api/v1/registry/entries` or `login_failed`.
    #[param(max_length = 256)]
    pub action: Option<String>,
    #[param(max_length = 256)]
    pub event_type: Option<String>,
    #[param(inline)]
    pub status: Option<AuditStatus>,
    /// Events at or after this time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Events before this time.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// A permission name that a role or API key may be given: a known
/// permission, `*`, or `prefix:*` for a prefix of a known permission. The
/// list is built from `rbac::KNOWN_PERMISSIONS`, which the server checks
/// names against.
pub struct PermissionName;

impl PartialSchema for PermissionName {
    fn schema() -> RefOr<Schema> {
        let mut names = vec!["*".to_string()];
        names.extend(KNOWN_PERMISSIONS.iter().map(|name| name.to_string()));
        for prefix in KNOWN_PERMISSIONS
            .iter()
            .filter_map(|name| name.split_once(':'))
            .map(|(prefix, _)| prefix)
        {
            let wildcard = format!("{prefix}:*");
            if !names.contains(&wildcard) {
                names.push(wildcard);
            }
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(
                "A permission, `*` for all, or `prefix:*` for all under `prefix:`.",
            ))
            .into()
    }
}

impl ToSchema for PermissionName {}

/// Returns the schema of a UUID as the server parses it: hyphenated, simple
/// (32 hex digits), braced or as a `urn:uuid:` URN, in either case.
/// `format: uuid` alone would wrongly exclude the last three.
pub fn uuid_input() -> Object {
    uuid_input_builder().build()
}

/// Returns [`uuid_input`] with `null` accepted too.
pub fn nullable_uuid_input() -> Object {
    uuid_input_builder()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}

fn uuid_input_builder() -> ObjectBuilder {
    const HYPHENATED: &str = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";
    let pattern =
        format!("^(?:[0-9A-Fa-f]{{32}}|(?:[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:)?{HYPHENATED}|\\{{{HYPHENATED}\\}})$");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some("A UUID, e.g. `0d7c3c1e-5a0b-4f51-9d7e-6c1f2b3a4d5e`."))
}

/// Returns the schema of the `tag` filter: at most 32 values of 1 to 64
/// characters each. The parameter's doc comment is lost with `schema_with`,
/// so the schema carries the description.
fn tag_filter() -> Array {
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64));
    ArrayBuilder::new()
        .items(tag)
        .max_items(Some(32))
        .description(Some(
            "Only entries that have every one of these tags; repeat the parameter for several.",
        ))
        .build()
}
