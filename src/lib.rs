//! Hyper Registry: a self-hosted registry of an organization's components,
//! secure in production by default.
//!
//! The binary is a thin shell over this library: [`startup::Application`]
//! runs the server and [`cli`] holds the operator commands. See the README
//! for a map from concepts to modules.

// Shipped code handles every failure; unit tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod events;
pub mod incident;
pub mod metrics;
pub mod ratelimit;
pub mod rbac;
pub mod registry;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tls;
