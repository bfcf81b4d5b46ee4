//! Histogram gradient-boosted regression trees (`KIND: GradientBoostingModel`).
//!
//! The algorithm is that of scikit-learn's `HistGradientBoostingRegressor` and LightGBM, for
//! the squared error: features are binned once (every distinct value its own bin when a
//! feature has at most `max_bins` of them, quantiles otherwise); each iteration fits one tree
//! to the residuals, grown leaf-wise (best split first) up to `max_leaf_nodes` leaves from
//! per-bin histograms of residual sums and counts, with L2 regularisation of the leaf values;
//! each tree's values are shrunk by the learning rate. Early stopping watches the squared
//! error on validation rows spread evenly over the data (every k-th row, so that the most
//! recent rows of time-ordered data still train the trees) and keeps the trees up to the best
//! iteration.
//!
//! Trees are ordinary [`Tree`]s whose thresholds are real feature values (midpoints between
//! bins), so prediction walks the same flat layout as the forest (summing instead of
//! averaging) and explanations are exact TreeSHAP on the sum of trees plus the baseline.
//! A leaf's histograms are built in one pass over its rows (codes stored row by row), for the
//! smaller child of a split only (the larger child's are the parent's minus the smaller's);
//! large leaves are summed in chunks of a fixed size added up in order, so a seed gives the
//! same trees whatever the thread count. Training predictions are updated from each leaf's
//! rows, without walking the tree.

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    FeatureImportances, FeatureMatrix, FeaturesConfig, Model, ModelError, Node, Params,
    SampleExplanations, Tree,
    artifact::Artifact,
    features::FeaturePipeline,
    forest::predict::FlatForest,
    model::{check_targets, params_of, put_trees, trees_from_artifact, with_params},
};
use velo_core::schemas::Schema;

use crate::explainers::TreeExplainer;

/// The model's `KIND`.
const KIND: &str = "GradientBoostingModel";

/// Above this many rows, `early_stopping: auto` turns early stopping on (as scikit-learn).
const AUTO_EARLY_STOPPING_ROWS: usize = 10_000;

/// Histogram gradient boosting for regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GradientBoostingModel {
    /// Most boosting iterations (trees; at least 1).
    #[serde(
        default = "GradientBoostingModel::default_max_iter",
        deserialize_with = "crate::config::at_least::<_, 1>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub max_iter: usize,
    /// Shrinkage of each tree's values.
    #[serde(default = "GradientBoostingModel::default_learning_rate")]
    pub learning_rate: f64,
    /// Most leaves per tree.
    #[serde(default = "GradientBoostingModel::default_max_leaf_nodes")]
    pub max_leaf_nodes: usize,
    /// Most depth per tree; `null` limits trees by their leaves only.
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Fewest training rows in a leaf (at least 1).
    #[serde(
        default = "GradientBoostingModel::default_min_samples_leaf",
        deserialize_with = "crate::config::at_least::<_, 1>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub min_samples_leaf: usize,
    /// L2 regularisation of the leaf values.
    #[serde(default)]
    pub l2_regularization: f64,
    /// Most bins per feature (2 to 255).
    #[serde(default = "GradientBoostingModel::default_max_bins")]
    pub max_bins: usize,
    /// Stop when the validation error stops improving: `auto` (above 10,000 rows), `on`, `off`.
    #[serde(default)]
    pub early_stopping: EarlyStopping,
    /// Fraction of the rows held out for early stopping (every k-th row).
    #[serde(default = "GradientBoostingModel::default_validation_fraction")]
    pub validation_fraction: f64,
    /// Iterations without improvement before stopping.
    #[serde(default = "GradientBoostingModel::default_n_iter_no_change")]
    pub n_iter_no_change: usize,
    /// Smallest decrease of the validation mean squared error that counts as an improvement.
    #[serde(default = "GradientBoostingModel::default_tol")]
    pub tol: f64,
    /// The feature pipeline in front of the trees.
    #[serde(default)]
    pub features: FeaturesConfig,
}

