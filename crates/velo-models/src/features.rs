//! The feature pipeline: from validated Arrow inputs to the [`FeatureMatrix`] a model works on.
//!
//! [`FeaturePipeline::fit`] decides the model's features from the inputs schema and the
//! [`FeaturesConfig`], and learns what it needs from the training inputs (categories, means and
//! standard deviations); [`FeaturePipeline::transform`] then encodes any batch the same way.
//!
//! # Which columns are features
//!
//! - The schema's index column is never a feature (naming it in `categoricals` or `numericals` is
//!   an error), and the columns listed in `drop` are left out.
//! - Categorical columns are those listed in `categoricals`, in that order, then the columns the
//!   schema types `categorical`, in schema order.
//! - Numerical columns are those listed in `numericals`, in that order; when that list is empty,
//!   every other column of the schema, in schema order. A numerical column must hold numbers or
//!   booleans (`true` is 1): a string, date or datetime column left over is an error asking to
//!   drop it or to declare it categorical, rather than being dropped silently, so that the
//!   features a model sees are always those the config says.
//! - Every name in `categoricals`, `numericals` and `drop` must be a column of the schema.
//!
//! Features come categorical columns first, then numerical ones, as in the reference package's
//! scikit-learn `ColumnTransformer`.
//!
//! # Categories
//!
//! Categories are the distinct non-null values of a column in the training inputs, sorted
//! (integers numerically, strings by code point, `false` before `true`), so that fitting is
//! deterministic. Integer, boolean and string columns can be categorical; dates and datetimes
//! are taken as their ISO 8601 text (`2011-01-01`). Floating-point columns cannot.
//!
//! - One-hot encoding (scikit-learn's `OneHotEncoder(handle_unknown="ignore")`) gives one 0/1
//!   feature per category, named `{column}_{category}` as `get_feature_names_out` names them
//!   (`season_1`, `holiday_True`, `city_Paris`). A category not seen in training, or a null,
//!   sets all of its column's features to 0.
//! - Ordinal encoding gives one feature per column, named after it, holding the category's
//!   position `0..k-1` in the sorted categories; an unseen category or a null is `-1`.
//!
//! # Numbers
//!
//! Numerical features are `f32` (as scikit-learn's trees use); any integer, float, decimal or
//! boolean Arrow type is accepted, and nulls become NaN. With [`Scaling::Standard`] they are
//! standardised as scikit-learn's `StandardScaler` does: `(x - mean) / std` with the mean and
//! population standard deviation of the training values (NaN ignored), computed in `f64`, and a
//! scale of 1 for a constant column.
//!
//! # Saving
//!
//! The fitted pipeline is serialisable with serde (it is part of velo's model artifacts).
//! Deserialising runs [`FeaturePipeline::validate`], so an inconsistent or tampered state is
//! rejected with [`ModelError::Artifact`] instead of producing wrong features later.

use std::collections::{BTreeSet, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use serde::{Deserialize, Serialize};

use super::config::{CategoricalEncoding, FeaturesConfig, Scaling};
use super::{FeatureMatrix, ModelError};
use velo_core::schemas::{ColumnType, Schema};

/// The largest number of categories an ordinal code can count exactly in an `f32` (2^24).
const MAX_ORDINAL_CATEGORIES: usize = 1 << 24;

/// A fitted feature pipeline: the columns a model reads, how each is encoded, and what was
/// learned from the training inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PipelineState")]
pub struct FeaturePipeline {
    /// How categorical columns are encoded.
    encoding: CategoricalEncoding,
    /// How numerical columns are scaled.
    scaling: Scaling,
    /// The categorical columns, in feature order.
    categoricals: Vec<CategoricalFeature>,
    /// The numerical columns, in feature order (after the categorical ones).
    numericals: Vec<NumericalFeature>,
    /// The encoded feature names, derived from the fields above.
    #[serde(skip)]
    names: Vec<String>,
}

/// The serialised form of a [`FeaturePipeline`], checked before it becomes one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineState {
    encoding: CategoricalEncoding,
    scaling: Scaling,
    categoricals: Vec<CategoricalFeature>,
    numericals: Vec<NumericalFeature>,
}

impl TryFrom<PipelineState> for FeaturePipeline {
    type Error = ModelError;

    fn try_from(state: PipelineState) -> Result<Self, ModelError> {
        let mut pipeline = Self {
            encoding: state.encoding,
            scaling: state.scaling,
            categoricals: state.categoricals,
            numericals: state.numericals,
            names: Vec::new(),
        };
        pipeline.names = pipeline.encoded_names();
        pipeline.validate()?;
        Ok(pipeline)
    }
}

/// A categorical input column and the categories learned for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    /// The input column.
    pub column: String,
    /// Its categories, sorted and distinct.
    pub categories: Categories,
}

/// The sorted, distinct categories of a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Categories {
    /// Integer categories (any integer column).
    Integers(Vec<i64>),
    /// Boolean categories.
    Booleans(Vec<bool>),
    /// String categories (string columns, and dates or datetimes as ISO 8601 text).
    Strings(Vec<String>),
}

impl Categories {
    /// Number of categories.
    pub fn len(&self) -> usize {
        match self {
            Self::Integers(values) => values.len(),
            Self::Booleans(values) => values.len(),
            Self::Strings(values) => values.len(),
        }
    }

    /// Whether there is no category.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The categories as text, as they appear in one-hot feature names (booleans are written
    /// `True` and `False`, as Python writes them in scikit-learn's names).
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Integers(values) => values.iter().map(ToString::to_string).collect(),
            Self::Booleans(values) => values
                .iter()
                .map(|&value| if value { "True" } else { "False" }.to_owned())
                .collect(),
            Self::Strings(values) => values.clone(),
        }
    }

    /// Whether the categories are strictly increasing (sorted and distinct).
    fn strictly_increasing(&self) -> bool {
        match self {
            Self::Integers(values) => values.windows(2).all(|pair| pair[0] < pair[1]),
            Self::Booleans(values) => values.windows(2).all(|pair| !pair[0] & pair[1]),
            Self::Strings(values) => values.windows(2).all(|pair| pair[0] < pair[1]),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Integers(_) => "integer",
            Self::Booleans(_) => "boolean",
            Self::Strings(_) => "string",
        }
    }
}

