//! # firmup_server
//!
//! The Firmup distribution server: catalogue, publishing, entitlement,
//! update checks and resumable downloads.
//!
//! Layout: `main.rs`/`cli.rs` parse the command line; [`app::App`] holds
//! the shared state; [`router`] is the one route table; [`controllers`] are
//! thin handlers; all SQL lives in [`db`]; blobs go through [`storage`];
//! [`error::AppError`] is the one error type.
//!
//! The server must never hold a private release key: it verifies manifests
//! with the client library's engine ([`publish_check`]) and never signs.

pub mod app;
pub mod auth;
pub mod caches;
pub mod cli;
pub mod codes;
pub mod config;
pub mod conn;
pub mod controllers;
pub mod db;
pub mod domain;
pub mod entitlement;
pub mod error;
pub mod extract;
pub mod grants;
pub mod invalidation;
pub mod lastseen;
pub mod metrics;
pub mod openapi;
pub mod privacy;
pub mod provisioning;
pub mod publish_check;
pub mod ratelimit;
pub mod retention;
pub mod rollouts;
pub mod router;
pub mod selection;
pub mod serve;
pub mod snapshot;
pub mod storage;
pub mod telemetry;
pub mod tokens;
pub mod trust;
pub mod warranty;