impl GradientBoostingModel {
    fn default_max_iter() -> usize {
        1000
    }
    fn default_learning_rate() -> f64 {
        0.1
    }
    fn default_max_leaf_nodes() -> usize {
        31
    }
    fn default_min_samples_leaf() -> usize {
        20
    }
    fn default_max_bins() -> usize {
        255
    }
    fn default_validation_fraction() -> f64 {
        0.1
    }
    fn default_n_iter_no_change() -> usize {
        10
    }
    fn default_tol() -> f64 {
        1e-7
    }

    fn check(&self) -> Result<(), ModelError> {
        let invalid = |name: &str, message: &str| {
            Err(ModelError::InvalidParameter {
                name: name.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.max_iter == 0 {
            return invalid("max_iter", "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("learning_rate", "must be a positive number");
        }
        if self.max_leaf_nodes < 2 {
            return invalid("max_leaf_nodes", "must be at least 2");
        }
        if self.max_depth == Some(0) {
            return invalid("max_depth", "must be at least 1");
        }
        if self.min_samples_leaf == 0 {
            return invalid("min_samples_leaf", "must be at least 1");
        }
        if !(self.l2_regularization.is_finite() && self.l2_regularization >= 0.0) {
            return invalid("l2_regularization", "must be zero or positive");
        }
        if !(2..=255).contains(&self.max_bins) {
            return invalid("max_bins", "must be between 2 and 255");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return invalid("validation_fraction", "must be in (0, 1)");
        }
        if self.n_iter_no_change == 0 {
            return invalid("n_iter_no_change", "must be at least 1");
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return invalid("tol", "must be zero or positive");
        }
        Ok(())
    }
}

impl Default for GradientBoostingModel {
    fn default() -> Self {
        Self {
            max_iter: Self::default_max_iter(),
            learning_rate: Self::default_learning_rate(),
            max_leaf_nodes: Self::default_max_leaf_nodes(),
            max_depth: None,
            min_samples_leaf: Self::default_min_samples_leaf(),
            l2_regularization: 0.0,
            max_bins: Self::default_max_bins(),
            early_stopping: EarlyStopping::default(),
            validation_fraction: Self::default_validation_fraction(),
            n_iter_no_change: Self::default_n_iter_no_change(),
            tol: Self::default_tol(),
            features: FeaturesConfig::default(),
        }
    }
}

/// When boosting stops early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EarlyStopping {
    /// On above 10,000 rows.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Off: `max_iter` trees on every row.
    Off,
}

/// Binned features: per feature, the thresholds between bins and each row's bin.
struct Binned {
    /// Per feature, increasing thresholds: bin `b` holds values in `(t[b-1], t[b]]`.
    thresholds: Vec<Vec<f32>>,
    /// Per feature, one bin code per row.
    codes: Vec<Vec<u8>>,
    /// The same codes row by row (`row * features + feature`), so that a leaf's histograms
    /// are built in one pass over its rows.
    row_codes: Vec<u8>,
    /// Where each feature's bins start in a flat histogram; the last entry is its length.
    offsets: Vec<usize>,
}

impl Binned {
    fn new(x: &FeatureMatrix, max_bins: usize) -> Self {
        let (thresholds, codes) = x
            .columns()
            .par_iter()
            .map(|column| {
                let mut sorted = column.clone();
                sorted.sort_by(f32::total_cmp);
                let mut distinct = sorted.clone();
                distinct.dedup();
                let cuts: Vec<f32> = if distinct.len() <= max_bins {
                    distinct
                        .windows(2)
                        .map(|pair| midpoint(pair[0], pair[1]))
                        .collect()
                } else {
                    // Quantiles of the values (dense ranges get more bins), each cut between
                    // a value and the next distinct one.
                    let mut cuts: Vec<f32> = (1..max_bins)
                        .filter_map(|k| {
                            let value = sorted[k * (sorted.len() - 1) / max_bins];
                            let next = distinct.partition_point(|&d| d <= value);
                            distinct.get(next).map(|&above| midpoint(value, above))
                        })
                        .collect();
                    cuts.dedup();
                    cuts
                };
                let codes = column
                    .iter()
                    .map(|&value| cuts.partition_point(|&cut| cut < value) as u8)
                    .collect();
                (cuts, codes)
            })
            .unzip();
        let thresholds: Vec<Vec<f32>> = thresholds;
        let codes: Vec<Vec<u8>> = codes;
        let features = codes.len();
        let rows = codes.first().map_or(0, Vec::len);
        let mut row_codes = vec![0_u8; rows * features];
        for (feature, column) in codes.iter().enumerate() {
            for (row, code) in column.iter().enumerate() {
                row_codes[row * features + feature] = *code;
            }
        }
        let mut offsets = Vec::with_capacity(features + 1);
        let mut total = 0;
        for cuts in &thresholds {
            offsets.push(total);
            total += cuts.len() + 1;
        }
        offsets.push(total);
        Self {
            thresholds,
            codes,
            row_codes,
            offsets,
        }
    }
}

/// A threshold between two consecutive values: `a <= t < b`.
fn midpoint(a: f32, b: f32) -> f32 {
    let middle = a + (b - a) / 2.0;
    if middle < b { middle } else { a }
}

/// Residual sums and row counts per bin of one feature.
#[derive(Clone, Copy, Default)]
struct Bin {
    sum: f64,
    count: u32,
}

/// A leaf waiting to be split: its rows, residual sum, histograms and best split.
struct Candidate {
    node: usize,
    rows: Vec<u32>,
    depth: usize,
    sum: f64,
    /// The leaf's residual sums and counts per bin, every feature's bins one after the other
    /// (see [`Binned::offsets`]; empty once the leaf can no longer split).
    histograms: Vec<Bin>,
    split: Option<SplitChoice>,
}

#[derive(Clone, Copy)]
struct SplitChoice {
    feature: usize,
    /// Bins `0..=bin` go left.
    bin: usize,
    gain: f64,
}

/// Rows times features above which a leaf's histograms are built on several threads.
const PARALLEL_HISTOGRAM_WORK: usize = 1 << 18;

struct Grower<'a> {
    binned: &'a Binned,
    config: &'a GradientBoostingModel,
    /// Gradient of the squared error per training row: prediction minus target.
    residuals: &'a [f64],
}

impl Grower<'_> {
    fn leaf_score(&self, sum: f64, count: f64) -> f64 {
        sum * sum / (count + self.config.l2_regularization)
    }

    /// Whether a leaf of `rows` rows at `depth` may split at all.
    fn may_split(&self, rows: usize, depth: usize) -> bool {
        rows >= 2 * self.config.min_samples_leaf && self.config.max_depth.is_none_or(|d| depth < d)
    }

    /// The histograms of `rows`, in one pass over the rows (each row's codes are contiguous).
    /// Large leaves are cut into chunks of a fixed size, summed on several threads and added
    /// up in chunk order, so the result does not depend on the thread count.
    fn histograms(&self, rows: &[u32]) -> Vec<Bin> {
        let features = self.binned.codes.len();
        let width = self.binned.offsets[features];
        let offsets = &self.binned.offsets[..features];
        let sum_rows = |rows: &[u32]| {
            let mut bins = vec![Bin::default(); width];
            for &row in rows {
                let row = row as usize;
                let gradient = self.residuals[row];
                let codes = &self.binned.row_codes[row * features..(row + 1) * features];
                for (&offset, &code) in offsets.iter().zip(codes) {
                    let bin = &mut bins[offset + code as usize];
                    bin.sum += gradient;
                    bin.count += 1;
                }
            }
            bins
        };
        if rows.len() * features < PARALLEL_HISTOGRAM_WORK {
            return sum_rows(rows);
        }
        let chunk = (PARALLEL_HISTOGRAM_WORK / features.max(1)).max(1024);
        let parts: Vec<Vec<Bin>> = rows.par_chunks(chunk).map(sum_rows).collect();
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![Bin::default(); width]);
        for part in parts {
            for (bin, add) in total.iter_mut().zip(part) {
                bin.sum += add.sum;
                bin.count += add.count;
            }
        }
        total
    }

