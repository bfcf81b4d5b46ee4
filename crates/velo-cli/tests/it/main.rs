//! Integration tests of the `velo` binary's own commands: configuration, data, generated files
//! (one test binary, several modules). Whole-system tests (the lifecycle, interop with MLflow,
//! pandas and Kafka clients, serving) live in the workspace's `tests/` package.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers; a failed unwrap is a failed test"
)]

mod configs;
mod data;
mod generated;

pub(crate) use velo_tests::{Output, output, root, velo};
