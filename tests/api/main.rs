//! Integration tests: each test starts the real server on a random port with
//! its own SQLite file and talks HTTP to it.

mod helpers;
mod smoke;
mod entries;
mod listing;
mod search;
mod import_export;
mod bad_input;
mod http_framing;
mod tokens;
mod login;
mod permissions;
mod ratelimit;
mod keys;
mod audit;
mod sessions;
mod storage;
