//! Scenario testing: how a model behaves on slices of the data, under perturbations, on
//! hand-written cases and on extreme inputs, and where it breaks.
//!
//! A [`Suite`] (declared in YAML under a `ScenariosJob`) holds:
//! - named [`slices`](Filter) and [slices of high error found automatically](find_slices);
//! - [`Scenario`]s: rows (all or a slice), a [`Perturbation`] (noise, scaling, shifts,
//!   missing or set values, values out of range, categories swapped or unseen, columns dropped,
//!   rows duplicated) and [`Expectation`]s (metric bounds, degradation against the unperturbed
//!   rows, invariance, direction, refusal), optionally a [`Sweep`] of the perturbation's
//!   magnitude bisected to the mildest magnitude that breaks an expectation;
//! - minimum-functionality [`Case`]s and the extreme-input checks.
//!
//! [`Suite::run`] returns a [`SuiteReport`]; it writes nothing (velo-jobs' `ScenariosJob`
//! turns the report into a table, a JUnit file, tracking metrics, charts and an HTML report).
//!
//! ```
//! use velo_models::scenarios::Suite;
//!
//! let suite: Suite = serde_yaml::from_str("
//! scenarios:
//!   - name: noisy_temperature
//!     perturb: {KIND: Noise, columns: [temp], std: 0.05}
//!     expect:
//!       - {KIND: Degradation, metric: r2_score, max_relative: 0.05}
//!     sweep: {from: 0.0, to: 0.5}
//! ")?;
//! assert_eq!(suite.scenarios[0].perturb.as_ref().map(|p| p.kind()), Some("Noise"));
//! # Ok::<(), serde_yaml::Error>(())
//! ```

mod columns;
mod expect;
mod perturb;
mod slices;
mod suite;

pub use expect::{
    Check, Degradation, Directional, Expectation, Finite, Invariance, MetricBound, Observation,
    Refusal,
};
pub use perturb::{
    DropColumn, DuplicateRows, Noise, OutOfRange, Perturbation, Perturbed, Scale, SetMissing,
    SetValue, Shift, Side, SwapCategories, UnseenCategory,
};
pub use slices::{AutoSlices, Filter, FoundSlice, find_slices};
pub use suite::{
    Case, CaseReport, ExtremeReport, Scenario, ScenarioReport, SliceReport, Suite, SuiteReport,
    Sweep, SweepPoint, SweepReport,
};

/// Why a suite could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The suite or the data is not usable.
    #[error("{place}: {message}")]
    Invalid {
        /// The scenario, slice, case or field.
        place: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The model cannot predict the unperturbed inputs.
    #[error("{place}: the model cannot predict them")]
    Model {
        /// What was predicted.
        place: String,
        /// The model's error.
        #[source]
        source: crate::ModelError,
    },
}
