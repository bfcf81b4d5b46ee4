//! A multilayer perceptron regressor on candle (`KIND: NeuralNetModel`).
//!
//! Inputs go through the feature pipeline (standardised numericals, one-hot categoricals by
//! default), targets are standardised for training and restored on prediction. Training is
//! mini-batch AdamW on the mean squared error, with early stopping on a validation tail (the
//! last rows of the training data, never shuffled into training, as time-ordered data needs);
//! the weights of the best validation epoch are kept.
//!
//! # Determinism
//! Everything random comes from one ChaCha8 generator seeded by `seed`: the initial weights
//! (uniform in ±1/√fan_in, as PyTorch's `Linear`), the order of the rows in each epoch and the
//! dropout masks. candle's CPU matrix products split work between threads by output blocks and
//! sum each dot product in a fixed order, so a seed gives the same bits on every run (a test
//! checks it).
//!
//! # Explanations
//! Global importances are permutation importances (decrease of R²) measured on the validation
//! tail when training ends, and kept with the model. Per-sample contributions are sampling
//! Shapley values ([`crate::explainers::sampling_shap`]) against a background sample of the
//! training rows kept in the artifact; they are additive to machine precision.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use arrow::record_batch::RecordBatch;

use super::{
    FeatureImportances, FeatureMatrix, FeaturesConfig, Model, ModelError, Params,
    SampleExplanations,
    artifact::{Artifact, Tensor as ArtifactTensor, TensorData},
    config::Scaling,
    features::FeaturePipeline,
    model::{check_targets, params_of, with_params},
};
use crate::explainers::{permutation_importance, sampling_shap};
use velo_core::{metrics::MetricName, schemas::Schema};

/// The model's `KIND`.
const KIND: &str = "NeuralNetModel";

/// Rows of the training data kept as the background of sampling Shapley values.
const BACKGROUND_ROWS: usize = 50;

/// Feature orders sampled per explained row (an even number: orders come in antithetic pairs).
const SHAP_PERMUTATIONS: usize = 4;

/// Rows given to one forward pass when predicting.
const PREDICT_CHUNK: usize = 1 << 15;

/// Most validation rows permutation importances are measured on.
const IMPORTANCE_ROWS: usize = 2000;

/// A multilayer perceptron regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NeuralNetModel {
    /// Units of each hidden layer, from the input side.
    #[serde(default = "NeuralNetModel::default_hidden_layers")]
    pub hidden_layers: Vec<usize>,
    /// The activation after each hidden layer.
    #[serde(default)]
    pub activation: Activation,
    /// Probability of dropping a hidden unit while training, in [0, 1).
    #[serde(default)]
    pub dropout: f64,
    /// AdamW's learning rate.
    #[serde(default = "NeuralNetModel::default_learning_rate")]
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    #[serde(default = "NeuralNetModel::default_weight_decay")]
    pub weight_decay: f64,
    /// Rows per optimisation step.
    #[serde(default = "NeuralNetModel::default_batch_size")]
    pub batch_size: usize,
    /// Most passes over the training rows (at least 1).
    #[serde(
        default = "NeuralNetModel::default_epochs",
        deserialize_with = "crate::config::at_least::<_, 1>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub epochs: usize,
    /// Fraction of the rows, taken from the end, held out for early stopping; 0 trains on all
    /// rows for `epochs` epochs.
    #[serde(default = "NeuralNetModel::default_validation_fraction")]
    pub validation_fraction: f64,
    /// Epochs without improvement of the validation loss before training stops.
    #[serde(default = "NeuralNetModel::default_patience")]
    pub patience: usize,
    /// Smallest decrease of the validation loss (on standardised targets) that counts as an
    /// improvement.
    #[serde(default)]
    pub min_delta: f64,
    /// Random seed: the same seed gives the same network.
    #[serde(default = "NeuralNetModel::default_seed")]
    pub seed: u64,
    /// Where the network trains and predicts.
    #[serde(default)]
    pub device: ComputeDevice,
    /// The feature pipeline in front of the network (numericals standardised by default).
    #[serde(default = "NeuralNetModel::default_features")]
    pub features: FeaturesConfig,
}