    /// The best split of a leaf from its histograms (ties go to the lowest feature).
    fn best_split(&self, histograms: &[Bin], rows: usize, sum: f64) -> Option<SplitChoice> {
        let parent = self.leaf_score(sum, rows as f64);
        let mut best: Option<SplitChoice> = None;
        for (feature, bounds) in self.binned.offsets.windows(2).enumerate() {
            let bins = &histograms[bounds[0]..bounds[1]];
            if let Some(found) = self.best_on_feature(feature, bins, rows, sum, parent)
                && best.is_none_or(|b| found.gain > b.gain)
            {
                best = Some(found);
            }
        }
        best
    }

    fn best_on_feature(
        &self,
        feature: usize,
        bins: &[Bin],
        rows: usize,
        sum: f64,
        parent: f64,
    ) -> Option<SplitChoice> {
        let n_bins = bins.len();
        if n_bins < 2 {
            return None;
        }
        let min_leaf = self.config.min_samples_leaf as u32;
        let total = rows as u32;
        let (mut left_sum, mut left_count) = (0.0, 0_u32);
        let mut best: Option<SplitChoice> = None;
        for (bin, counts) in bins.iter().enumerate().take(n_bins - 1) {
            left_sum += counts.sum;
            left_count += counts.count;
            let right_count = total - left_count;
            if left_count < min_leaf {
                continue;
            }
            if right_count < min_leaf {
                break;
            }
            if counts.count == 0 {
                continue;
            }
            let gain = self.leaf_score(left_sum, f64::from(left_count))
                + self.leaf_score(sum - left_sum, f64::from(right_count))
                - parent;
            if gain > 1e-12 && best.is_none_or(|b| gain > b.gain) {
                best = Some(SplitChoice { feature, bin, gain });
            }
        }
        best
    }

