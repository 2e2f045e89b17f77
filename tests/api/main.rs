//! Integration tests: each test starts the real server on a random port with
//! its own SQLite file and talks HTTP to it.

mod helpers;
mod smoke;
