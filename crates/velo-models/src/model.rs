//! The [`Model`] trait, and the random forest model behind `KIND: RandomForestModel`.

use std::{collections::BTreeMap, fmt};

use arrow::record_batch::RecordBatch;

use super::{
    ModelConfig, ModelError, RandomForestModel, Tree,
    artifact::{Artifact, Tensor, TensorData},
    features::FeaturePipeline,
    forest::RandomForest,
    tree::Node,
};
use crate::explainers::{Contributions, TreeExplainer};
use velo_core::schemas::Schema;

/// Model parameters by name, as JSON values (what tuning searches over).
pub type Params = BTreeMap<String, serde_json::Value>;

/// Global importances, one per encoded feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureImportances {
    /// Encoded feature names (`season_1`, `temp`, …).
    pub features: Vec<String>,
    /// Importances, in the same order; they sum to 1 for impurity importances.
    pub importances: Vec<f64>,
}

/// Per-sample contributions, per encoded feature and summed per original column.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleExplanations {
    /// One column per encoded feature.
    pub per_feature: Contributions,
    /// One column per original input column (one-hot parts summed back).
    pub per_column: Contributions,
}

/// A regression model: a feature pipeline and a regressor, fitted together.
///
/// Inputs are Arrow batches holding the input columns (validated against the inputs schema by
/// the caller: jobs do it); targets and predictions are `f64`. Embedders can implement this
/// trait for their own models and use them wherever velo takes a `Box<dyn Model>`.
pub trait Model: Send + Sync + fmt::Debug {
    /// The model's `KIND`.
    fn kind(&self) -> &'static str;

    /// The schema of the inputs the model was built for: what a caller validates inputs
    /// against before [`predict`](Self::predict) (a scoring server, a stream).
    fn inputs_schema(&self) -> &Schema;

    /// The current parameters.
    fn params(&self) -> Params;

    /// Changes parameters by name; the model must be fitted again afterwards.
    ///
    /// # Errors
    /// An unknown parameter or a value of the wrong type or range.
    fn set_params(&mut self, params: &Params) -> Result<(), ModelError>;

    /// Fits the model.
    ///
    /// # Errors
    /// Inputs the pipeline cannot use, mismatched rows, non-finite targets, invalid parameters.
    fn fit(&mut self, inputs: &RecordBatch, targets: &[f64]) -> Result<(), ModelError>;

    /// Predicts one value per input row.
    ///
    /// # Errors
    /// An unfitted model or inputs missing a column.
    fn predict(&self, inputs: &RecordBatch) -> Result<Vec<f64>, ModelError>;

    /// Global feature importances.
    ///
    /// # Errors
    /// An unfitted model.
    fn explain_model(&self) -> Result<FeatureImportances, ModelError>;

    /// Per-sample contributions whose sum plus the base value is the prediction.
    ///
    /// # Errors
    /// An unfitted model or inputs missing a column.
    fn explain_samples(&self, inputs: &RecordBatch) -> Result<SampleExplanations, ModelError>;

    /// The fitted model as a portable artifact.
    ///
    /// # Errors
    /// An unfitted model.
    fn to_artifact(&self) -> Result<Artifact, ModelError>;

    /// Counts describing the fitted model's architecture, by name (`trees`, `nodes`, `leaves`,
    /// `max_depth`; `layers`, `parameters`…), for diffs between versions; empty when unfitted
    /// or for a model that says nothing.
    fn structure(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }

    /// The fitted model and its feature pipeline as one ONNX graph (see [`crate::onnx`]).
    ///
    /// # Errors
    /// An unfitted model, a kind with no ONNX form, or inputs ONNX cannot take (dates).
    fn to_onnx(&self, options: &crate::onnx::Options) -> Result<Vec<u8>, ModelError> {
        let _ = options;
        Err(ModelError::Inputs {
            message: format!("cannot export to ONNX: {} has no ONNX form", self.kind()),
        })
    }
}

