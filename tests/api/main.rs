//! Integration tests: each test starts the real server on a random port with
//! its own SQLite file and talks HTTP to it.

mod alerts;
mod audit;
mod audit_durability;
mod backup;
mod bad_input;
mod check_config;
mod cli;
mod cluster;
mod detectors;
mod encryption;
mod entries;
mod hardening;
mod helpers;
mod http_framing;
mod import_export;
mod incident;
mod keys;
mod listing;
mod log_secrets;
mod login;
mod metrics;
mod openapi;
mod perimeter;
mod permissions;
mod ratelimit;
mod search;
mod security_checklist;
mod sessions;
mod smoke;
mod storage;
mod tls;
mod tokens;
