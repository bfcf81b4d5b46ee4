//! ONNX export: a fitted model and its feature pipeline as one ONNX graph that any ONNX
//! runtime scores (onnxruntime, MLflow's `onnx` flavor, Spark through `spark_udf`).
//!
//! The graph takes one 1-D input per column the pipeline reads, named as the column and typed
//! as MLflow's signature types it (`integer` columns as `int32`, `long` as `int64`, `float`,
//! `double`, `boolean`, `string`), so that a pandas frame that passed MLflow's signature feeds
//! it as it is; it answers `prediction`, one `double` per row.
//!
//! - Features are built as the pipeline builds them: numbers cast to `float` (standardised in
//!   `double` first, then cast, as velo does), categories as one 0/1 feature per training
//!   category (`Equal`) or as ordinal codes (`-1` for an unseen value), concatenated in the
//!   pipeline's order into one `float` matrix.
//! - Forests and boosting become one ai.onnx.ml `TreeEnsembleRegressor` (ml opset 3): velo's
//!   splits are `float` thresholds on `float` features, sent left when `x <= t` and right for
//!   NaN, which is `BRANCH_LEQ` with missing values on the false branch; thresholds, leaf
//!   values and the boosting baseline travel as `double` tensors (`*_as_tensor`), so no split
//!   moves and no leaf is rounded; a forest averages its trees, boosting sums them onto its
//!   baseline.
//! - Networks become `Gemm` layers with their activation (`Relu`, `Tanh`, `x·Sigmoid(x)`, and
//!   GELU as `0.5·x·(1 + Erf(x/√2))`), the output restored to the target's scale in `double`.
//!
//! The ensemble's output type in ml opset 3 is `float`: predictions agree with velo's within
//! `float` precision (a relative 6e-8 per rounding), checked against onnxruntime by the tests.

pub mod proto;

use prost::Message as _;
use velo_core::schemas::{ColumnType, Schema};

use crate::{
    ModelError,
    config::{CategoricalEncoding, Scaling},
    features::{Categories, FeaturePipeline},
    tree::Tree,
};
use proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, attribute_type, data_type,
};

/// The default domain's opset the graphs use.
pub const OPSET: i64 = 19;
/// The ai.onnx.ml opset (the `TreeEnsembleRegressor` with `*_as_tensor` attributes).
pub const ML_OPSET: i64 = 3;
/// The IR version matching [`OPSET`].
const IR_VERSION: i64 = 9;
/// The graph's output.
pub const OUTPUT: &str = "prediction";

/// Which ai.onnx.ml operator holds a tree ensemble.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlOpset {
    /// ml opset 3's `TreeEnsembleRegressor` (`float` output; every onnxruntime since 1.11).
    #[default]
    V3,
    /// ml opset 5's `TreeEnsemble` (`double` in and out, splits as a tensor; onnxruntime
    /// 1.20 and later).
    V5,
}

/// How a model is exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The operator of tree ensembles.
    pub ml_opset: MlOpset,
}

impl Options {
    /// Options with tree ensembles as `ml_opset` says.
    pub fn with_ml_opset(ml_opset: MlOpset) -> Self {
        Self { ml_opset }
    }
}

fn unsupported(message: String) -> ModelError {
    ModelError::Inputs {
        message: format!("cannot export to ONNX: {message}"),
    }
}

/// Builds a graph node by node, naming intermediate values uniquely.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    counter: usize,
}

fn attribute_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: attribute_type::INT,
        i: value,
        ..AttributeProto::default()
    }
}

fn attribute_ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: attribute_type::INTS,
        ints: values,
        ..AttributeProto::default()
    }
}

fn attribute_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: attribute_type::STRING,
        s: value.as_bytes().to_vec(),
        ..AttributeProto::default()
    }
}

fn attribute_strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: attribute_type::STRINGS,
        strings: values
            .iter()
            .map(|value| value.as_bytes().to_vec())
            .collect(),
        ..AttributeProto::default()
    }
}