/// The counts of [`Model::structure`] for an ensemble of trees.
pub(crate) fn tree_structure(trees: &[crate::tree::Tree]) -> BTreeMap<String, u64> {
    let nodes: usize = trees.iter().map(|tree| tree.nodes().len()).sum();
    let leaves = trees
        .iter()
        .flat_map(crate::tree::Tree::nodes)
        .filter(|node| node.is_leaf())
        .count();
    let depth = trees
        .iter()
        .map(crate::tree::Tree::depth)
        .max()
        .unwrap_or(0);
    BTreeMap::from([
        ("trees".to_owned(), trees.len() as u64),
        ("nodes".to_owned(), nodes as u64),
        ("leaves".to_owned(), leaves as u64),
        ("max_depth".to_owned(), depth as u64),
    ])
}

/// Rows encoded at once when a model predicts: a larger batch is predicted slice by slice, so
/// that the encoded features never hold more than this many rows, whatever the batch's size.
pub const PREDICT_CHUNK_ROWS: usize = 65_536;

/// Predicts `inputs` with `predict` in zero-copy slices of at most [`PREDICT_CHUNK_ROWS`]
/// rows, in order.
pub(crate) fn predict_in_chunks(
    inputs: &RecordBatch,
    mut predict: impl FnMut(&RecordBatch) -> Result<Vec<f64>, ModelError>,
) -> Result<Vec<f64>, ModelError> {
    let rows = inputs.num_rows();
    if rows <= PREDICT_CHUNK_ROWS {
        return predict(inputs);
    }
    let mut predictions = Vec::with_capacity(rows);
    let mut start = 0;
    while start < rows {
        let length = PREDICT_CHUNK_ROWS.min(rows - start);
        predictions.extend(predict(&inputs.slice(start, length))?);
        start += length;
    }
    Ok(predictions)
}

impl ModelConfig {
    /// An unfitted model of this configuration for inputs described by `schema`.
    pub fn build(&self, schema: &Schema) -> Box<dyn Model> {
        match self {
            Self::RandomForestModel(config) => {
                Box::new(ForestModel::new(config.clone(), schema.clone()))
            }
            Self::GradientBoostingModel(config) => {
                Box::new(super::BoostingModel::new(config.clone(), schema.clone()))
            }
            Self::NeuralNetModel(config) => {
                Box::new(super::NeuralModel::new(config.clone(), schema.clone()))
            }
        }
    }
}

/// Loads a fitted model from an artifact read by [`Artifact::from_bytes`], validating every
/// structure before use.
///
/// # Errors
/// An unknown `KIND` or an inconsistent artifact.
pub fn load_model(artifact: &Artifact) -> Result<Box<dyn Model>, ModelError> {
    match artifact.kind.as_str() {
        "RandomForestModel" => Ok(Box::new(ForestModel::from_artifact(artifact)?)),
        "GradientBoostingModel" => Ok(Box::new(super::BoostingModel::from_artifact(artifact)?)),
        "NeuralNetModel" => Ok(Box::new(super::NeuralModel::from_artifact(artifact)?)),
        other => Err(ModelError::Artifact {
            message: format!("unknown model kind `{other}`"),
        }),
    }
}

/// A random forest on a feature pipeline (`KIND: RandomForestModel`).
#[derive(Debug, Clone)]
pub struct ForestModel {
    config: RandomForestModel,
    schema: Schema,
    fitted: Option<(FeaturePipeline, RandomForest)>,
}

const KIND: &str = "RandomForestModel";