impl NeuralNetModel {
    fn default_hidden_layers() -> Vec<usize> {
        vec![64, 64]
    }
    fn default_learning_rate() -> f64 {
        1e-3
    }
    fn default_weight_decay() -> f64 {
        1e-4
    }
    fn default_batch_size() -> usize {
        128
    }
    fn default_epochs() -> usize {
        200
    }
    fn default_validation_fraction() -> f64 {
        0.1
    }
    fn default_patience() -> usize {
        10
    }
    fn default_seed() -> u64 {
        42
    }
    fn default_features() -> FeaturesConfig {
        FeaturesConfig {
            scaling: Scaling::Standard,
            ..FeaturesConfig::default()
        }
    }

    /// Checks the values the network cannot train with.
    fn check(&self) -> Result<(), ModelError> {
        let invalid = |name: &str, message: &str| {
            Err(ModelError::InvalidParameter {
                name: name.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.hidden_layers.contains(&0) {
            return invalid("hidden_layers", "every layer needs at least one unit");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("dropout", "must be in [0, 1)");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("learning_rate", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid("weight_decay", "must be zero or positive");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be at least 1");
        }
        if self.epochs == 0 {
            return invalid("epochs", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return invalid("validation_fraction", "must be in [0, 1)");
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return invalid("min_delta", "must be zero or positive");
        }
        Ok(())
    }
}

impl Default for NeuralNetModel {
    fn default() -> Self {
        Self {
            hidden_layers: Self::default_hidden_layers(),
            activation: Activation::default(),
            dropout: 0.0,
            learning_rate: Self::default_learning_rate(),
            weight_decay: Self::default_weight_decay(),
            batch_size: Self::default_batch_size(),
            epochs: Self::default_epochs(),
            validation_fraction: Self::default_validation_fraction(),
            patience: Self::default_patience(),
            min_delta: 0.0,
            seed: Self::default_seed(),
            device: ComputeDevice::default(),
            features: Self::default_features(),
        }
    }
}

/// The activation of the hidden layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// The Gaussian error linear unit (erf form).
    Gelu,
    /// The hyperbolic tangent.
    Tanh,
    /// `x * sigmoid(x)`.
    Silu,
}

/// Where the network computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ComputeDevice {
    /// The CPU (deterministic for a seed).
    #[default]
    Cpu,
    /// The first CUDA GPU; needs velo built with the `cuda` feature.
    Cuda,
}

impl ComputeDevice {
    fn device(self) -> Result<Device, ModelError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => Device::new_cuda(0).map_err(|e| ModelError::InvalidParameter {
                name: "device".to_owned(),
                message: format!("no CUDA device ({e}); velo needs its `cuda` feature for GPUs"),
            }),
        }
    }
}

fn compute(error: candle_core::Error) -> ModelError {
    ModelError::Compute(Box::new(error))
}

/// The learned weights: one `(weight [in, out], bias [out])` pair per layer.
#[derive(Debug, Clone)]
struct Layers {
    weights: Vec<(Vec<f32>, Vec<f32>)>,
    /// Widths from the input to the output (1).
    widths: Vec<usize>,
}

/// What a fitted network keeps besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fitted {
    target_mean: f64,
    target_std: f64,
    /// Epochs run, and the epoch (from 1) whose weights were kept.
    epochs_run: usize,
    best_epoch: usize,
    /// Validation loss (MSE on standardised targets) per epoch; empty without validation.
    validation_losses: Vec<f64>,
    /// Permutation importance (decrease of R²) of each encoded feature.
    importances: Vec<f64>,
}