fn attribute_tensor(name: &str, tensor: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: attribute_type::TENSOR,
        t: Some(tensor),
        ..AttributeProto::default()
    }
}

fn doubles(values: Vec<f64>) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: data_type::DOUBLE,
        double_data: values,
        ..TensorProto::default()
    }
}

fn tensor_type(elem_type: i32, dims: &[Option<i64>]) -> TypeProto {
    TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|dim| match dim {
                        Some(size) => Dimension {
                            dim_value: Some(*size),
                            dim_param: None,
                        },
                        None => Dimension {
                            dim_value: None,
                            dim_param: Some("N".to_owned()),
                        },
                    })
                    .collect(),
            }),
        }),
    }
}

/// The ONNX type of a column as MLflow's signature types it (see `velo_io`'s `mlflow_type`),
/// or why it cannot be an input.
fn input_type(
    schema: &Schema,
    column: &str,
    categories: Option<&Categories>,
) -> Result<i32, ModelError> {
    let spec = schema
        .columns
        .iter()
        .find(|spec| spec.name == column)
        .ok_or_else(|| unsupported(format!("the pipeline reads `{column}`, not in the schema")))?;
    Ok(match spec.data_type {
        ColumnType::Int8
        | ColumnType::Int16
        | ColumnType::Int32
        | ColumnType::UInt8
        | ColumnType::UInt16 => data_type::INT32,
        ColumnType::Int64 | ColumnType::UInt32 => data_type::INT64,
        ColumnType::UInt64 | ColumnType::Float64 => data_type::DOUBLE,
        ColumnType::Float32 => data_type::FLOAT,
        ColumnType::Bool => data_type::BOOL,
        ColumnType::String => data_type::STRING,
        ColumnType::Categorical => match categories {
            Some(Categories::Strings(_)) => data_type::STRING,
            Some(Categories::Booleans(_)) => data_type::BOOL,
            _ => data_type::INT64,
        },
        other => {
            return Err(unsupported(format!(
                "column `{column}` is a {other:?}: ONNX takes no such input; drop it or derive a \
                 number from it before the model"
            )));
        }
    })
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    fn node(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(&op_type.to_lowercase());
        self.node_into(op_type, domain, inputs, attributes, &output);
        output
    }

    fn node_into(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: &str,
    ) {
        let name = self.fresh(&format!("{op_type}_node"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|input| (*input).to_owned()).collect(),
            output: vec![output.to_owned()],
            name,
            op_type: op_type.to_owned(),
            attribute: attributes,
            domain: domain.to_owned(),
        });
    }

    fn constant(&mut self, mut tensor: TensorProto) -> String {
        let name = self.fresh("const");
        tensor.name.clone_from(&name);
        self.initializers.push(tensor);
        name
    }

    fn scalar_double(&mut self, value: f64) -> String {
        self.constant(TensorProto {
            data_type: data_type::DOUBLE,
            double_data: vec![value],
            ..TensorProto::default()
        })
    }

    fn scalar_float(&mut self, value: f32) -> String {
        self.constant(TensorProto {
            data_type: data_type::FLOAT,
            float_data: vec![value],
            ..TensorProto::default()
        })
    }

    /// A scalar of `elem_type` equal to an integer category.
    fn scalar_integer(&mut self, elem_type: i32, value: i64) -> Result<String, ModelError> {
        let mut tensor = TensorProto {
            data_type: elem_type,
            ..TensorProto::default()
        };
        match elem_type {
            data_type::INT32 => {
                tensor.int32_data = vec![i32::try_from(value).map_err(|_| {
                    unsupported(format!("category {value} does not fit the column's int32"))
                })?];
            }
            data_type::INT64 => tensor.int64_data = vec![value],
            data_type::DOUBLE => tensor.double_data = vec![value as f64],
            data_type::FLOAT => tensor.float_data = vec![value as f32],
            _ => {
                return Err(unsupported(format!(
                    "an integer category on an input of ONNX type {elem_type}"
                )));
            }
        }
        Ok(self.constant(tensor))
    }

    fn cast(&mut self, input: &str, to: i32) -> String {
        self.node(
            "Cast",
            "",
            &[input],
            vec![attribute_int("to", i64::from(to))],
        )
    }

    /// `[N]` to `[N, 1]`.
    fn column(&mut self, input: &str) -> String {
        let axes = self.constant(TensorProto {
            dims: vec![1],
            data_type: data_type::INT64,
            int64_data: vec![1],
            ..TensorProto::default()
        });
        self.node("Unsqueeze", "", &[input, &axes], Vec::new())
    }

    fn input(&mut self, name: &str, elem_type: i32) {
        if self.inputs.iter().any(|input| input.name == name) {
            return;
        }
        self.inputs.push(ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(tensor_type(elem_type, &[None])),
        });
    }

    /// The pipeline's features as one `float` matrix `[N, features]`; returns its name.
    pub(crate) fn features(
        &mut self,
        pipeline: &FeaturePipeline,
        schema: &Schema,
    ) -> Result<String, ModelError> {
        let mut columns: Vec<String> = Vec::new();
        for feature in pipeline.categoricals() {
            let elem_type = input_type(schema, &feature.column, Some(&feature.categories))?;
            self.input(&feature.column, elem_type);
            let mut indicators = Vec::with_capacity(feature.categories.len());
            for position in 0..feature.categories.len() {
                let value = match &feature.categories {
                    Categories::Integers(values) => {
                        self.scalar_integer(elem_type, values[position])?
                    }
                    Categories::Booleans(values) => self.constant(TensorProto {
                        data_type: data_type::BOOL,
                        int32_data: vec![i32::from(values[position])],
                        ..TensorProto::default()
                    }),
                    Categories::Strings(values) => {
                        if elem_type != data_type::STRING {
                            return Err(unsupported(format!(
                                "column `{}` has text categories but is not a string column",
                                feature.column
                            )));
                        }
                        self.constant(TensorProto {
                            data_type: data_type::STRING,
                            string_data: vec![values[position].as_bytes().to_vec()],
                            ..TensorProto::default()
                        })
                    }
                };
                let equal = self.node("Equal", "", &[&feature.column, &value], Vec::new());
                indicators.push(self.cast(&equal, data_type::FLOAT));
            }
            match pipeline.encoding() {
                CategoricalEncoding::OneHot => {
                    for indicator in indicators {
                        columns.push(self.column(&indicator));
                    }
                }
                CategoricalEncoding::Ordinal => {
                    // code = -1 + Σ (position + 1) · [x = category]; exact in float below 2^24.
                    let mut terms = Vec::with_capacity(indicators.len() + 1);
                    terms.push(self.scalar_float(-1.0));
                    for (position, indicator) in indicators.iter().enumerate() {
                        let weight = self.scalar_float((position + 1) as f32);
                        terms.push(self.node("Mul", "", &[indicator, &weight], Vec::new()));
                    }
                    let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
                    let code = self.node("Sum", "", &refs, Vec::new());
                    columns.push(self.column(&code));
                }
            }
        }
        for feature in pipeline.numericals() {
            let elem_type = input_type(schema, &feature.column, None)?;
            if elem_type == data_type::STRING {
                return Err(unsupported(format!(
                    "numerical column `{}` is text",
                    feature.column
                )));
            }
            self.input(&feature.column, elem_type);
            let value = match (pipeline.scaling(), feature.standard) {
                (Scaling::Standard, Some(standard)) => {
                    let wide = self.cast(&feature.column, data_type::DOUBLE);
                    let mean = self.scalar_double(standard.mean);
                    let std = self.scalar_double(standard.std);
                    let centred = self.node("Sub", "", &[&wide, &mean], Vec::new());
                    let scaled = self.node("Div", "", &[&centred, &std], Vec::new());
                    self.cast(&scaled, data_type::FLOAT)
                }
                _ => self.cast(&feature.column, data_type::FLOAT),
            };
            columns.push(self.column(&value));
        }
        if columns.is_empty() {
            return Err(unsupported("the pipeline has no feature".to_owned()));
        }
        let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
        Ok(self.node("Concat", "", &refs, vec![attribute_int("axis", 1)]))
    }

    /// `[N, 1]` of any float type to the `double` output `[N]`.
    fn output(&mut self, input: &str) {
        let wide = self.cast(input, data_type::DOUBLE);
        let shape = self.constant(TensorProto {
            dims: vec![1],
            data_type: data_type::INT64,
            int64_data: vec![-1],
            ..TensorProto::default()
        });
        self.node_into("Reshape", "", &[&wide, &shape], Vec::new(), OUTPUT);
    }

    /// The finished model's bytes.
    fn into_bytes(self, doc: &str, ml_opset: i64) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![
                OperatorSetIdProto {
                    domain: String::new(),
                    version: OPSET,
                },
                OperatorSetIdProto {
                    domain: "ai.onnx.ml".to_owned(),
                    version: ml_opset,
                },
            ],
            producer_name: "velo".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            domain: String::new(),
            model_version: 1,
            doc_string: doc.to_owned(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "velo".to_owned(),
                initializer: self.initializers,
                doc_string: String::new(),
                input: self.inputs,
                output: vec![ValueInfoProto {
                    name: OUTPUT.to_owned(),
                    r#type: Some(tensor_type(data_type::DOUBLE, &[None])),
                }],
            }),
            metadata_props: vec![StringStringEntryProto {
                key: "velo_version".to_owned(),
                value: env!("CARGO_PKG_VERSION").to_owned(),
            }],
        };
        model.encode_to_vec()
    }
}