impl ForestModel {
    /// An unfitted forest for inputs described by `schema`.
    pub fn new(config: RandomForestModel, schema: Schema) -> Self {
        Self {
            config,
            schema,
            fitted: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RandomForestModel {
        &self.config
    }

    /// The fitted pipeline and forest.
    pub fn fitted(&self) -> Option<(&FeaturePipeline, &RandomForest)> {
        self.fitted
            .as_ref()
            .map(|(pipeline, forest)| (pipeline, forest))
    }

    fn require_fitted(&self) -> Result<(&FeaturePipeline, &RandomForest), ModelError> {
        self.fitted().ok_or(ModelError::NotFitted)
    }

    fn from_artifact(artifact: &Artifact) -> Result<Self, ModelError> {
        let config: RandomForestModel = artifact.section("params")?;
        let schema: Schema = artifact.section("inputs_schema")?;
        let pipeline: FeaturePipeline = artifact.section("pipeline")?;
        pipeline.validate()?;
        let n_features = pipeline.n_features();
        let trees = trees_from_artifact(artifact, n_features)?;
        let forest = RandomForest::from_trees(trees, n_features)?;
        Ok(Self {
            config,
            schema,
            fitted: Some((pipeline, forest)),
        })
    }
}

impl Model for ForestModel {
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
        self.config = with_params(&self.config, params)?;
        self.fitted = None;
        Ok(())
    }

    fn fit(&mut self, inputs: &RecordBatch, targets: &[f64]) -> Result<(), ModelError> {
        check_targets(inputs.num_rows(), targets, 1)?;
        let pipeline = FeaturePipeline::fit(&self.schema, &self.config.features, inputs)?;
        let features = pipeline.transform(inputs)?;
        let forest = RandomForest::fit(&self.config, &features, targets)?;
        self.fitted = Some((pipeline, forest));
        Ok(())
    }

    fn predict(&self, inputs: &RecordBatch) -> Result<Vec<f64>, ModelError> {
        let (pipeline, forest) = self.require_fitted()?;
        predict_in_chunks(inputs, |chunk| {
            Ok(forest.predict(&pipeline.transform(chunk)?))
        })
    }

    fn explain_model(&self) -> Result<FeatureImportances, ModelError> {
        let (pipeline, forest) = self.require_fitted()?;
        Ok(FeatureImportances {
            features: pipeline.feature_names().to_vec(),
            importances: forest.feature_importances(),
        })
    }

    fn explain_samples(&self, inputs: &RecordBatch) -> Result<SampleExplanations, ModelError> {
        let (pipeline, forest) = self.require_fitted()?;
        let features = pipeline.transform(inputs)?;
        let per_feature =
            TreeExplainer::new(forest.trees(), forest.n_features())?.shap_values(&features)?;
        let per_column = per_feature.aggregate(&pipeline.groups())?;
        Ok(SampleExplanations {
            per_feature,
            per_column,
        })
    }

    fn to_onnx(&self, options: &crate::onnx::Options) -> Result<Vec<u8>, ModelError> {
        let (pipeline, forest) = self.require_fitted()?;
        crate::onnx::tree_ensemble(
            KIND,
            pipeline,
            &self.schema,
            forest.trees(),
            (&crate::onnx::Aggregate::Average, options),
        )
    }

    fn structure(&self) -> BTreeMap<String, u64> {
        self.fitted
            .as_ref()
            .map(|(_, forest)| tree_structure(forest.trees()))
            .unwrap_or_default()
    }

    fn to_artifact(&self) -> Result<Artifact, ModelError> {
        let (pipeline, forest) = self.require_fitted()?;
        let mut artifact = Artifact::new(KIND);
        artifact.put_section("params", &self.config)?;
        artifact.put_section("inputs_schema", &self.schema)?;
        artifact.put_section("pipeline", pipeline)?;
        put_trees(&mut artifact, forest.trees())?;
        Ok(artifact)
    }
}

/// Stores trees as node tensors: `tree_offsets` (u64, one more than trees) and one tensor per
/// node field, every tree's nodes one after the other.
pub(crate) fn put_trees(artifact: &mut Artifact, trees: &[Tree]) -> Result<(), ModelError> {
    let nodes: Vec<&Node> = trees.iter().flat_map(Tree::nodes).collect();
    let mut offsets = vec![0_u64];
    for tree in trees {
        offsets.push(offsets.last().copied().unwrap_or(0) + tree.nodes().len() as u64);
    }
    let tensors = [
        ("tree_offsets", TensorData::U64(offsets)),
        (
            "feature",
            TensorData::U32(nodes.iter().map(|n| n.feature).collect()),
        ),
        (
            "threshold",
            TensorData::F32(nodes.iter().map(|n| n.threshold).collect()),
        ),
        (
            "left",
            TensorData::U32(nodes.iter().map(|n| n.left).collect()),
        ),
        (
            "right",
            TensorData::U32(nodes.iter().map(|n| n.right).collect()),
        ),
        (
            "value",
            TensorData::F64(nodes.iter().map(|n| n.value).collect()),
        ),
        (
            "cover",
            TensorData::F64(nodes.iter().map(|n| n.cover).collect()),
        ),
        (
            "gain",
            TensorData::F64(nodes.iter().map(|n| n.gain).collect()),
        ),
    ];
    for (name, data) in tensors {
        artifact.put_tensor(name, Tensor::vector(data))?;
    }
    Ok(())
}

/// Reads back the trees [`put_trees`] stored, validating every node against `n_features`.
pub(crate) fn trees_from_artifact(
    artifact: &Artifact,
    n_features: usize,
) -> Result<Vec<Tree>, ModelError> {
    let offsets = artifact.u64s("tree_offsets")?;
    let feature = artifact.u32s("feature")?;
    let threshold = artifact.f32s("threshold")?;
    let left = artifact.u32s("left")?;
    let right = artifact.u32s("right")?;
    let value = artifact.f64s("value")?;
    let cover = artifact.f64s("cover")?;
    let gain = artifact.f64s("gain")?;
    let n_nodes = feature.len();
    let lengths = [
        threshold.len(),
        left.len(),
        right.len(),
        value.len(),
        cover.len(),
        gain.len(),
    ];
    if lengths.iter().any(|&len| len != n_nodes) {
        return Err(ModelError::Artifact {
            message: "node tensors differ in length".to_owned(),
        });
    }
    let mut trees = Vec::with_capacity(offsets.len().saturating_sub(1));
    for (index, window) in offsets.windows(2).enumerate() {
        let bad = || ModelError::Artifact {
            message: format!("tree {index} has invalid node offsets"),
        };
        let start = usize::try_from(window[0]).map_err(|_| bad())?;
        let end = usize::try_from(window[1]).map_err(|_| bad())?;
        if start >= end || end > n_nodes {
            return Err(bad());
        }
        let nodes = (start..end)
            .map(|i| Node {
                feature: feature[i],
                threshold: threshold[i],
                left: left[i],
                right: right[i],
                value: value[i],
                cover: cover[i],
                gain: gain[i],
            })
            .collect();
        let tree = Tree::new(nodes, n_features).map_err(|message| ModelError::Artifact {
            message: format!("tree {index}: {message}"),
        })?;
        trees.push(tree);
    }
    if offsets.first() != Some(&0) || offsets.last().map(|&last| last as usize) != Some(n_nodes) {
        return Err(ModelError::Artifact {
            message: "node offsets do not cover the nodes".to_owned(),
        });
    }
    Ok(trees)
}

/// A model configuration's fields as [`Params`].
pub(crate) fn params_of<T: serde::Serialize>(config: &T) -> Params {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Params::new(),
    }
}