    /// A candidate for a leaf, with its histograms and best split when it may split.
    fn candidate(
        &self,
        node: usize,
        rows: Vec<u32>,
        depth: usize,
        sum: f64,
        histograms: Option<Vec<Bin>>,
    ) -> Candidate {
        let (histograms, split) = if self.may_split(rows.len(), depth) {
            let histograms = histograms.unwrap_or_else(|| self.histograms(&rows));
            let split = self.best_split(&histograms, rows.len(), sum);
            (histograms, split)
        } else {
            (Vec::new(), None)
        };
        Candidate {
            node,
            rows,
            depth,
            sum,
            histograms,
            split,
        }
    }
}

/// `parent - child`, bin by bin: the histograms of a leaf's other child.
fn subtract(parent: &[Bin], child: &[Bin]) -> Vec<Bin> {
    parent
        .iter()
        .zip(child)
        .map(|(p, c)| Bin {
            sum: p.sum - c.sum,
            count: p.count - c.count,
        })
        .collect()
}

/// A grown tree: its nodes, and each leaf's node with the training rows that reach it.
struct Grown {
    nodes: Vec<Node>,
    leaves: Vec<(usize, Vec<u32>)>,
}

/// Grows one tree on `rows` against `residuals`, leaf-wise; leaf values are shrunk by the
/// learning rate. A split leaf's histograms are built for its smaller child only, the larger
/// child's being the parent's minus the smaller's.
fn grow(binned: &Binned, residuals: &[f64], rows: &[u32], config: &GradientBoostingModel) -> Grown {
    let grower = Grower {
        binned,
        config,
        residuals,
    };
    // The leaf value minimising the regularised squared error, shrunk.
    let value = |sum: f64, count: usize| {
        -sum / (count as f64 + config.l2_regularization) * config.learning_rate
    };
    let sum: f64 = rows.iter().map(|&row| residuals[row as usize]).sum();
    let mut nodes = vec![Node::leaf(value(sum, rows.len()), rows.len() as f64)];
    let mut open = vec![grower.candidate(0, rows.to_vec(), 0, sum, None)];
    let mut leaves = 1;
    while leaves < config.max_leaf_nodes {
        // The open leaf whose split gains most (the first one on ties).
        let Some((position, _)) = open
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.split.map(|s| (i, s.gain)))
            .fold(None, |best: Option<(usize, f64)>, (i, gain)| match best {
                Some((_, g)) if g >= gain => best,
                _ => Some((i, gain)),
            })
        else {
            break;
        };
        let candidate = open.swap_remove(position);
        let Some(split) = candidate.split else {
            break;
        };
        let codes = &binned.codes[split.feature];
        // The histogram says how many rows go left: both sides are allocated once.
        let offset = binned.offsets[split.feature];
        let n_left = candidate.histograms[offset..=offset + split.bin]
            .iter()
            .map(|bin| bin.count as usize)
            .sum::<usize>();
        let mut left_rows = Vec::with_capacity(n_left);
        let mut right_rows = Vec::with_capacity(candidate.rows.len().saturating_sub(n_left));
        for &row in &candidate.rows {
            if (codes[row as usize] as usize) <= split.bin {
                left_rows.push(row);
            } else {
                right_rows.push(row);
            }
        }
        let left_sum: f64 = left_rows.iter().map(|&row| residuals[row as usize]).sum();
        let right_sum = candidate.sum - left_sum;
        let left_index = nodes.len();
        nodes.push(Node::leaf(
            value(left_sum, left_rows.len()),
            left_rows.len() as f64,
        ));
        nodes.push(Node::leaf(
            value(right_sum, right_rows.len()),
            right_rows.len() as f64,
        ));
        let parent = &mut nodes[candidate.node];
        parent.feature = split.feature as u32;
        parent.threshold = binned.thresholds[split.feature][split.bin];
        parent.left = left_index as u32;
        parent.right = left_index as u32 + 1;
        parent.gain = split.gain;
        leaves += 1;
        let depth = candidate.depth + 1;
        let more = leaves < config.max_leaf_nodes;
        let (left_histograms, right_histograms) = if more
            && grower.may_split(left_rows.len(), depth)
            && grower.may_split(right_rows.len(), depth)
        {
            if left_rows.len() <= right_rows.len() {
                let small = grower.histograms(&left_rows);
                let large = subtract(&candidate.histograms, &small);
                (Some(small), Some(large))
            } else {
                let small = grower.histograms(&right_rows);
                let large = subtract(&candidate.histograms, &small);
                (Some(large), Some(small))
            }
        } else {
            (None, None)
        };
        drop(candidate.histograms);
        for (node, rows, sum, histograms) in [
            (left_index, left_rows, left_sum, left_histograms),
            (left_index + 1, right_rows, right_sum, right_histograms),
        ] {
            open.push(if more {
                grower.candidate(node, rows, depth, sum, histograms)
            } else {
                Candidate {
                    node,
                    rows,
                    depth,
                    sum,
                    histograms: Vec::new(),
                    split: None,
                }
            });
        }
    }
    let leaves = open.into_iter().map(|c| (c.node, c.rows)).collect();
    Grown { nodes, leaves }
}