/// How an ensemble combines its trees.
pub(crate) enum Aggregate {
    /// The mean of the trees (a forest).
    Average,
    /// The baseline plus the sum of the trees (boosting).
    Sum {
        /// The baseline.
        base: f64,
    },
}

/// A tree ensemble on its pipeline as ONNX bytes.
pub(crate) fn tree_ensemble(
    kind: &str,
    pipeline: &FeaturePipeline,
    schema: &Schema,
    trees: &[Tree],
    (aggregate, options): (&Aggregate, &Options),
) -> Result<Vec<u8>, ModelError> {
    let mut graph = Graph::default();
    let features = graph.features(pipeline, schema)?;
    if options.ml_opset == MlOpset::V5 {
        let wide = graph.cast(&features, data_type::DOUBLE);
        let scores = tree_ensemble_v5(&mut graph, &wide, trees, aggregate);
        graph.output(&scores);
        return Ok(graph.into_bytes(
            &format!("velo {kind}: feature pipeline and {} trees", trees.len()),
            ML_OPSET_V5,
        ));
    }
    let (mut tree_ids, mut node_ids, mut feature_ids, mut modes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut thresholds, mut trues, mut falses, mut missing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut target_trees, mut target_nodes, mut target_ids, mut weights) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (tree_id, tree) in trees.iter().enumerate() {
        for (node_id, node) in tree.nodes().iter().enumerate() {
            tree_ids.push(tree_id as i64);
            node_ids.push(node_id as i64);
            missing.push(0);
            if node.is_leaf() {
                feature_ids.push(0);
                modes.push("LEAF");
                thresholds.push(0.0);
                trues.push(0);
                falses.push(0);
                target_trees.push(tree_id as i64);
                target_nodes.push(node_id as i64);
                target_ids.push(0);
                weights.push(node.value);
            } else {
                feature_ids.push(i64::from(node.feature));
                modes.push("BRANCH_LEQ");
                thresholds.push(f64::from(node.threshold));
                trues.push(i64::from(node.left));
                falses.push(i64::from(node.right));
            }
        }
    }
    let mut attributes = vec![
        attribute_int("n_targets", 1),
        attribute_ints("nodes_treeids", tree_ids),
        attribute_ints("nodes_nodeids", node_ids),
        attribute_ints("nodes_featureids", feature_ids),
        attribute_strings("nodes_modes", &modes),
        attribute_tensor("nodes_values_as_tensor", doubles(thresholds)),
        attribute_ints("nodes_truenodeids", trues),
        attribute_ints("nodes_falsenodeids", falses),
        attribute_ints("nodes_missing_value_tracks_true", missing),
        attribute_ints("target_treeids", target_trees),
        attribute_ints("target_nodeids", target_nodes),
        attribute_ints("target_ids", target_ids),
        attribute_tensor("target_weights_as_tensor", doubles(weights)),
        attribute_string("post_transform", "NONE"),
    ];
    match aggregate {
        Aggregate::Average => attributes.push(attribute_string("aggregate_function", "AVERAGE")),
        Aggregate::Sum { base } => {
            attributes.push(attribute_string("aggregate_function", "SUM"));
            attributes.push(attribute_tensor(
                "base_values_as_tensor",
                doubles(vec![*base]),
            ));
        }
    }
    // onnxruntime reads `double` thresholds only for a `double` input: the float features,
    // widened exactly, compare with the widened float thresholds as velo compares them.
    let wide = graph.cast(&features, data_type::DOUBLE);
    let scores = graph.node("TreeEnsembleRegressor", "ai.onnx.ml", &[&wide], attributes);
    graph.output(&scores);
    Ok(graph.into_bytes(
        &format!("velo {kind}: feature pipeline and {} trees", trees.len()),
        ML_OPSET,
    ))
}

