//! Bulk import (`POST /api/v1/registry/import`) and export
//! (`GET /api/v1/registry/export`), both as JSON Lines streams.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Json;
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::SharedContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context};
use super::openapi::{
    Forbidden, ImportReport as ImportReportBody, OnConflict, PayloadTooLarge, Unauthorized, UnprocessableContent,
    UnsupportedMediaType,
};
use super::query::QueryPairs;
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::auth::Principal;
use crate::registry::{ImportReport, Registry};
use crate::storage::{EntryCursor, EntryFilter};

/// Largest import body. The body is streamed, so this bounds the work of one
/// request rather than memory.
pub const MAX_IMPORT_BYTES: u64 = 1 << 30;
/// Entries fetched per page while exporting.
const EXPORT_PAGE: u32 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_entries))
        .routes(routes!(export_entries))
}

fn is_ndjson(request: &Request) -> bool {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines"
    )
}

/// Imports entries, one JSON object per line in the shape of an entry body.
///
/// Lines longer than `MAX_BODY_BYTES` and invalid lines are reported in
/// `errors` and never stop the others. The whole body may be up to 1 GiB.
#[utoipa::path(
    post,
    path = "/api/v1/registry/import",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("on_conflict" = inline(Option<OnConflict>), Query,
            description = "What to do with a line whose category and name exist: `skip` (the default) or \
                           `update` (own entries only, unless the caller holds `entries:manage`)."),
    ),
    request_body(
        description = "JSON Lines: one entry object per line.",
        content(
            (String = "application/x-ndjson"),
            (String = "application/jsonl"),
            (String = "application/json-lines"),
        ),
    ),
    responses(
        (status = 200, description = "What was created, updated, skipped and rejected.", body = ImportReportBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn import_entries(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    query: QueryPairs,
    request: Request,
) -> ApiResult<Json<ImportReport>> {
    let principal = caller.require("write")?;
    query.only(&["on_conflict"])?;
    let update_existing = match query.single("on_conflict")? {
        None | Some("skip") => false,
        Some("update") => true,
        Some(_) => {
            return Err(ApiError::InvalidParameter(
                "`on_conflict` must be `skip` or `update`".into(),
            ))
        }
    };
    if !is_ndjson(&request) {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as application/x-ndjson, one entry per line".into(),
        ));
    }

    let max_line = state.config.max_body_bytes;
    let mut session = state
        .registry
        .start_import(principal.user_id, update_existing, principal.can("entries:manage"));
    let mut stream = request.into_body().into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut line_number: u64 = 0;
    let mut total: u64 = 0;
    // Set while skipping the rest of a line that exceeded the limit.
    let mut discarding = false;

    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::MalformedBody("the request body could not be read".into()))?;
        total += chunk.len() as u64;
        if total > MAX_IMPORT_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_IMPORT_BYTES as usize));
        }
        buffer.extend_from_slice(&chunk);
        while let Some(position) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=position).collect();
            line_number += 1;
            if discarding {
                discarding = false;
                continue;
            }
            if line.len() - 1 > max_line {
                session.reject_line(
                    line_number,
                    "line_too_long",
                    format!("the line is longer than {max_line} bytes"),
                );
                continue;
            }
            session.push_line(line_number, &line[..line.len() - 1]).await?;
        }
        if buffer.len() > max_line && !discarding {
            session.reject_line(
                line_number + 1,
                "line_too_long",
                format!("the line is longer than {max_line} bytes"),
            );
            buffer.clear();
            discarding = true;
        } else if discarding {
            buffer.clear();
        }
    }
    if !buffer.is_empty() && !discarding {
        line_number += 1;
        session.push_line(line_number, &buffer).await?;
    }
    let report = session.finish().await?;
    record_import(&state, &context, &principal, &report).await;
    Ok(Json(report))
}

async fn record_import(state: &AppState, context: &SharedContext, principal: &Principal, report: &ImportReport) {
    let event = context
        .event(state, "entries_imported", Status::Success, Severity::Info)
        .user(Some(principal.user_id.to_string()), principal.api_key_id.clone())
        .description(format!(
            "import: {} created, {} updated, {} skipped",
            report.created, report.updated, report.skipped
        ));
    state.audit.record(event).await;
}

/// Produces the export as pages of JSON Lines.
fn export_stream(
    registry: Registry,
    principal: Principal,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(Some(None::<EntryCursor>), move |position| {
        let registry = registry.clone();
        let principal = principal.clone();
        async move {
            let after = position?;
            let page = match registry
                .list_entries(&principal, &EntryFilter::default(), after.as_ref(), EXPORT_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(error = %error, "export stopped by a storage error");
                    return Some((Err(std::io::Error::other("export failed")), None));
                }
            };
            let mut bytes = Vec::new();
            for item in &page.items {
                if serde_json::to_writer(&mut bytes, &item.to_import_line()).is_ok() {
                    bytes.push(b'\n');
                }
            }
            let next = page.next.map(Some);
            Some((Ok(Bytes::from(bytes)), next))
        }
    })
}

/// Exports every entry the caller may read as JSON Lines.
///
/// Each line is an entry in the import format, without server-set fields,
/// so an export can be imported again. `sensitive` appears only where the
/// caller may see it.
#[utoipa::path(
    get,
    path = "/api/v1/registry/export",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The entries, one JSON object per line.", body = String,
            content_type = "application/x-ndjson"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn export_entries(
    State(state): State<AppState>,
    caller: Authenticated,
    query: QueryPairs,
) -> ApiResult<Response> {
    let principal = caller.require("read")?;
    query.only(&[])?;
    let body = Body::from_stream(export_stream(state.registry.clone(), principal));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}