/// A fitted ensemble: a baseline plus the sum of its trees.
#[derive(Debug, Clone)]
struct Boosted {
    pipeline: FeaturePipeline,
    trees: Vec<Tree>,
    flat: FlatForest,
    state: BoostingState,
}

/// What a fitted ensemble keeps besides its trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BoostingState {
    baseline: f64,
    /// Iterations run before stopping; the ensemble keeps the best `trees.len()` of them.
    iterations_run: usize,
    /// Validation mean squared error after each iteration (empty without early stopping).
    validation_losses: Vec<f64>,
}

/// A gradient-boosted ensemble on a feature pipeline (`KIND: GradientBoostingModel`).
#[derive(Debug, Clone)]
pub struct BoostingModel {
    config: GradientBoostingModel,
    schema: Schema,
    fitted: Option<Boosted>,
}

impl BoostingModel {
    /// An unfitted ensemble for inputs described by `schema`.
    pub fn new(config: GradientBoostingModel, schema: Schema) -> Self {
        Self {
            config,
            schema,
            fitted: None,
        }
    }

    /// The trees kept by the last fit, and the iterations it ran.
    pub fn iterations(&self) -> Option<(usize, usize)> {
        self.fitted
            .as_ref()
            .map(|fitted| (fitted.trees.len(), fitted.state.iterations_run))
    }