/// The ml opset of [`MlOpset::V5`].
pub const ML_OPSET_V5: i64 = 5;

/// A `TreeEnsemble` (ml opset 5) over the `double` features `input`: interior nodes and leaves
/// in separate arrays, splits as a `double` tensor, `double` scores (a single-leaf tree gets a
/// split at +inf whose branches both reach its leaf). Returns the scores' name, `[N, 1]`.
fn tree_ensemble_v5(
    graph: &mut Graph,
    input: &str,
    trees: &[Tree],
    aggregate: &Aggregate,
) -> String {
    let (mut roots, mut features, mut splits, mut modes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut trues, mut true_leafs, mut falses, mut false_leafs, mut missing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut leaf_targets, mut leaf_weights) = (Vec::new(), Vec::new());
    for tree in trees {
        let nodes = tree.nodes();
        // Positions of each node among the interior nodes or among the leaves.
        let mut position = vec![0_i64; nodes.len()];
        let (mut interior, mut leaves) = (features.len() as i64, leaf_weights.len() as i64);
        for (index, node) in nodes.iter().enumerate() {
            if node.is_leaf() {
                position[index] = leaves;
                leaves += 1;
            } else {
                position[index] = interior;
                interior += 1;
            }
        }
        let start_leaves = leaf_weights.len() as i64;
        for node in nodes {
            if node.is_leaf() {
                leaf_targets.push(0);
                leaf_weights.push(node.value);
            }
        }
        roots.push(features.len() as i64);
        if nodes.first().is_some_and(crate::tree::Node::is_leaf) {
            features.push(0);
            splits.push(f64::INFINITY);
            modes.push(0);
            trues.push(start_leaves);
            true_leafs.push(1);
            falses.push(start_leaves);
            false_leafs.push(1);
            missing.push(0);
            continue;
        }
        for node in nodes.iter().filter(|node| !node.is_leaf()) {
            let (left, right) = (&nodes[node.left as usize], &nodes[node.right as usize]);
            features.push(i64::from(node.feature));
            splits.push(f64::from(node.threshold));
            modes.push(0);
            trues.push(position[node.left as usize]);
            true_leafs.push(i64::from(left.is_leaf()));
            falses.push(position[node.right as usize]);
            false_leafs.push(i64::from(right.is_leaf()));
            missing.push(0);
        }
    }
    let modes_tensor = TensorProto {
        dims: vec![modes.len() as i64],
        data_type: data_type::UINT8,
        int32_data: modes,
        ..TensorProto::default()
    };
    let average = matches!(aggregate, Aggregate::Average);
    let attributes = vec![
        attribute_int("aggregate_function", if average { 0 } else { 1 }),
        attribute_ints("leaf_targetids", leaf_targets),
        attribute_tensor("leaf_weights", doubles(leaf_weights)),
        attribute_int("n_targets", 1),
        attribute_ints("nodes_falseleafs", false_leafs),
        attribute_ints("nodes_falsenodeids", falses),
        attribute_ints("nodes_featureids", features),
        attribute_ints("nodes_missing_value_tracks_true", missing),
        attribute_tensor("nodes_modes", modes_tensor),
        attribute_tensor("nodes_splits", doubles(splits)),
        attribute_ints("nodes_trueleafs", true_leafs),
        attribute_ints("nodes_truenodeids", trues),
        attribute_int("post_transform", 0),
        attribute_ints("tree_roots", roots),
    ];
    let scores = graph.node("TreeEnsemble", "ai.onnx.ml", &[input], attributes);
    match aggregate {
        Aggregate::Average => scores,
        Aggregate::Sum { base } => {
            let base = graph.scalar_double(*base);
            graph.node("Add", "", &[&scores, &base], Vec::new())
        }
    }
}

