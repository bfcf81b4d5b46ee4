//! Models: configuration, the [`Model`] trait, the feature pipeline and the regressors.
//!
//! - [`artifact`]: the portable, validated on-disk format of fitted models;
//! - [`config`]: the `KIND`-tagged model configuration ([`ModelConfig`]);
//! - [`matrix`]: [`FeatureMatrix`], the encoded numeric features regressors train on;
//! - [`features`]: [`FeaturePipeline`](features::FeaturePipeline), from Arrow inputs to a
//!   feature matrix (categorical encoding, pass-through or standardisation), fitted with the model;
//! - [`tree`]: [`Tree`], the regression-tree structure shared by the forest, its predictor and
//!   the exact TreeSHAP explainer;
//! - [`forest`]: the random forest regressor;
//! - [`boosting`]: histogram gradient-boosted trees (`KIND: GradientBoostingModel`);
//! - [`neural`]: the multilayer perceptron regressor on candle (`KIND: NeuralNetModel`);
//! - [`model`]: the [`Model`] trait (fit, predict, params, explanations, artifacts), the forest
//!   model behind `KIND: RandomForestModel`, and [`load_model`].

pub mod artifact;
pub mod boosting;
pub mod config;
pub mod features;
pub mod forest;
pub mod leakage;
pub mod matrix;
pub mod model;
pub mod neural;
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
