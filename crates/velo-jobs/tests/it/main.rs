//! velo-jobs from the embedder's side: the shipped job configurations run with
//! `JobConfig::run` on a temporary store, as a Rust program embedding velo runs them (no CLI).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a failed unwrap is a failed test, and tests make their own files"
)]

mod detectors;
mod lifecycle;
