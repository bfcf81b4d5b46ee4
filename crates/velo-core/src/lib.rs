//! velo-core: the pure heart of velo.
//!
//! This crate holds everything that computes and nothing that touches the outside world:
//!
//! - [`schemas`]: declarative column specifications, validated (and losslessly coerced) on
//!   Arrow record batches, reporting every violation with its column, rule, count and rows;
//! - [`metrics`]: regression metrics with scikit-learn's definitions and edge cases;
//! - [`splitters`]: train/test and time-series cross-validation splits;
//! - [`stats`]: paired tests (Wilcoxon signed-rank) for comparing models fold by fold;
//! - [`drift`]: compact dataset profiles and per-column drift with Evidently's methods.
//!
//! Models, their features and explainers are velo-models'.
//!
//! **Layer:** the bottom of the workspace; it depends on external crates only.
//! **Invariant:** core never opens a file, reads an environment variable, starts a process or
//! an async runtime. It works on values, Arrow data and `Read`/`Write` handles given to it, so
//! embedders bring their own I/O (velo-io is one such I/O layer).
#![deny(clippy::disallowed_methods)]

pub mod drift;
mod error;
mod kind;
pub mod metrics;
pub mod schemas;
pub mod splitters;
pub mod stats;

pub use error::{Error, Result};

#[doc(hidden)]
pub mod __private {
    //! Re-exports used by [`impl_kind_deserialize!`](crate::impl_kind_deserialize).
    pub use serde;
    pub use serde_json;
}