/// A fitted or unfitted multilayer perceptron on a feature pipeline.
#[derive(Debug, Clone)]
pub struct NeuralModel {
    config: NeuralNetModel,
    schema: Schema,
    fitted: Option<FittedNet>,
}

#[derive(Debug, Clone)]
struct FittedNet {
    pipeline: FeaturePipeline,
    layers: Layers,
    state: Fitted,
    /// Background rows, row-major, for sampling Shapley values.
    background: Vec<f32>,
}

impl NeuralModel {
    /// An unfitted network for inputs described by `schema`.
    pub fn new(config: NeuralNetModel, schema: Schema) -> Self {
        Self {
            config,
            schema,
            fitted: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NeuralNetModel {
        &self.config
    }

    /// Epochs run by the last fit and the epoch whose weights were kept (from 1).
    pub fn epochs(&self) -> Option<(usize, usize)> {
        self.fitted
            .as_ref()
            .map(|fitted| (fitted.state.epochs_run, fitted.state.best_epoch))
    }

    /// The validation loss of every epoch of the last fit (mean squared error on standardised
    /// targets); empty when no rows were held out.
    pub fn validation_losses(&self) -> &[f64] {
        self.fitted
            .as_ref()
            .map_or(&[], |fitted| &fitted.state.validation_losses)
    }

    fn require_fitted(&self) -> Result<&FittedNet, ModelError> {
        self.fitted.as_ref().ok_or(ModelError::NotFitted)
    }

    pub(crate) fn from_artifact(artifact: &Artifact) -> Result<Self, ModelError> {
        let config: NeuralNetModel = artifact.section("params")?;
        let schema: Schema = artifact.section("inputs_schema")?;
        let pipeline: FeaturePipeline = artifact.section("pipeline")?;
        pipeline.validate()?;
        let state: Fitted = artifact.section("training")?;
        let bad = |message: String| ModelError::Artifact { message };
        if config.hidden_layers.contains(&0) {
            return Err(bad("a hidden layer has no unit".to_owned()));
        }
        if !(state.target_mean.is_finite() && state.target_std.is_finite())
            || state.target_std <= 0.0
        {
            return Err(bad(
                "the target scaling is not finite and positive".to_owned()
            ));
        }
        let n_features = pipeline.n_features();
        if state.importances.len() != n_features {
            return Err(bad(format!(
                "{} importances for {n_features} features",
                state.importances.len()
            )));
        }
        let widths: Vec<usize> = std::iter::once(n_features)
            .chain(config.hidden_layers.iter().copied())
            .chain(std::iter::once(1))
            .collect();
        let mut weights = Vec::with_capacity(widths.len() - 1);
        for (layer, pair) in widths.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let weight = read_tensor(
                artifact,
                &format!("layer{layer}.weight"),
                &[fan_in, fan_out],
            )?;
            let bias = read_tensor(artifact, &format!("layer{layer}.bias"), &[fan_out])?;
            weights.push((weight, bias));
        }
        let background_tensor = artifact
            .tensors
            .get("background")
            .ok_or_else(|| bad("tensor `background` is missing".to_owned()))?;
        let rows = background_tensor.shape.first().copied().unwrap_or(0);
        if rows == 0 {
            return Err(bad("the background sample has no rows".to_owned()));
        }
        let background = read_tensor(artifact, "background", &[rows, n_features])?;
        let extra = artifact
            .tensors
            .keys()
            .filter(|name| {
                *name != "background"
                    && !(0..widths.len() - 1).any(|layer| {
                        **name == format!("layer{layer}.weight")
                            || **name == format!("layer{layer}.bias")
                    })
            })
            .cloned()
            .collect::<Vec<_>>();
        if !extra.is_empty() {
            return Err(bad(format!(
                "tensors {} do not belong to a network of {} layers",
                extra.join(", "),
                widths.len() - 1
            )));
        }
        Ok(Self {
            config,
            schema,
            fitted: Some(FittedNet {
                pipeline,
                layers: Layers { weights, widths },
                state,
                background,
            }),
        })
    }
}

/// The `f32` tensor `name`, which must have exactly `shape` and finite values.
fn read_tensor(artifact: &Artifact, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
    let bad = |message: String| ModelError::Artifact { message };
    let tensor = artifact
        .tensors
        .get(name)
        .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
    if tensor.shape != shape {
        return Err(bad(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            tensor.shape
        )));
    }
    let TensorData::F32(values) = &tensor.data else {
        return Err(bad(format!("tensor `{name}` is not f32")));
    };
    let expected: usize = shape.iter().product();
    if values.len() != expected {
        return Err(bad(format!(
            "tensor `{name}` has {} values for shape {shape:?}",
            values.len()
        )));
    }
    if values.iter().any(|value| !value.is_finite()) {
        return Err(bad(format!("tensor `{name}` holds a non-finite value")));
    }
    Ok(values.clone())
}