/// `config` with the named `params` changed; an unknown name or a value the configuration
/// cannot take is an [`ModelError::InvalidParameter`] naming it.
pub(crate) fn with_params<T>(config: &T, params: &Params) -> Result<T, ModelError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut current = params_of(config);
    for (name, value) in params {
        if !current.contains_key(name) {
            let known: Vec<_> = current.keys().map(String::as_str).collect();
            return Err(ModelError::InvalidParameter {
                name: name.clone(),
                message: format!("unknown parameter, expected one of {}", known.join(", ")),
            });
        }
        current.insert(name.clone(), value.clone());
    }
    let object: serde_json::Map<_, _> = current.into_iter().collect();
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        ModelError::InvalidParameter {
            name: params.keys().cloned().collect::<Vec<_>>().join(", "),
            message: e.to_string(),
        }
    })
}

/// Checks what every `fit` needs of its targets: one per input row, at least `min_rows`, all
/// finite.
pub(crate) fn check_targets(
    input_rows: usize,
    targets: &[f64],
    min_rows: usize,
) -> Result<(), ModelError> {
    if input_rows != targets.len() {
        return Err(ModelError::RowMismatch {
            inputs: input_rows,
            targets: targets.len(),
        });
    }
    if targets.len() < min_rows {
        return Err(ModelError::TooFewRows {
            rows: targets.len(),
        });
    }
    if let Some((row, &value)) = targets.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ModelError::NonFiniteTarget { row, value });
    }
    Ok(())
}