/// A numerical input column and, when it is standardised, its training statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericalFeature {
    /// The input column.
    pub column: String,
    /// The standardisation learned in training; `None` when values are passed through.
    pub standard: Option<Standardisation>,
}

/// The statistics of a standardised column: features are `(x - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardisation {
    /// The mean of the training values.
    pub mean: f64,
    /// Their population standard deviation, or 1 for a constant column.
    pub std: f64,
}

impl FeaturePipeline {
    /// Decides the features from `schema` and `config` and learns categories (and scaling
    /// statistics) from the training `inputs`, a batch validated by `schema`.
    ///
    /// # Errors
    /// [`ModelError::InvalidParameter`] when the config names columns the schema lacks, lists a
    /// column twice or in conflicting roles, leaves a column the model cannot use, or leaves no
    /// feature; [`ModelError::Inputs`] when `inputs` lack a feature column or hold values of the
    /// wrong kind (such as a categorical column without any value).
    pub fn fit(
        schema: &Schema,
        config: &FeaturesConfig,
        inputs: &RecordBatch,
    ) -> Result<Self, ModelError> {
        let (categorical_columns, numerical_columns) = select_columns(schema, config)?;
        let missing: Vec<&str> = categorical_columns
            .iter()
            .chain(&numerical_columns)
            .map(String::as_str)
            .filter(|name| inputs.column_by_name(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(missing_columns(&missing));
        }
        let categoricals = categorical_columns
            .into_iter()
            .map(|column| {
                let array = input_column(inputs, &column)?;
                let categories = learn_categories(&column, array)?;
                if config.encoding == CategoricalEncoding::Ordinal
                    && categories.len() > MAX_ORDINAL_CATEGORIES
                {
                    return Err(ModelError::Inputs {
                        message: format!(
                            "column '{column}' has {} categories, more than ordinal codes can \
                             count exactly ({MAX_ORDINAL_CATEGORIES})",
                            categories.len()
                        ),
                    });
                }
                Ok(CategoricalFeature { column, categories })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let numericals = numerical_columns
            .into_iter()
            .map(|column| {
                let array = input_column(inputs, &column)?;
                let standard = match config.scaling {
                    Scaling::None => {
                        check_numeric(&column, array)?;
                        None
                    }
                    Scaling::Standard => Some(learn_standardisation(&column, array)?),
                };
                Ok(NumericalFeature { column, standard })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pipeline = Self {
            encoding: config.encoding,
            scaling: config.scaling,
            categoricals,
            numericals,
            names: Vec::new(),
        };
        pipeline.names = pipeline.encoded_names();
        if let Some(name) = first_duplicate(pipeline.names.iter().map(String::as_str)) {
            return Err(ModelError::InvalidParameter {
                name: "features".to_owned(),
                message: format!(
                    "two features would be named '{name}' (a one-hot feature is named \
                     `{{column}}_{{category}}`); rename or drop one of the columns"
                ),
            });
        }
        Ok(pipeline)
    }

    /// Encodes `inputs` into the feature matrix, reading columns by name (their order and any
    /// other column do not matter).
    ///
    /// # Errors
    /// [`ModelError::Inputs`] naming the columns that are missing, or a column whose type does
    /// not fit its encoding (text in a numerical column, floats in an integer categorical one).
    pub fn transform(&self, inputs: &RecordBatch) -> Result<FeatureMatrix, ModelError> {
        let missing: Vec<&str> = self
            .input_columns()
            .into_iter()
            .filter(|name| inputs.column_by_name(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(missing_columns(&missing));
        }
        let n_rows = inputs.num_rows();
        let mut columns: Vec<Vec<f32>> = Vec::with_capacity(self.names.len());
        for feature in &self.categoricals {
            let array = input_column(inputs, &feature.column)?;
            let codes = category_codes(&feature.column, &feature.categories, array)?;
            match self.encoding {
                CategoricalEncoding::Ordinal => columns.push(
                    codes
                        .iter()
                        .map(|code| code.map_or(-1.0, |code| code as f32))
                        .collect(),
                ),
                CategoricalEncoding::OneHot => {
                    let first = columns.len();
                    columns.extend((0..feature.categories.len()).map(|_| vec![0.0; n_rows]));
                    for (row, code) in codes.iter().enumerate() {
                        if let Some(code) = code {
                            columns[first + code][row] = 1.0;
                        }
                    }
                }
            }
        }
        for feature in &self.numericals {
            let array = input_column(inputs, &feature.column)?;
            columns.push(numerical_values(&feature.column, feature.standard, array)?);
        }
        FeatureMatrix::from_columns(self.names.clone(), columns).map_err(|message| {
            ModelError::Inputs {
                message: format!("cannot build the feature matrix: {message}"),
            }
        })
    }

    /// The encoded feature names, in feature-matrix order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Number of encoded features.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// The input columns the pipeline reads, in feature order (categorical, then numerical).
    pub fn input_columns(&self) -> Vec<&str> {
        self.categoricals
            .iter()
            .map(|feature| feature.column.as_str())
            .chain(
                self.numericals
                    .iter()
                    .map(|feature| feature.column.as_str()),
            )
            .collect()
    }

    /// Each input column with the positions of its encoded features, in feature order: sums
    /// over these positions turn per-feature contributions into per-column ones.
    pub fn groups(&self) -> Vec<(String, Vec<usize>)> {
        let mut next = 0;
        let mut groups = Vec::with_capacity(self.categoricals.len() + self.numericals.len());
        for feature in &self.categoricals {
            let width = self.encoded_width(feature);
            groups.push((feature.column.clone(), (next..next + width).collect()));
            next += width;
        }
        for feature in &self.numericals {
            groups.push((feature.column.clone(), vec![next]));
            next += 1;
        }
        groups
    }

    /// The categorical columns and their categories, in feature order.
    pub fn categoricals(&self) -> &[CategoricalFeature] {
        &self.categoricals
    }

    /// The numerical columns and their scaling, in feature order.
    pub fn numericals(&self) -> &[NumericalFeature] {
        &self.numericals
    }

    /// How categorical columns are encoded.
    pub fn encoding(&self) -> CategoricalEncoding {
        self.encoding
    }

    /// How numerical columns are scaled.
    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// Checks that the fitted state is consistent, as a loaded artifact must be: at least one
    /// feature, distinct non-empty column names, non-empty strictly sorted categories, scaling
    /// statistics present exactly when scaling is on, finite with a positive standard deviation,
    /// and distinct encoded feature names.
    ///
    /// # Errors
    /// [`ModelError::Artifact`] describing the first inconsistency found.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |message: String| Err(ModelError::Artifact { message });
        let columns = self.input_columns();
        if columns.is_empty() {
            return invalid("the feature pipeline has no feature".to_owned());
        }
        if columns.iter().any(|column| column.is_empty()) {
            return invalid("the feature pipeline has a column with an empty name".to_owned());
        }
        if let Some(column) = first_duplicate(columns.iter().copied()) {
            return invalid(format!(
                "the feature pipeline lists column '{column}' twice"
            ));
        }
        for feature in &self.categoricals {
            let column = &feature.column;
            if feature.categories.is_empty() {
                return invalid(format!("categorical column '{column}' has no category"));
            }
            if !feature.categories.strictly_increasing() {
                return invalid(format!(
                    "the categories of column '{column}' are not sorted and distinct"
                ));
            }
            if self.encoding == CategoricalEncoding::Ordinal
                && feature.categories.len() > MAX_ORDINAL_CATEGORIES
            {
                return invalid(format!(
                    "column '{column}' has {} categories, more than ordinal codes can count",
                    feature.categories.len()
                ));
            }
        }
        for feature in &self.numericals {
            let column = &feature.column;
            match (self.scaling, feature.standard) {
                (Scaling::Standard, Some(Standardisation { mean, std })) => {
                    if !mean.is_finite() || !std.is_finite() || std <= 0.0 {
                        return invalid(format!(
                            "column '{column}' has mean {mean} and standard deviation {std}, \
                             expected finite numbers and a positive deviation"
                        ));
                    }
                }
                (Scaling::Standard, None) => {
                    return invalid(format!(
                        "column '{column}' has no standardisation but scaling is standard"
                    ));
                }
                (_, Some(_)) => {
                    return invalid(format!(
                        "column '{column}' has a standardisation but scaling is not standard"
                    ));
                }
                (_, None) => {}
            }
        }
        let expected = self.encoded_names();
        if self.names != expected {
            return invalid("the feature names do not match the columns".to_owned());
        }
        if let Some(name) = first_duplicate(self.names.iter().map(String::as_str)) {
            return invalid(format!("two features are named '{name}'"));
        }
        Ok(())
    }

    fn encoded_width(&self, feature: &CategoricalFeature) -> usize {
        match self.encoding {
            CategoricalEncoding::Ordinal => 1,
            CategoricalEncoding::OneHot => feature.categories.len(),
        }
    }

    fn encoded_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for feature in &self.categoricals {
            match self.encoding {
                CategoricalEncoding::Ordinal => names.push(feature.column.clone()),
                CategoricalEncoding::OneHot => names.extend(
                    feature
                        .categories
                        .labels()
                        .into_iter()
                        .map(|label| format!("{}_{label}", feature.column)),
                ),
            }
        }
        names.extend(self.numericals.iter().map(|feature| feature.column.clone()));
        names
    }
}

/// Splits the schema's columns into categorical and numerical features, per the config.
fn select_columns(
    schema: &Schema,
    config: &FeaturesConfig,
) -> Result<(Vec<String>, Vec<String>), ModelError> {
    let invalid = |key: &str, message: String| ModelError::InvalidParameter {
        name: format!("features.{key}"),
        message,
    };
    let schema_label = schema.name.as_ref().map_or_else(
        || "the inputs schema".to_owned(),
        |name| format!("schema '{name}'"),
    );
    for (key, names) in [
        ("categoricals", &config.categoricals),
        ("numericals", &config.numericals),
        ("drop", &config.drop),
    ] {
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|name| schema.column(name).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(invalid(
                key,
                format!("{} not in {schema_label}", quoted_columns(&unknown)),
            ));
        }
        if let Some(name) = first_duplicate(names.iter().map(String::as_str)) {
            return Err(invalid(key, format!("column '{name}' is listed twice")));
        }
    }
    let index = schema.index.as_deref();
    let dropped = |name: &str| config.drop.iter().any(|dropped| dropped == name);
    for (key, names) in [
        ("categoricals", &config.categoricals),
        ("numericals", &config.numericals),
    ] {
        if let Some(name) = names.iter().find(|name| Some(name.as_str()) == index) {
            return Err(invalid(
                key,
                format!("column '{name}' is the schema's index, which is never a feature"),
            ));
        }
        if let Some(name) = names.iter().find(|name| dropped(name)) {
            return Err(invalid(key, format!("column '{name}' is also in `drop`")));
        }
    }
    let mut categoricals = config.categoricals.clone();
    let declared: Vec<String> = schema
        .columns
        .iter()
        .filter(|column| column.data_type == ColumnType::Categorical)
        .map(|column| column.name.clone())
        .filter(|name| {
            Some(name.as_str()) != index && !dropped(name) && !categoricals.contains(name)
        })
        .collect();
    categoricals.extend(declared);
    let numericals: Vec<String> = if config.numericals.is_empty() {
        schema
            .columns
            .iter()
            .map(|column| column.name.clone())
            .filter(|name| {
                Some(name.as_str()) != index && !dropped(name) && !categoricals.contains(name)
            })
            .collect()
    } else {
        if let Some(name) = config
            .numericals
            .iter()
            .find(|name| categoricals.contains(name))
        {
            return Err(invalid(
                "numericals",
                format!(
                    "column '{name}' is categorical (in `categoricals` or typed so in the schema)"
                ),
            ));
        }
        config.numericals.clone()
    };
    let unusable: Vec<String> = numericals
        .iter()
        .filter_map(|name| schema.column(name))
        .filter(|column| !is_numerical_type(column.data_type))
        .map(|column| format!("'{}' ({})", column.name, column.data_type))
        .collect();
    if !unusable.is_empty() {
        return Err(invalid(
            if config.numericals.is_empty() {
                "drop"
            } else {
                "numericals"
            },
            format!(
                "{} {} {} not hold numbers or booleans: add {} to `drop`, or to `categoricals`",
                if unusable.len() == 1 {
                    "column"
                } else {
                    "columns"
                },
                unusable.join(", "),
                if unusable.len() == 1 { "does" } else { "do" },
                if unusable.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    if categoricals.is_empty() && numericals.is_empty() {
        return Err(invalid(
            "drop",
            format!("no column of {schema_label} is left to feed the model"),
        ));
    }
    Ok((categoricals, numericals))
}

fn is_numerical_type(data_type: ColumnType) -> bool {
    matches!(
        data_type,
        ColumnType::Int8
            | ColumnType::Int16
            | ColumnType::Int32
            | ColumnType::Int64
            | ColumnType::UInt8
            | ColumnType::UInt16
            | ColumnType::UInt32
            | ColumnType::UInt64
            | ColumnType::Float32
            | ColumnType::Float64
            | ColumnType::Bool
    )
}

fn quoted_columns(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    match quoted.len() {
        1 => format!("column {}", quoted[0]),
        _ => format!("columns {}", quoted.join(", ")),
    }
}

fn missing_columns(names: &[&str]) -> ModelError {
    ModelError::Inputs {
        message: format!("{} missing", {
            let listed = quoted_columns(names);
            if names.len() == 1 {
                format!("{listed} is")
            } else {
                format!("{listed} are")
            }
        }),
    }
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}

fn input_column<'a>(inputs: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ModelError> {
    inputs
        .column_by_name(name)
        .ok_or_else(|| missing_columns(&[name]))
}

fn conversion_error(column: &str, target: &str, error: &arrow::error::ArrowError) -> ModelError {
    ModelError::Inputs {
        message: format!("cannot convert column '{column}' to {target}: {error}"),
    }
}

fn is_integer(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(data_type, DataType::Dictionary(_, values) if values.is_integer())
}

fn is_text_like(data_type: &DataType) -> bool {
    let text = |data_type: &DataType| {
        matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    };
    text(data_type)
        || matches!(data_type, DataType::Dictionary(_, values) if text(values))
        || matches!(
            data_type,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
}

/// Learns the sorted distinct categories of a training column.
fn learn_categories(column: &str, array: &ArrayRef) -> Result<Categories, ModelError> {
    let data_type = array.data_type();
    let categories = if is_integer(data_type) {
        let values = cast(array, &DataType::Int64)
            .map_err(|error| conversion_error(column, "integer categories", &error))?;
        let set: BTreeSet<i64> = values
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .collect();
        Categories::Integers(set.into_iter().collect())
    } else if *data_type == DataType::Boolean {
        let set: BTreeSet<bool> = array.as_boolean().iter().flatten().collect();
        Categories::Booleans(set.into_iter().collect())
    } else if is_text_like(data_type) {
        let values = cast(array, &DataType::Utf8)
            .map_err(|error| conversion_error(column, "string categories", &error))?;
        let set: BTreeSet<&str> = values.as_string::<i32>().iter().flatten().collect();
        Categories::Strings(set.into_iter().map(str::to_owned).collect())
    } else {
        return Err(ModelError::Inputs {
            message: format!(
                "column '{column}' has type {data_type}, which cannot be categorical \
                 (integers, booleans, strings, dates and datetimes can)"
            ),
        });
    };
    if categories.is_empty() {
        return Err(ModelError::Inputs {
            message: format!(
                "categorical column '{column}' has no value in the training inputs to learn \
                 categories from"
            ),
        });
    }
    Ok(categories)
}

/// The position of each row's value among `categories`, `None` for nulls and unseen values.
fn category_codes(
    column: &str,
    categories: &Categories,
    array: &ArrayRef,
) -> Result<Vec<Option<usize>>, ModelError> {
    let data_type = array.data_type();
    let is_null = *data_type == DataType::Null;
    let codes = match categories {
        Categories::Integers(known) if is_null || is_integer(data_type) => {
            let values = cast(array, &DataType::Int64)
                .map_err(|error| conversion_error(column, "integer categories", &error))?;
            values
                .as_primitive::<Int64Type>()
                .iter()
                .map(|value| value.and_then(|value| known.binary_search(&value).ok()))
                .collect()
        }
        Categories::Booleans(known) if is_null || *data_type == DataType::Boolean => {
            let values = cast(array, &DataType::Boolean)
                .map_err(|error| conversion_error(column, "boolean categories", &error))?;
            values
                .as_boolean()
                .iter()
                .map(|value| value.and_then(|value| known.binary_search(&value).ok()))
                .collect()
        }
        Categories::Strings(known) if is_null || is_text_like(data_type) => {
            let values = cast(array, &DataType::Utf8)
                .map_err(|error| conversion_error(column, "string categories", &error))?;
            values
                .as_string::<i32>()
                .iter()
                .map(|value| {
                    value.and_then(|value| {
                        known
                            .binary_search_by(|category| category.as_str().cmp(value))
                            .ok()
                    })
                })
                .collect()
        }
        _ => {
            return Err(ModelError::Inputs {
                message: format!(
                    "column '{column}' has type {data_type}, expected {} categories",
                    categories.kind()
                ),
            });
        }
    };
    Ok(codes)
}

fn check_numeric(column: &str, array: &ArrayRef) -> Result<(), ModelError> {
    let data_type = array.data_type();
    if data_type.is_numeric() || matches!(data_type, DataType::Boolean | DataType::Null) {
        Ok(())
    } else {
        Err(ModelError::Inputs {
            message: format!(
                "column '{column}' has type {data_type}, expected numbers or booleans"
            ),
        })
    }
}

/// The values of a numerical column as `f64`, nulls as NaN.
fn values_f64(column: &str, array: &ArrayRef) -> Result<Vec<f64>, ModelError> {
    check_numeric(column, array)?;
    let values = cast(array, &DataType::Float64)
        .map_err(|error| conversion_error(column, "float64", &error))?;
    Ok(values
        .as_primitive::<Float64Type>()
        .iter()
        .map(|value| value.unwrap_or(f64::NAN))
        .collect())
}

/// Mean and population standard deviation of the non-NaN values, as scikit-learn's
/// `StandardScaler` computes them (a constant column gets a scale of 1).
fn learn_standardisation(column: &str, array: &ArrayRef) -> Result<Standardisation, ModelError> {
    let values = values_f64(column, array)?;
    if values.iter().any(|value| value.is_infinite()) {
        return Err(ModelError::Inputs {
            message: format!("column '{column}' has infinite values, which cannot be standardised"),
        });
    }
    let present: Vec<f64> = values.into_iter().filter(|value| !value.is_nan()).collect();
    if present.is_empty() {
        // Nothing to learn from: NaN stays NaN whatever the scale.
        return Ok(Standardisation {
            mean: 0.0,
            std: 1.0,
        });
    }
    let count = present.len() as f64;
    let mean = present.iter().sum::<f64>() / count;
    let variance = present
        .iter()
        .map(|value| (value - mean) * (value - mean))
        .sum::<f64>()
        / count;
    if !mean.is_finite() || !variance.is_finite() {
        return Err(ModelError::Inputs {
            message: format!(
                "column '{column}' has values too large to standardise (its variance overflows)"
            ),
        });
    }
    let std = if is_constant(variance, mean, count) {
        1.0
    } else {
        variance.sqrt()
    };
    Ok(Standardisation { mean, std })
}

/// Whether a variance computed from `count` values of mean `mean` is zero up to rounding
/// error, by scikit-learn's `_is_constant_feature` bound.
pub(crate) fn is_constant(variance: f64, mean: f64, count: f64) -> bool {
    let eps = f64::EPSILON;
    variance <= count * eps * variance + (count * mean * eps).powi(2)
}

fn numerical_values(
    column: &str,
    standard: Option<Standardisation>,
    array: &ArrayRef,
) -> Result<Vec<f32>, ModelError> {
    match standard {
        None => {
            check_numeric(column, array)?;
            // Straight to f32, rounding once, as numpy's `astype(np.float32)` does.
            let values = cast(array, &DataType::Float32)
                .map_err(|error| conversion_error(column, "float32", &error))?;
            Ok(values
                .as_primitive::<Float32Type>()
                .iter()
                .map(|value| value.unwrap_or(f32::NAN))
                .collect())
        }
        Some(Standardisation { mean, std }) => Ok(values_f64(column, array)?
            .into_iter()
            .map(|value| ((value - mean) / std) as f32)
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray, UInt8Array};
    use proptest::prelude::*;

    use super::*;
    use velo_core::schemas::ColumnSpec;

    fn int(values: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    fn float(values: &[f64]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn schema_of(columns: &[(&str, ColumnType)]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(name, data_type)| ColumnSpec::new(*name, *data_type))
                .collect(),
        )
    }

    fn config(categoricals: &[&str], drop: &[&str]) -> FeaturesConfig {
        FeaturesConfig {
            categoricals: categoricals.iter().map(ToString::to_string).collect(),
            drop: drop.iter().map(ToString::to_string).collect(),
            ..FeaturesConfig::default()
        }
    }

    fn column(matrix: &FeatureMatrix, name: &str) -> Vec<f32> {
        let position = matrix.names().iter().position(|n| n == name).unwrap();
        matrix.column(position).to_vec()
    }

    use crate::test_support::BIKE_NUMERICALS;

    /// A few rows shaped like the bike inputs after validation by configs/schemas/inputs.yaml.
    fn bike() -> (Schema, RecordBatch) {
        let mut spec = vec![
            ("instant", ColumnType::UInt32),
            ("dteday", ColumnType::Date),
            ("season", ColumnType::UInt8),
        ];
        spec.extend(BIKE_NUMERICALS.iter().map(|name| {
            let data_type = match *name {
                "holiday" | "workingday" => ColumnType::Bool,
                "temp" | "atemp" | "hum" | "windspeed" => ColumnType::Float32,
                "casual" | "registered" => ColumnType::UInt32,
                _ => ColumnType::UInt8,
            };
            (*name, data_type)
        }));
        spec.insert(9, ("weathersit", ColumnType::UInt8));
        let mut schema = schema_of(&spec);
        schema.index = Some("instant".to_owned());
        let rows = 8;
        let columns: Vec<(String, ArrayRef)> = schema
            .columns
            .iter()
            .enumerate()
            .map(|(position, column)| {
                // Values 1 to 4 in every column (so every season and weather is seen), and
                // distinct instants.
                let values: Vec<i64> = (0..rows)
                    .map(|row| match position {
                        0 => row as i64 + 1,
                        _ => (row * 7 + position) as i64 % 4 + 1,
                    })
                    .collect();
                let array: ArrayRef = match column.data_type {
                    ColumnType::Date => Arc::new(arrow::array::Date32Array::from(
                        values
                            .iter()
                            .map(|&v| 15_000 + v as i32)
                            .collect::<Vec<_>>(),
                    )),
                    ColumnType::Bool => Arc::new(BooleanArray::from(
                        values.iter().map(|&v| v % 2 == 0).collect::<Vec<_>>(),
                    )),
                    ColumnType::Float32 => Arc::new(arrow::array::Float32Array::from(
                        values.iter().map(|&v| v as f32 / 8.0).collect::<Vec<_>>(),
                    )),
                    _ => cast(&int(&values), &column.arrow_type()).unwrap(),
                };
                (column.name.clone(), array)
            })
            .collect();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let validated = schema.validate(&batch).unwrap();
        (schema, validated)
    }

    #[test]
    fn one_hot_names_and_order_match_scikit_learn_on_bike_columns() {
        // Reference (scikit-learn 1.9.1, run with /tmp/pyv/bin/python on hour.csv):
        //   ct = ColumnTransformer(
        //       [("categoricals", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        //         ["season", "weathersit"]),
        //        ("numericals", "passthrough", ["yr", "mnth", "hr", "holiday", "weekday",
        //         "workingday", "temp", "atemp", "hum", "windspeed", "casual", "registered"])],
        //       verbose_feature_names_out=False).fit(df.iloc[:13903])
        //   list(ct.get_feature_names_out())
        let expected = [
            "season_1",
            "season_2",
            "season_3",
            "season_4",
            "weathersit_1",
            "weathersit_2",
            "weathersit_3",
            "weathersit_4",
            "yr",
            "mnth",
            "hr",
            "holiday",
            "weekday",
            "workingday",
            "temp",
            "atemp",
            "hum",
            "windspeed",
            "casual",
            "registered",
        ];
        let (schema, inputs) = bike();
        let pipeline = FeaturePipeline::fit(
            &schema,
            &config(&["season", "weathersit"], &["dteday"]),
            &inputs,
        )
        .unwrap();
        assert_eq!(pipeline.feature_names(), expected);
        // The same columns listed explicitly give the same features.
        let mut explicit = config(&["season", "weathersit"], &["dteday"]);
        explicit.numericals = BIKE_NUMERICALS.iter().map(ToString::to_string).collect();
        let again = FeaturePipeline::fit(&schema, &explicit, &inputs).unwrap();
        assert_eq!(again, pipeline);
        let matrix = pipeline.transform(&inputs).unwrap();
        assert_eq!((matrix.n_rows(), matrix.n_features()), (8, 20));
        let groups = pipeline.groups();
        assert_eq!(groups[0], ("season".to_owned(), vec![0, 1, 2, 3]));
        assert_eq!(groups[1], ("weathersit".to_owned(), vec![4, 5, 6, 7]));
        assert_eq!(groups[2], ("yr".to_owned(), vec![8]));
        assert_eq!(groups.len(), 14);
        assert_eq!(
            pipeline.input_columns()[..3],
            ["season", "weathersit", "yr"]
        );
        // scikit-learn's names for booleans and strings: b_False b_True s_a s_b.
        let inputs = batch(vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec!["b", "a"]))),
        ]);
        let types = schema_of(&[("b", ColumnType::Bool), ("s", ColumnType::String)]);
        let pipeline = FeaturePipeline::fit(&types, &config(&["b", "s"], &[]), &inputs).unwrap();
        assert_eq!(
            pipeline.feature_names(),
            ["b_False", "b_True", "s_a", "s_b"]
        );
    }

    #[test]
    fn date_and_string_columns_must_be_dropped_or_categorical() {
        let (schema, inputs) = bike();
        let error = FeaturePipeline::fit(&schema, &config(&["season"], &[]), &inputs)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid parameter `features.drop`: column 'dteday' (date) does not hold numbers or \
             booleans: add it to `drop`, or to `categoricals`"
        );
        let mut explicit = config(&["season"], &[]);
        explicit.numericals = vec!["yr".to_owned(), "dteday".to_owned(), "temp".to_owned()];
        explicit.categoricals.clear();
        let error = FeaturePipeline::fit(&schema, &explicit, &inputs)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid parameter `features.numericals`: column 'dteday' (date) does not hold \
             numbers or booleans: add it to `drop`, or to `categoricals`"
        );
        // Declared categorical, a date becomes ISO text categories.
        let pipeline =
            FeaturePipeline::fit(&schema, &config(&["dteday"], &["season"]), &inputs).unwrap();
        assert_eq!(
            pipeline.feature_names()[..4],
            [
                "dteday_2011-01-27",
                "dteday_2011-01-28",
                "dteday_2011-01-29",
                "dteday_2011-01-30"
            ]
        );
    }

    #[test]
    fn config_mistakes_are_named() {
        let (schema, inputs) = bike();
        let check = |config: FeaturesConfig, expected: &str| {
            let error = FeaturePipeline::fit(&schema, &config, &inputs)
                .unwrap_err()
                .to_string();
            assert_eq!(error, expected);
        };
        check(
            config(&[], &["dteday", "nope", "gone"]),
            "invalid parameter `features.drop`: columns 'nope', 'gone' not in the inputs schema",
        );
        check(
            config(&["instant"], &["dteday"]),
            "invalid parameter `features.categoricals`: column 'instant' is the schema's \
             index, which is never a feature",
        );
        check(
            config(&["season", "season"], &["dteday"]),
            "invalid parameter `features.categoricals`: column 'season' is listed twice",
        );
        check(
            config(&["season"], &["dteday", "season"]),
            "invalid parameter `features.categoricals`: column 'season' is also in `drop`",
        );
        let mut both = config(&["season"], &["dteday"]);
        both.numericals = vec!["season".to_owned()];
        check(
            both,
            "invalid parameter `features.numericals`: column 'season' is categorical (in \
             `categoricals` or typed so in the schema)",
        );
        let all: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        check(
            config(&[], &all),
            "invalid parameter `features.drop`: no column of the inputs schema is left to feed \
             the model",
        );
    }

    #[test]
    fn schema_categoricals_come_after_config_ones_and_index_is_skipped() {
        let mut schema = schema_of(&[
            ("id", ColumnType::Int64),
            ("x", ColumnType::Float64),
            ("kind", ColumnType::Categorical),
            ("z", ColumnType::Int64),
        ]);
        schema.index = Some("id".to_owned());
        schema.columns[2].allowed = Some(vec!["b".into(), "a".into()]);
        let inputs = batch(vec![
            ("id", int(&[1, 2, 3])),
            ("x", float(&[0.5, 1.5, 2.5])),
            ("kind", Arc::new(StringArray::from(vec!["b", "a", "b"]))),
            ("z", int(&[7, 8, 7])),
        ]);
        let pipeline = FeaturePipeline::fit(&schema, &config(&["z"], &[]), &inputs).unwrap();
        assert_eq!(
            pipeline.feature_names(),
            ["z_7", "z_8", "kind_a", "kind_b", "x"]
        );
    }

    #[test]
    fn unknown_categories_and_nulls_are_all_zeros() {
        let schema = schema_of(&[("c", ColumnType::Int64), ("x", ColumnType::Float64)]);
        let train = batch(vec![
            ("c", int(&[3, 1, 2, 3])),
            ("x", float(&[1.0, 2.0, 3.0, 4.0])),
        ]);
        let pipeline = FeaturePipeline::fit(&schema, &config(&["c"], &[]), &train).unwrap();
        assert_eq!(pipeline.feature_names(), ["c_1", "c_2", "c_3", "x"]);
        let test = batch(vec![
            (
                "c",
                Arc::new(Int64Array::from(vec![Some(2), Some(9), None])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(0.5), None, Some(f64::NAN)])),
            ),
        ]);
        let matrix = pipeline.transform(&test).unwrap();
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|row| {
                let mut out = Vec::new();
                matrix.row_into(row, &mut out);
                out
            })
            .collect();
        assert_eq!(rows[0], [0.0, 1.0, 0.0, 0.5]);
        assert_eq!(rows[1][..3], [0.0, 0.0, 0.0]);
        assert!(rows[1][3].is_nan());
        assert_eq!(rows[2][..3], [0.0, 0.0, 0.0]);
        assert!(rows[2][3].is_nan());
    }

    #[test]
    fn ordinal_codes_are_positions_and_unknown_is_minus_one() {
        let schema = schema_of(&[("s", ColumnType::String), ("b", ColumnType::Bool)]);
        let train = batch(vec![
            (
                "s",
                Arc::new(StringArray::from(vec!["pear", "apple", "fig", "apple"])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false, true, true])),
            ),
        ]);
        let mut config = config(&["s", "b"], &[]);
        config.encoding = CategoricalEncoding::Ordinal;
        let pipeline = FeaturePipeline::fit(&schema, &config, &train).unwrap();
        assert_eq!(pipeline.feature_names(), ["s", "b"]);
        assert_eq!(
            pipeline.groups(),
            [("s".to_owned(), vec![0]), ("b".to_owned(), vec![1])]
        );
        // A dictionary-encoded string column is read like a plain one.
        let dictionary: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
            vec![Some("fig"), Some("kiwi"), None, Some("pear")]
                .into_iter()
                .collect();
        let test = batch(vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![
                    Some(false),
                    Some(true),
                    None,
                    Some(true),
                ])),
            ),
            ("s", Arc::new(dictionary) as ArrayRef),
        ]);
        let matrix = pipeline.transform(&test).unwrap();
        assert_eq!(column(&matrix, "s"), [1.0, -1.0, -1.0, 2.0]);
        assert_eq!(column(&matrix, "b"), [0.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn standard_scaling_matches_numpy() {
        // numpy 2.4.6: x = np.array([3.0, 1.0, np.nan, 7.5, 2.0]); np.nanmean(x) == 3.375,
        // np.nanstd(x) == 2.484325864293974, and StandardScaler().fit(x).transform(x) gives
        // [-0.1509463816279883, -0.9559937503105924, nan, 1.6604101979078711,
        //  -0.5534700659692904] (scikit-learn 1.9.1).
        let schema = schema_of(&[("x", ColumnType::Float64), ("k", ColumnType::Int64)]);
        let inputs = batch(vec![
            ("x", float(&[3.0, 1.0, f64::NAN, 7.5, 2.0])),
            ("k", int(&[4, 4, 4, 4, 4])),
        ]);
        let mut config = config(&[], &[]);
        config.scaling = Scaling::Standard;
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let scale = pipeline.numericals()[0].standard.unwrap();
        assert!((scale.mean - 3.375).abs() < 1e-15);
        assert!((scale.std - 2.484_325_864_293_974).abs() < 1e-15);
        // A constant column keeps a scale of 1 and becomes zeros.
        assert_eq!(pipeline.numericals()[1].standard.unwrap().std, 1.0);
        let matrix = pipeline.transform(&inputs).unwrap();
        let expected = [
            -0.150_946_381_627_988_3_f64,
            -0.955_993_750_310_592_4,
            f64::NAN,
            1.660_410_197_907_871_1,
            -0.553_470_065_969_290_4,
        ];
        for (got, want) in column(&matrix, "x").iter().zip(expected) {
            assert!(
                (got.is_nan() && want.is_nan()) || *got == want as f32,
                "{got} != {want}"
            );
        }
        assert_eq!(column(&matrix, "k"), [0.0; 5]);
    }

    #[test]
    fn transform_reads_columns_by_name_and_names_missing_ones() {
        let (schema, inputs) = bike();
        let config = config(&["season", "weathersit"], &["dteday"]);
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let expected = pipeline.transform(&inputs).unwrap();
        // Reversed columns, with wider or narrower physical types, give the same matrix.
        let reversed: Vec<(String, ArrayRef)> = inputs
            .schema()
            .fields()
            .iter()
            .zip(inputs.columns())
            .rev()
            .map(|(field, array)| {
                let array = match field.data_type() {
                    DataType::UInt8 | DataType::UInt32 => cast(array, &DataType::Int64).unwrap(),
                    DataType::Float32 => cast(array, &DataType::Float64).unwrap(),
                    _ => Arc::clone(array),
                };
                (field.name().clone(), array)
            })
            .collect();
        let reversed = RecordBatch::try_from_iter(reversed).unwrap();
        assert_eq!(pipeline.transform(&reversed).unwrap(), expected);
        let missing = reversed
            .project(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
            .unwrap();
        let error = pipeline.transform(&missing).unwrap_err().to_string();
        assert_eq!(error, "invalid inputs: columns 'season', 'yr' are missing");
        // A column of the wrong kind is named with its type.
        let check_wrong = |name: &str, array: ArrayRef, expected: &str| {
            let mut columns: Vec<(String, ArrayRef)> = inputs
                .schema()
                .fields()
                .iter()
                .zip(inputs.columns())
                .map(|(field, column)| (field.name().clone(), Arc::clone(column)))
                .collect();
            let position = columns.iter().position(|(n, _)| n == name).unwrap();
            columns[position].1 = array;
            let wrong = RecordBatch::try_from_iter(columns).unwrap();
            let error = pipeline.transform(&wrong).unwrap_err().to_string();
            assert_eq!(error, expected);
        };
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["1"; 8]));
        check_wrong(
            "season",
            Arc::clone(&texts),
            "invalid inputs: column 'season' has type Utf8, expected integer categories",
        );
        check_wrong(
            "temp",
            texts,
            "invalid inputs: column 'temp' has type Utf8, expected numbers or booleans",
        );
        check_wrong(
            "weathersit",
            float(&[1.0; 8]),
            "invalid inputs: column 'weathersit' has type Float64, expected integer categories",
        );
    }

    #[test]
    fn serde_round_trip_then_validate() {
        let (schema, inputs) = bike();
        let mut config = config(&["season", "weathersit"], &["dteday"]);
        config.scaling = Scaling::Standard;
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let json = serde_json::to_string(&pipeline).unwrap();
        let loaded: FeaturePipeline = serde_json::from_str(&json).unwrap();
        loaded.validate().unwrap();
        assert_eq!(loaded, pipeline);
        assert_eq!(
            loaded.transform(&inputs).unwrap(),
            pipeline.transform(&inputs).unwrap()
        );
    }

    #[test]
    fn validate_rejects_tampered_state() {
        let (schema, inputs) = bike();
        let mut config = config(&["season", "weathersit"], &["dteday"]);
        config.scaling = Scaling::Standard;
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let check = |tamper: &dyn Fn(&mut FeaturePipeline), expected: &str| {
            let mut tampered = pipeline.clone();
            tamper(&mut tampered);
            tampered.names = tampered.encoded_names();
            let error = tampered.validate().unwrap_err().to_string();
            assert_eq!(error, format!("invalid model artifact: {expected}"));
            // The same state, saved and loaded, is refused on load.
            let json = serde_json::to_string(&tampered).unwrap();
            let error = serde_json::from_str::<FeaturePipeline>(&json)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        };
        check(
            &|p| p.categoricals[0].categories = Categories::Integers(vec![2, 1, 3]),
            "the categories of column 'season' are not sorted and distinct",
        );
        check(
            &|p| p.categoricals[1].categories = Categories::Integers(vec![1, 1]),
            "the categories of column 'weathersit' are not sorted and distinct",
        );
        check(
            &|p| p.categoricals[0].categories = Categories::Strings(Vec::new()),
            "categorical column 'season' has no category",
        );
        check(
            &|p| p.numericals[1].column = "yr".to_owned(),
            "the feature pipeline lists column 'yr' twice",
        );
        check(
            &|p| {
                p.numericals[0].standard = Some(Standardisation {
                    mean: 0.0,
                    std: 0.0,
                });
            },
            "column 'yr' has mean 0 and standard deviation 0, expected finite numbers and a \
             positive deviation",
        );
        check(
            &|p| p.numericals[2].standard = None,
            "column 'hr' has no standardisation but scaling is standard",
        );
        check(
            &|p| {
                p.categoricals[0].column = "weathersit_1".to_owned();
                p.categoricals[0].categories = Categories::Booleans(vec![false]);
                p.categoricals[1].categories = Categories::Strings(vec!["1_False".to_owned()]);
                p.categoricals[1].column = "weathersit".to_owned();
                p.numericals[0].column = "weathersit_1_False".to_owned();
            },
            "two features are named 'weathersit_1_False'",
        );
        // A tampered cache of names is caught even when the columns are fine.
        let mut renamed = pipeline.clone();
        renamed.names[0] = "other".to_owned();
        assert_eq!(
            renamed.validate().unwrap_err().to_string(),
            "invalid model artifact: the feature names do not match the columns"
        );
        let json = serde_json::to_string(&pipeline).unwrap();
        let error = serde_json::from_str::<FeaturePipeline>(
            &json.replace("\"encoding\"", "\"x\":1,\"encoding\""),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `x`"), "{error}");
    }

    fn arbitrary_batch() -> impl Strategy<Value = RecordBatch> {
        (1_usize..60).prop_flat_map(|rows| {
            (
                proptest::collection::vec(proptest::option::weighted(0.9, 0_u8..6), rows),
                proptest::collection::vec(proptest::option::weighted(0.9, "[a-c]{1,2}"), rows),
                proptest::collection::vec(proptest::num::f64::ANY, rows),
            )
                .prop_map(|(small, text, numbers)| {
                    batch(vec![
                        ("small", Arc::new(UInt8Array::from(small)) as ArrayRef),
                        ("text", Arc::new(StringArray::from(text))),
                        ("number", float(&numbers)),
                    ])
                })
        })
    }

    proptest! {
        #[test]
        fn one_hot_rows_sum_to_one_per_seen_category(inputs in arbitrary_batch()) {
            let schema = schema_of(&[
                ("small", ColumnType::UInt8),
                ("text", ColumnType::String),
                ("number", ColumnType::Float64),
            ]);
            let config = config(&["small", "text"], &[]);
            let pipeline = match FeaturePipeline::fit(&schema, &config, &inputs) {
                Ok(pipeline) => pipeline,
                Err(error) => {
                    // Only an all-null categorical column cannot be fitted.
                    prop_assert!(error.to_string().contains("has no value"), "{error}");
                    return Ok(());
                }
            };
            pipeline.validate().unwrap();
            let matrix = pipeline.transform(&inputs).unwrap();
            prop_assert_eq!(matrix.n_rows(), inputs.num_rows());
            prop_assert_eq!(matrix.n_features(), pipeline.n_features());
            for (position, (_, features)) in pipeline.groups().iter().enumerate().take(2) {
                let column = inputs.column_by_name(["small", "text"][position]).unwrap();
                for row in 0..matrix.n_rows() {
                    let sum: f32 = features.iter().map(|&f| matrix.get(row, f)).sum();
                    let expected = if column.is_null(row) { 0.0 } else { 1.0 };
                    prop_assert_eq!(sum, expected);
                }
            }
            let numbers = column(&matrix, "number");
            let raw = inputs.column_by_name("number").unwrap().as_primitive::<Float64Type>();
            for (got, want) in numbers.iter().zip(raw.values()) {
                prop_assert!(got.to_bits() == (*want as f32).to_bits() || (got.is_nan() && want.is_nan()));
            }
        }
    }
}