/// The network as candle variables, for training.
struct Net {
    vars: Vec<(Var, Var)>,
    activation: Activation,
}

impl Net {
    fn new(layers: &Layers, activation: Activation, device: &Device) -> candle_core::Result<Self> {
        let mut vars = Vec::with_capacity(layers.weights.len());
        for ((weight, bias), pair) in layers.weights.iter().zip(layers.widths.windows(2)) {
            let w = Tensor::from_slice(weight, (pair[0], pair[1]), device)?;
            let b = Tensor::from_slice(bias, pair[1], device)?;
            vars.push((Var::from_tensor(&w)?, Var::from_tensor(&b)?));
        }
        Ok(Self { vars, activation })
    }

    fn all_vars(&self) -> Vec<Var> {
        self.vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// The forward pass; `masks` holds one dropout mask per hidden layer when training.
    fn forward(&self, x: &Tensor, masks: Option<&[Tensor]>) -> candle_core::Result<Tensor> {
        let last = self.vars.len() - 1;
        let mut h = x.clone();
        for (layer, (w, b)) in self.vars.iter().enumerate() {
            h = h.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            if layer < last {
                h = activate(&h, self.activation)?;
                if let Some(mask) = masks.and_then(|masks| masks.get(layer)) {
                    h = h.mul(mask)?;
                }
            }
        }
        h.squeeze(1)
    }

    fn snapshot(&self) -> candle_core::Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.vars
            .iter()
            .map(|(w, b)| {
                Ok((
                    w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                    b.as_tensor().to_vec1::<f32>()?,
                ))
            })
            .collect()
    }
}

fn activate(h: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::Relu => h.relu(),
        Activation::Gelu => h.gelu_erf(),
        Activation::Tanh => h.tanh(),
        Activation::Silu => h.silu(),
    }
}

/// Forward pass of fitted weights over row-major rows, in chunks; standardised outputs.
fn forward_rows(
    layers: &Layers,
    activation: Activation,
    rows: &[f32],
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let width = layers.widths[0].max(1);
    let net = Net::new(layers, activation, device).map_err(compute)?;
    let mut out = Vec::with_capacity(rows.len() / width);
    for chunk in rows.chunks(PREDICT_CHUNK * width) {
        let x = Tensor::from_slice(chunk, (chunk.len() / width, width), device).map_err(compute)?;
        let y = net.forward(&x, None).map_err(compute)?;
        out.extend(y.to_vec1::<f32>().map_err(compute)?);
    }
    Ok(out)
}

/// Row-major copy of `x`'s rows `rows`.
fn gather(x: &[f32], width: usize, rows: &[usize], out: &mut Vec<f32>) {
    out.clear();
    for &row in rows {
        out.extend_from_slice(&x[row * width..(row + 1) * width]);
    }
}