/// The activation of a network's hidden layers, in ONNX operators.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Activation {
    Relu,
    Tanh,
    Silu,
    Gelu,
}

/// A network on its pipeline as ONNX bytes: `layers` are `(weights [in, out] row-major, bias)`.
pub(crate) fn network(
    pipeline: &FeaturePipeline,
    schema: &Schema,
    layers: &[(Vec<f32>, Vec<f32>)],
    activation: Activation,
    (mean, std): (f64, f64),
) -> Result<Vec<u8>, ModelError> {
    let mut graph = Graph::default();
    let mut current = graph.features(pipeline, schema)?;
    for (index, (weights, bias)) in layers.iter().enumerate() {
        let outputs = bias.len();
        if outputs == 0 || weights.len() % outputs != 0 {
            return Err(unsupported(format!(
                "layer {index} has inconsistent weights"
            )));
        }
        let inputs = weights.len() / outputs;
        let w = graph.constant(TensorProto {
            dims: vec![inputs as i64, outputs as i64],
            data_type: data_type::FLOAT,
            float_data: weights.clone(),
            ..TensorProto::default()
        });
        let b = graph.constant(TensorProto {
            dims: vec![outputs as i64],
            data_type: data_type::FLOAT,
            float_data: bias.clone(),
            ..TensorProto::default()
        });
        current = graph.node("Gemm", "", &[&current, &w, &b], Vec::new());
        if index + 1 < layers.len() {
            current = match activation {
                Activation::Relu => graph.node("Relu", "", &[&current], Vec::new()),
                Activation::Tanh => graph.node("Tanh", "", &[&current], Vec::new()),
                Activation::Silu => {
                    let gate = graph.node("Sigmoid", "", &[&current], Vec::new());
                    graph.node("Mul", "", &[&current, &gate], Vec::new())
                }
                Activation::Gelu => {
                    let root = graph.scalar_float(std::f32::consts::SQRT_2);
                    let half = graph.scalar_float(0.5);
                    let one = graph.scalar_float(1.0);
                    let scaled = graph.node("Div", "", &[&current, &root], Vec::new());
                    let erf = graph.node("Erf", "", &[&scaled], Vec::new());
                    let shifted = graph.node("Add", "", &[&erf, &one], Vec::new());
                    let product = graph.node("Mul", "", &[&current, &shifted], Vec::new());
                    graph.node("Mul", "", &[&product, &half], Vec::new())
                }
            };
        }
    }
    let wide = graph.cast(&current, data_type::DOUBLE);
    let std_value = graph.scalar_double(std);
    let mean_value = graph.scalar_double(mean);
    let scaled = graph.node("Mul", "", &[&wide, &std_value], Vec::new());
    let restored = graph.node("Add", "", &[&scaled, &mean_value], Vec::new());
    graph.output(&restored);
    Ok(graph.into_bytes(
        &format!(
            "velo NeuralNetModel: feature pipeline and {} layers",
            layers.len()
        ),
        ML_OPSET,
    ))
}
