//! Integration tests: each test starts the real server on a random port with
//! its own SQLite file and talks HTTP to it.

mod alerts;
mod audit;
mod bad_input;
mod cli;
mod cluster;
mod detectors;
mod entries;
mod helpers;
mod http_framing;
mod import_export;
mod incident;
mod keys;
mod listing;
mod login;
mod metrics;
mod permissions;
mod ratelimit;
mod search;
mod sessions;
mod smoke;
mod storage;
mod tokens;
