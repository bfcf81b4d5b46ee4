//! velo-mlflow: a standalone MLflow REST client.
//!
//! This crate will talk to an MLflow tracking server (experiments, runs, metrics, artifacts
//! through the server's proxy, registered models, versions and aliases) without depending on
//! any other velo crate, so that any Rust project can use it on its own. It is empty until the
//! tracking and registry work lands; see `docs/ARCHITECTURE.md`.