fn mse(predictions: &[f32], targets: &[f32]) -> f64 {
    let sum: f64 = predictions
        .iter()
        .zip(targets)
        .map(|(p, t)| {
            let d = f64::from(*p) - f64::from(*t);
            d * d
        })
        .sum();
    sum / targets.len().max(1) as f64
}

fn init_layers(widths: &[usize], rng: &mut ChaCha8Rng) -> Layers {
    let weights = widths
        .windows(2)
        .map(|pair| {
            let bound = 1.0 / (pair[0].max(1) as f32).sqrt();
            let weight = (0..pair[0] * pair[1])
                .map(|_| rng.random_range(-bound..=bound))
                .collect();
            let bias = (0..pair[1])
                .map(|_| rng.random_range(-bound..=bound))
                .collect();
            (weight, bias)
        })
        .collect();
    Layers {
        weights,
        widths: widths.to_vec(),
    }
}

/// Trains on row-major standardised rows; returns the best weights and the training record.
fn train(
    config: &NeuralNetModel,
    x: &[f32],
    y: &[f32],
    width: usize,
    device: &Device,
) -> Result<(Layers, usize, usize, Vec<f64>), ModelError> {
    let n = y.len();
    let n_validation = ((n as f64) * config.validation_fraction).floor() as usize;
    let n_validation = if n - n_validation < 1 {
        0
    } else {
        n_validation
    };
    let n_train = n - n_validation;
    let widths: Vec<usize> = std::iter::once(width)
        .chain(config.hidden_layers.iter().copied())
        .chain(std::iter::once(1))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let initial = init_layers(&widths, &mut rng);
    let net = Net::new(&initial, config.activation, device).map_err(compute)?;
    let mut optimizer = AdamW::new(
        net.all_vars(),
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        },
    )
    .map_err(compute)?;

    let validation_x = &x[n_train * width..];
    let validation_y = &y[n_train..];
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut batch_x = Vec::with_capacity(config.batch_size * width);
    let mut batch_y = Vec::with_capacity(config.batch_size);
    let keep = 1.0 - config.dropout;
    let mut best = (f64::INFINITY, 0_usize, initial.weights.clone());
    let mut losses = Vec::new();
    let mut since_best = 0;
    let mut epochs_run = 0;
    for epoch in 1..=config.epochs {
        epochs_run = epoch;
        order.shuffle(&mut rng);
        for rows in order.chunks(config.batch_size) {
            gather(x, width, rows, &mut batch_x);
            batch_y.clear();
            batch_y.extend(rows.iter().map(|&row| y[row]));
            let inputs =
                Tensor::from_slice(&batch_x, (rows.len(), width), device).map_err(compute)?;
            let targets = Tensor::from_slice(&batch_y, rows.len(), device).map_err(compute)?;
            let masks = if config.dropout > 0.0 {
                let masks = config
                    .hidden_layers
                    .iter()
                    .map(|&units| {
                        let values: Vec<f32> = (0..rows.len() * units)
                            .map(|_| {
                                if rng.random::<f64>() < keep {
                                    (1.0 / keep) as f32
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        Tensor::from_vec(values, (rows.len(), units), device)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()
                    .map_err(compute)?;
                Some(masks)
            } else {
                None
            };
            let predictions = net.forward(&inputs, masks.as_deref()).map_err(compute)?;
            let loss = candle_nn::loss::mse(&predictions, &targets).map_err(compute)?;
            optimizer.backward_step(&loss).map_err(compute)?;
        }
        if n_validation == 0 {
            continue;
        }
        let current = Layers {
            weights: net.snapshot().map_err(compute)?,
            widths: widths.clone(),
        };
        let predictions = forward_rows(&current, config.activation, validation_x, device)?;
        let loss = mse(&predictions, validation_y);
        if !loss.is_finite() {
            return Err(ModelError::Diverged { epoch });
        }
        losses.push(loss);
        if loss < best.0 - config.min_delta {
            best = (loss, epoch, current.weights);
            since_best = 0;
        } else {
            since_best += 1;
            if since_best > config.patience {
                break;
            }
        }
    }
    if n_validation == 0 {
        best = (f64::NAN, epochs_run, net.snapshot().map_err(compute)?);
    }
    let (_, best_epoch, weights) = best;
    Ok((Layers { weights, widths }, epochs_run, best_epoch, losses))
}

impl Model for NeuralModel {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn inputs_schema(&self) -> &Schema {
        &self.schema
    }

    fn params(&self) -> Params {
        params_of(&self.config)
    }

    fn set_params(&mut self, params: &Params) -> Result<(), ModelError> {
        let config: NeuralNetModel = with_params(&self.config, params)?;
        config.check()?;
        self.config = config;
        self.fitted = None;
        Ok(())
    }

    fn fit(&mut self, inputs: &RecordBatch, targets: &[f64]) -> Result<(), ModelError> {
        self.config.check()?;
        check_targets(inputs.num_rows(), targets, 2)?;
        let device = self.config.device.device()?;
        let pipeline = FeaturePipeline::fit(&self.schema, &self.config.features, inputs)?;
        let matrix = pipeline.transform(inputs)?;
        matrix.check_finite()?;
        let width = matrix.n_features();
        let rows = matrix.to_row_major();
        let mean = targets.iter().sum::<f64>() / targets.len() as f64;
        let variance =
            targets.iter().map(|t| (t - mean) * (t - mean)).sum::<f64>() / targets.len() as f64;
        let std = if variance > 0.0 { variance.sqrt() } else { 1.0 };
        let scaled: Vec<f32> = targets.iter().map(|t| ((t - mean) / std) as f32).collect();
        let (layers, epochs_run, best_epoch, validation_losses) =
            train(&self.config, &rows, &scaled, width, &device)?;

        // Background: evenly spaced training rows.
        let n = targets.len();
        let step = n.div_ceil(BACKGROUND_ROWS).max(1);
        let picked: Vec<usize> = (0..n).step_by(step).collect();
        let mut background = Vec::new();
        gather(&rows, width, &picked, &mut background);

        let mut fitted = FittedNet {
            pipeline,
            layers,
            state: Fitted {
                target_mean: mean,
                target_std: std,
                epochs_run,
                best_epoch,
                validation_losses,
                importances: vec![0.0; width],
            },
            background,
        };
        // Importances on the validation tail (or the last rows when none was held out).
        let n_validation = ((n as f64) * self.config.validation_fraction).floor() as usize;
        let tail = n_validation.clamp(2.min(n), IMPORTANCE_ROWS.min(n));
        let positions: Vec<usize> = (n - tail..n).collect();
        let sample = matrix.select_rows(&positions);
        let predict = |x: &FeatureMatrix| predict_matrix(&fitted, self.config.activation, x);
        let importances = permutation_importance(
            &predict,
            &sample,
            &targets[n - tail..],
            MetricName::R2Score,
            3,
            self.config.seed,
        )?;
        fitted.state.importances = importances.mean;
        self.fitted = Some(fitted);
        Ok(())
    }

    fn predict(&self, inputs: &RecordBatch) -> Result<Vec<f64>, ModelError> {
        let fitted = self.require_fitted()?;
        crate::model::predict_in_chunks(inputs, |chunk| {
            predict_matrix(
                fitted,
                self.config.activation,
                &fitted.pipeline.transform(chunk)?,
            )
        })
    }

    fn explain_model(&self) -> Result<FeatureImportances, ModelError> {
        let fitted = self.require_fitted()?;
        Ok(FeatureImportances {
            features: fitted.pipeline.feature_names().to_vec(),
            importances: fitted.state.importances.clone(),
        })
    }

    fn explain_samples(&self, inputs: &RecordBatch) -> Result<SampleExplanations, ModelError> {
        let fitted = self.require_fitted()?;
        let matrix = fitted.pipeline.transform(inputs)?;
        let width = matrix.n_features();
        let names = fitted.pipeline.feature_names().to_vec();
        let columns = (0..width)
            .map(|feature| {
                fitted
                    .background
                    .iter()
                    .skip(feature)
                    .step_by(width.max(1))
                    .copied()
                    .collect()
            })
            .collect();
        let background = FeatureMatrix::from_columns(names, columns).map_err(|message| {
            ModelError::Artifact {
                message: format!("background sample: {message}"),
            }
        })?;
        let predict = |x: &FeatureMatrix| predict_matrix(fitted, self.config.activation, x);
        let per_feature = sampling_shap(
            &predict,
            &matrix,
            &background,
            SHAP_PERMUTATIONS,
            self.config.seed,
        )?;
        let per_column = per_feature.aggregate(&fitted.pipeline.groups())?;
        Ok(SampleExplanations {
            per_feature,
            per_column,
        })
    }

    fn to_onnx(&self, options: &crate::onnx::Options) -> Result<Vec<u8>, ModelError> {
        // A network has no tree ensemble: the ml opset does not matter.
        let _ = options;
        let fitted = self.require_fitted()?;
        let activation = match self.config.activation {
            Activation::Relu => crate::onnx::Activation::Relu,
            Activation::Tanh => crate::onnx::Activation::Tanh,
            Activation::Silu => crate::onnx::Activation::Silu,
            Activation::Gelu => crate::onnx::Activation::Gelu,
        };
        crate::onnx::network(
            &fitted.pipeline,
            &self.schema,
            &fitted.layers.weights,
            activation,
            (fitted.state.target_mean, fitted.state.target_std),
        )
    }

    fn structure(&self) -> std::collections::BTreeMap<String, u64> {
        let Some(fitted) = &self.fitted else {
            return std::collections::BTreeMap::new();
        };
        let parameters: usize = fitted
            .layers
            .weights
            .iter()
            .map(|(weights, biases)| weights.len() + biases.len())
            .sum();
        std::collections::BTreeMap::from([
            ("layers".to_owned(), fitted.layers.weights.len() as u64),
            ("parameters".to_owned(), parameters as u64),
            (
                "inputs".to_owned(),
                fitted.layers.widths.first().copied().unwrap_or(0) as u64,
            ),
        ])
    }

    fn to_artifact(&self) -> Result<Artifact, ModelError> {
        let fitted = self.require_fitted()?;
        let mut artifact = Artifact::new(KIND);
        artifact.put_section("params", &self.config)?;
        artifact.put_section("inputs_schema", &self.schema)?;
        artifact.put_section("pipeline", &fitted.pipeline)?;
        artifact.put_section("training", &fitted.state)?;
        for (layer, ((weight, bias), pair)) in fitted
            .layers
            .weights
            .iter()
            .zip(fitted.layers.widths.windows(2))
            .enumerate()
        {
            artifact.put_tensor(
                &format!("layer{layer}.weight"),
                ArtifactTensor {
                    shape: vec![pair[0], pair[1]],
                    data: TensorData::F32(weight.clone()),
                },
            )?;
            artifact.put_tensor(
                &format!("layer{layer}.bias"),
                ArtifactTensor::vector(TensorData::F32(bias.clone())),
            )?;
        }
        let width = fitted.layers.widths[0];
        artifact.put_tensor(
            "background",
            ArtifactTensor {
                shape: vec![fitted.background.len() / width.max(1), width],
                data: TensorData::F32(fitted.background.clone()),
            },
        )?;
        Ok(artifact)
    }
}

/// Predictions of a fitted network on an encoded matrix, in target units.
fn predict_matrix(
    fitted: &FittedNet,
    activation: Activation,
    matrix: &FeatureMatrix,
) -> Result<Vec<f64>, ModelError> {
    let width = fitted.layers.widths[0];
    if matrix.n_features() != width {
        return Err(ModelError::Inputs {
            message: format!(
                "{} encoded features, the network takes {width}",
                matrix.n_features()
            ),
        });
    }
    if matrix.n_rows() == 0 {
        return Ok(Vec::new());
    }
    let rows = matrix.to_row_major();
    // Loaded and fitted models predict on the CPU: a result never depends on the device.
    let outputs = forward_rows(&fitted.layers, activation, &rows, &Device::Cpu)?;
    let (mean, std) = (fitted.state.target_mean, fitted.state.target_std);
    Ok(outputs
        .into_iter()
        .map(|value| f64::from(value) * std + mean)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_standardise_and_validate() {
        let config = NeuralNetModel::default();
        assert_eq!(config.features.scaling, Scaling::Standard);
        assert!(config.check().is_ok());
        let parsed: NeuralNetModel = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, config);
        let parsed: NeuralNetModel =
            serde_json::from_str(r#"{"activation": "gelu", "hidden_layers": [8]}"#).unwrap();
        assert_eq!(parsed.activation, Activation::Gelu);
        assert!(serde_json::from_str::<NeuralNetModel>(r#"{"layers": [8]}"#).is_err());
        for bad in [
            NeuralNetModel {
                dropout: 1.0,
                ..NeuralNetModel::default()
            },
            NeuralNetModel {
                hidden_layers: vec![4, 0],
                ..NeuralNetModel::default()
            },
            NeuralNetModel {
                learning_rate: 0.0,
                ..NeuralNetModel::default()
            },
            NeuralNetModel {
                batch_size: 0,
                ..NeuralNetModel::default()
            },
        ] {
            assert!(matches!(
                bad.check(),
                Err(ModelError::InvalidParameter { .. })
            ));
        }
    }

    #[test]
    fn initial_weights_follow_the_seed() {
        let widths = [3, 4, 1];
        let a = init_layers(&widths, &mut ChaCha8Rng::seed_from_u64(1));
        let b = init_layers(&widths, &mut ChaCha8Rng::seed_from_u64(1));
        let c = init_layers(&widths, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(a.weights, b.weights);
        assert_ne!(a.weights, c.weights);
        assert_eq!(a.weights[0].0.len(), 12);
        let bound = 1.0 / 3.0_f32.sqrt();
        assert!(a.weights[0].0.iter().all(|w| w.abs() <= bound));
    }

    #[test]
    fn training_learns_a_smooth_function_and_stops_early() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 600;
        let x: Vec<f32> = (0..n * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<f32> = (0..n)
            .map(|i| (x[2 * i] * 2.0).sin() + x[2 * i + 1] * x[2 * i + 1])
            .collect();
        let mean = y.iter().sum::<f32>() / n as f32;
        let spread = mse(&vec![mean; n], &y).sqrt();
        let config = NeuralNetModel {
            hidden_layers: vec![32, 32],
            epochs: 400,
            learning_rate: 1e-2,
            batch_size: 64,
            patience: 5,
            ..NeuralNetModel::default()
        };
        let (layers, epochs_run, best_epoch, losses) =
            train(&config, &x, &y, 2, &Device::Cpu).unwrap();
        assert!(epochs_run < 400, "early stopping never triggered");
        assert_eq!(losses.len(), epochs_run);
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(
            losses[best_epoch - 1],
            best,
            "the best epoch's weights are kept"
        );
        // The kept weights reproduce the best validation loss.
        let tail = n - (n as f64 * 0.1).floor() as usize;
        let predictions =
            forward_rows(&layers, config.activation, &x[tail * 2..], &Device::Cpu).unwrap();
        assert_eq!(mse(&predictions, &y[tail..]), best);
        assert!(
            best.sqrt() < 0.2 * spread,
            "rmse {} vs spread {spread}",
            best.sqrt()
        );
    }
}