    /// The validation mean squared error after each iteration of the last fit.
    pub fn validation_losses(&self) -> &[f64] {
        self.fitted
            .as_ref()
            .map_or(&[], |fitted| &fitted.state.validation_losses)
    }

    fn require_fitted(&self) -> Result<&Boosted, ModelError> {
        self.fitted.as_ref().ok_or(ModelError::NotFitted)
    }

    pub(crate) fn from_artifact(artifact: &Artifact) -> Result<Self, ModelError> {
        let config: GradientBoostingModel = artifact.section("params")?;
        let schema: Schema = artifact.section("inputs_schema")?;
        let pipeline: FeaturePipeline = artifact.section("pipeline")?;
        pipeline.validate()?;
        let state: BoostingState = artifact.section("boosting")?;
        if !state.baseline.is_finite() {
            return Err(ModelError::Artifact {
                message: "the baseline is not finite".to_owned(),
            });
        }
        let trees = trees_from_artifact(artifact, pipeline.n_features())?;
        let fitted = assemble(pipeline, trees, state)?;
        Ok(Self {
            config,
            schema,
            fitted: Some(fitted),
        })
    }
}

fn assemble(
    pipeline: FeaturePipeline,
    trees: Vec<Tree>,
    state: BoostingState,
) -> Result<Boosted, ModelError> {
    if trees.is_empty() {
        return Err(ModelError::Artifact {
            message: "an ensemble has no trees".to_owned(),
        });
    }
    let flat =
        FlatForest::new(&trees, pipeline.n_features()).ok_or_else(|| ModelError::Artifact {
            message: format!("the trees hold more than {} nodes", u32::MAX),
        })?;
    Ok(Boosted {
        pipeline,
        trees,
        flat,
        state,
    })
}

impl Boosted {
    fn predict_matrix(&self, x: &FeatureMatrix) -> Vec<f64> {
        self.flat
            .sum_columns(x.columns(), x.n_rows())
            .into_iter()
            .map(|sum| self.state.baseline + sum)
            .collect()
    }
}

