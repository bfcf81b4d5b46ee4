//! velo-models: models, their features, explainers and portable artifacts.
//!
//! - [`config`]: the `KIND`-tagged model configuration ([`ModelConfig`]);
//! - [`features`]: [`FeaturePipeline`](features::FeaturePipeline), from Arrow inputs to a
//!   [`FeatureMatrix`] (categorical encoding, pass-through or standardisation), fitted with the
//!   model; [`leakage`] checks inputs that (nearly) determine the target;
//! - [`tree`]: [`Tree`], the regression-tree structure shared by the forest, its predictor and
//!   the exact TreeSHAP explainer; [`forest`]: the random forest regressor;
//!   [`boosting`]: histogram gradient-boosted trees (`KIND: GradientBoostingModel`);
//!   [`neural`]: the multilayer perceptron regressor on candle (`KIND: NeuralNetModel`);
//! - [`model`]: the [`Model`] trait (fit, predict, params, explanations, artifacts), the forest
//!   model behind `KIND: RandomForestModel`, and [`load_model`];
//! - [`explainers`]: feature importances and exact or model-agnostic Shapley contributions;
//! - [`artifact`]: the portable, validated byte format of fitted models.
//!
//! ```
//! use velo_models::{Model as _, ModelConfig};
//! use velo_core::schemas::Schema;
//!
//! let schema: Schema = serde_yaml::from_str("columns: [{name: x, type: float64}]")?;
//! let model = ModelConfig::default().build(&schema);
//! assert_eq!(model.kind(), "RandomForestModel");
//! # Ok::<(), serde_yaml::Error>(())
//! ```
//!
//! **Layer:** depends on velo-core (schemas, metrics) and on candle for the neural network;
//! velo-jobs and the CLI use it, velo-io does not (it never compiles candle).
//! **Invariant:** as in core, no file, environment variable, process or async runtime: models
//! are saved to and loaded from bytes ([`artifact::Artifact`]); velo-io decides where the bytes
//! live.
#![deny(clippy::disallowed_methods)]

pub mod explainers;
#[cfg(test)]
mod test_support;

pub mod artifact;
pub mod baselines;
pub mod boosting;
pub mod config;
pub mod features;
pub mod forest;
pub mod leakage;
pub mod matrix;
pub mod model;
pub mod neural;
pub mod onnx;
pub mod scenarios;
pub mod tree;

pub use boosting::{BoostingModel, GradientBoostingModel};
pub use config::{
    CategoricalEncoding, FeaturesConfig, MaxFeatures, ModelConfig, RandomForestModel,
};
pub use matrix::FeatureMatrix;
pub use model::{FeatureImportances, ForestModel, Model, Params, SampleExplanations, load_model};
pub use neural::{NeuralModel, NeuralNetModel};
pub use tree::{Node, Tree};

/// Errors raised while fitting, predicting with, explaining or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model was used before it was fitted.
    #[error("the model is not fitted yet")]
    NotFitted,
    /// Inputs and targets (or two inputs) disagree on their number of rows.
    #[error("inputs have {inputs} rows but targets have {targets}")]
    RowMismatch {
        /// Rows of the inputs.
        inputs: usize,
        /// Rows of the targets.
        targets: usize,
    },
    /// There is nothing to learn from.
    #[error("cannot fit a model on {rows} rows")]
    TooFewRows {
        /// Rows given.
        rows: usize,
    },
    /// A target is NaN or infinite.
    #[error("target at row {row} is {value}, expected a finite number")]
    NonFiniteTarget {
        /// Row position.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A parameter has a value the model cannot use.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter {
        /// The parameter.
        name: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Inputs do not have what the fitted pipeline needs.
    #[error("invalid inputs: {message}")]
    Inputs {
        /// What is wrong: the column and what was expected.
        message: String,
    },
    /// The inputs (nearly) determine the target and the leakage check was told to fail.
    #[error(
        "the inputs leak the target (drop the columns, or set the leakage action to `warn`):\n{findings}"
    )]
    Leakage {
        /// The findings, one per line.
        findings: String,
    },
    /// The numeric backend (candle) failed while training or predicting.
    #[error("numeric computation failed")]
    Compute(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Training diverged: the validation loss stopped being a finite number.
    #[error("the validation loss diverged at epoch {epoch}; lower the learning rate")]
    Diverged {
        /// The epoch whose loss was not finite.
        epoch: usize,
    },
    /// A saved model is damaged, truncated, foreign or inconsistent.
    #[error("invalid model artifact: {message}")]
    Artifact {
        /// What is wrong.
        message: String,
    },
}
