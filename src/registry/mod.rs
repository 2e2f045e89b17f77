//! The registry's domain: entry validation, ownership rules, search terms,
//! import and export. Handlers and CLI commands call [`Registry`]; storage
//! only ever sees validated records.

mod cache;
mod entry;
mod import;
mod merge_patch;
mod service;
mod validate;

pub use entry::{entity_tag, EntryInput, EntryView, FieldError, SERVER_FIELDS};
pub(crate) use import::parse_line as parse_import_line;
pub use import::{ImportError, ImportReport, IMPORT_BATCH_SIZE};
pub use merge_patch::merge_patch;
pub(crate) use service::sensitive_context;
pub use service::{EntryBody, ListPage, Registry, RegistryError, SearchPage};
pub use validate::{search_terms, validate_slug, STATUSES};