impl Model for BoostingModel {
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
        let config: GradientBoostingModel = with_params(&self.config, params)?;
        config.check()?;
        self.config = config;
        self.fitted = None;
        Ok(())
    }

    fn fit(&mut self, inputs: &RecordBatch, targets: &[f64]) -> Result<(), ModelError> {
        let config = &self.config;
        config.check()?;
        check_targets(inputs.num_rows(), targets, 2)?;
        let n = targets.len();
        if u32::try_from(n).is_err() {
            return Err(ModelError::Inputs {
                message: format!("{n} rows, at most {} can be fitted", u32::MAX),
            });
        }
        let pipeline = FeaturePipeline::fit(&self.schema, &config.features, inputs)?;
        let x = pipeline.transform(inputs)?;
        x.check_finite()?;
        let stop_early = match config.early_stopping {
            EarlyStopping::On => true,
            EarlyStopping::Off => false,
            EarlyStopping::Auto => n > AUTO_EARLY_STOPPING_ROWS,
        };
        let n_validation = if stop_early {
            ((n as f64) * config.validation_fraction).floor() as usize
        } else {
            0
        };
        let n_validation = if n_validation == 0 || n_validation >= n {
            0
        } else {
            n_validation
        };
        // Validation rows are spread evenly over the data (every k-th row), so that the
        // trees still learn from the most recent rows of time-ordered data.
        let (train_rows, validation_rows): (Vec<usize>, Vec<usize>) = (0..n).partition(|&row| {
            n_validation == 0 || (row + 1) * n_validation / n == row * n_validation / n
        });
        let n_train = train_rows.len();
        let train = x.select_rows(&train_rows);
        let y_train: Vec<f64> = train_rows.iter().map(|&row| targets[row]).collect();
        let y_validation: Vec<f64> = validation_rows.iter().map(|&row| targets[row]).collect();
        let validation = x.select_rows(&validation_rows);
        // Validation rows laid out row by row once, for every iteration's tree to walk.
        let width = x.n_features();
        let validation_rows_major = validation.to_row_major();
        let binned = Binned::new(&train, config.max_bins);
        let baseline = y_train.iter().sum::<f64>() / n_train as f64;
        let mut predictions = vec![baseline; n_train];
        let mut validation_predictions = vec![baseline; validation_rows.len()];
        let rows: Vec<u32> = (0..n_train as u32).collect();
        let mut trees = Vec::new();
        let mut losses = Vec::new();
        let mut best = (f64::INFINITY, 0_usize);
        let mut iterations_run = 0;
        for iteration in 1..=config.max_iter {
            iterations_run = iteration;
            let residuals: Vec<f64> = y_train
                .iter()
                .zip(&predictions)
                .map(|(y, p)| p - y)
                .collect();
            let Grown { nodes, leaves } = grow(&binned, &residuals, &rows, config);
            // Every training row's leaf is known from the growth: the tree need not be walked.
            for (leaf, members) in &leaves {
                let value = nodes[*leaf].value;
                for &row in members {
                    predictions[row as usize] += value;
                }
            }
            let tree = Tree::new(nodes, x.n_features()).map_err(|message| ModelError::Inputs {
                message: format!("boosting grew an invalid tree: {message}"),
            })?;
            if !validation_rows.is_empty() {
                let mut loss = 0.0;
                for (offset, prediction) in validation_predictions.iter_mut().enumerate() {
                    let row = &validation_rows_major[offset * width..(offset + 1) * width];
                    *prediction += tree.predict_row(row);
                    let error = *prediction - y_validation[offset];
                    loss += error * error;
                }
                let loss = loss / validation_rows.len() as f64;
                losses.push(loss);
                trees.push(tree);
                if loss < best.0 - config.tol {
                    best = (loss, iteration);
                } else if iteration - best.1 >= config.n_iter_no_change {
                    break;
                }
            } else {
                trees.push(tree);
                best.1 = iteration;
            }
        }
        trees.truncate(best.1.max(1));
        let fitted = assemble(
            pipeline,
            trees,
            BoostingState {
                baseline,
                iterations_run,
                validation_losses: losses,
            },
        )?;
        self.fitted = Some(fitted);
        Ok(())
    }

    fn predict(&self, inputs: &RecordBatch) -> Result<Vec<f64>, ModelError> {
        let fitted = self.require_fitted()?;
        crate::model::predict_in_chunks(inputs, |chunk| {
            Ok(fitted.predict_matrix(&fitted.pipeline.transform(chunk)?))
        })
    }

    fn explain_model(&self) -> Result<FeatureImportances, ModelError> {
        let fitted = self.require_fitted()?;
        let width = fitted.pipeline.n_features();
        let mut gains = vec![0.0; width];
        for node in fitted.trees.iter().flat_map(Tree::nodes) {
            if !node.is_leaf() {
                gains[node.feature as usize] += node.gain;
            }
        }
        let total: f64 = gains.iter().sum();
        if total > 0.0 {
            for gain in &mut gains {
                *gain /= total;
            }
        }
        Ok(FeatureImportances {
            features: fitted.pipeline.feature_names().to_vec(),
            importances: gains,
        })
    }

    fn explain_samples(&self, inputs: &RecordBatch) -> Result<SampleExplanations, ModelError> {
        let fitted = self.require_fitted()?;
        let x = fitted.pipeline.transform(inputs)?;
        let n_trees = fitted.trees.len() as f64;
        // TreeSHAP explains the mean of the trees; the ensemble is their sum plus the baseline.
        let per_feature = TreeExplainer::new(&fitted.trees, x.n_features())?
            .shap_values(&x)?
            .scaled(n_trees, fitted.state.baseline);
        let per_column = per_feature.aggregate(&fitted.pipeline.groups())?;
        Ok(SampleExplanations {
            per_feature,
            per_column,
        })
    }

    fn to_onnx(&self, options: &crate::onnx::Options) -> Result<Vec<u8>, ModelError> {
        let fitted = self.require_fitted()?;
        crate::onnx::tree_ensemble(
            KIND,
            &fitted.pipeline,
            &self.schema,
            &fitted.trees,
            (
                &crate::onnx::Aggregate::Sum {
                    base: fitted.state.baseline,
                },
                options,
            ),
        )
    }

    fn structure(&self) -> std::collections::BTreeMap<String, u64> {
        self.fitted
            .as_ref()
            .map(|fitted| crate::model::tree_structure(&fitted.trees))
            .unwrap_or_default()
    }

    fn to_artifact(&self) -> Result<Artifact, ModelError> {
        let fitted = self.require_fitted()?;
        let mut artifact = Artifact::new(KIND);
        artifact.put_section("params", &self.config)?;
        artifact.put_section("inputs_schema", &self.schema)?;
        artifact.put_section("pipeline", &fitted.pipeline)?;
        artifact.put_section("boosting", &fitted.state)?;
        put_trees(&mut artifact, &fitted.trees)?;
        Ok(artifact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_give_every_distinct_value_its_own_bin_when_few() {
        let x = FeatureMatrix::from_columns(
            vec!["a".into(), "b".into()],
            vec![vec![3.0, 1.0, 2.0, 1.0], vec![0.0; 4]],
        )
        .unwrap();
        let binned = Binned::new(&x, 255);
        assert_eq!(binned.thresholds[0], vec![1.5, 2.5]);
        assert_eq!(binned.codes[0], vec![2, 0, 1, 0]);
        assert!(binned.thresholds[1].is_empty());
        // Many values: at most max_bins bins, codes consistent with the thresholds.
        let column: Vec<f32> = (0..1000).map(|i| (i * 7 % 1000) as f32).collect();
        let x = FeatureMatrix::from_columns(vec!["c".into()], vec![column.clone()]).unwrap();
        let binned = Binned::new(&x, 16);
        assert!(binned.thresholds[0].len() < 16);
        for (value, &code) in column.iter().zip(&binned.codes[0]) {
            let cuts = &binned.thresholds[0];
            let code = code as usize;
            assert!(code == 0 || cuts[code - 1] < *value);
            assert!(code == cuts.len() || *value <= cuts[code]);
        }
    }

    #[test]
    fn midpoints_separate_neighbours() {
        for (a, b) in [(1.0_f32, 2.0), (0.1, 0.100_000_01), (-3.0, 5.0)] {
            let m = midpoint(a, b);
            assert!(a <= m && m < b, "{a} {m} {b}");
        }
    }
}
