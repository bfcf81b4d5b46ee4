//! The configuration of the model kinds velo trains: [`ModelConfig`], `KIND`-tagged, which
//! builds an unfitted [`Model`](crate::Model) for an inputs schema.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::{GradientBoostingModel, NeuralNetModel};

/// Deserializes a count that must be at least `MIN`: a configuration asking for no trees, no
/// epochs or empty leaves fails when it is loaded (exit 2, the key named), not after a run
/// has started.
pub(crate) fn at_least<'de, D: Deserializer<'de>, const MIN: usize>(
    deserializer: D,
) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value < MIN {
        return Err(de::Error::invalid_value(
            de::Unexpected::Unsigned(value as u64),
            &format!("an integer >= {MIN}").as_str(),
        ));
    }
    Ok(value)
}

/// [`at_least`] 1 for an optional count (`null` stays allowed).
pub(crate) fn optional_at_least_one<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    match Option::<usize>::deserialize(deserializer)? {
        Some(0) => Err(de::Error::invalid_value(
            de::Unexpected::Unsigned(0),
            &"an integer >= 1 or null",
        )),
        other => Ok(other),
    }
}

/// A model to train, selected by `KIND`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum ModelConfig {
    /// A random forest regressor.
    RandomForestModel(RandomForestModel),
    /// Histogram gradient-boosted regression trees.
    GradientBoostingModel(GradientBoostingModel),
    /// A multilayer perceptron regressor (candle).
    NeuralNetModel(NeuralNetModel),
}

velo_core::impl_kind_deserialize!(ModelConfig {
    RandomForestModel,
    GradientBoostingModel,
    NeuralNetModel
});

impl Default for ModelConfig {
    fn default() -> Self {
        Self::RandomForestModel(RandomForestModel::default())
    }
}

impl ModelConfig {
    /// The `KIND` of this model.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RandomForestModel(_) => "RandomForestModel",
            Self::GradientBoostingModel(_) => "GradientBoostingModel",
            Self::NeuralNetModel(_) => "NeuralNetModel",
        }
    }

    /// The feature pipeline configuration of this model.
    pub fn features(&self) -> &FeaturesConfig {
        match self {
            Self::RandomForestModel(config) => &config.features,
            Self::GradientBoostingModel(config) => &config.features,
            Self::NeuralNetModel(config) => &config.features,
        }
    }
}

/// A random forest regressor: bagged regression trees on a feature pipeline.
///
/// The defaults are those of the reference package's model (200 trees of depth 20, seed 42).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RandomForestModel {
    /// Number of trees (at least 1).
    #[serde(
        default = "RandomForestModel::default_n_estimators",
        deserialize_with = "at_least::<_, 1>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub n_estimators: usize,
    /// Maximum depth of each tree (at least 1); `null` grows trees until leaves are pure.
    #[serde(
        default = "RandomForestModel::default_max_depth",
        deserialize_with = "optional_at_least_one"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub max_depth: Option<usize>,
    /// Minimum number of samples needed to split a node (at least 2).
    #[serde(
        default = "RandomForestModel::default_min_samples_split",
        deserialize_with = "at_least::<_, 2>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 2)))]
    pub min_samples_split: usize,
    /// Minimum number of samples in a leaf (at least 1).
    #[serde(
        default = "RandomForestModel::default_min_samples_leaf",
        deserialize_with = "at_least::<_, 1>"
    )]
    #[cfg_attr(feature = "schemars", schemars(range(min = 1)))]
    pub min_samples_leaf: usize,
    /// Features considered at each split.
    #[serde(default)]
    pub max_features: MaxFeatures,
    /// Draw a bootstrap sample for each tree.
    #[serde(default = "RandomForestModel::default_bootstrap")]
    pub bootstrap: bool,
    /// Random seed: the same seed gives the same forest whatever the thread count.
    #[serde(default = "RandomForestModel::default_seed")]
    pub seed: u64,
    /// The feature pipeline in front of the trees.
    #[serde(default)]
    pub features: FeaturesConfig,
}

impl RandomForestModel {
    fn default_n_estimators() -> usize {
        200
    }
    #[expect(
        clippy::unnecessary_wraps,
        reason = "serde default of an optional field"
    )]
    fn default_max_depth() -> Option<usize> {
        Some(20)
    }
    fn default_min_samples_split() -> usize {
        2
    }
    fn default_min_samples_leaf() -> usize {
        1
    }
    fn default_bootstrap() -> bool {
        true
    }
    fn default_seed() -> u64 {
        42
    }
}

impl Default for RandomForestModel {
    fn default() -> Self {
        Self {
            n_estimators: Self::default_n_estimators(),
            max_depth: Self::default_max_depth(),
            min_samples_split: Self::default_min_samples_split(),
            min_samples_leaf: Self::default_min_samples_leaf(),
            max_features: MaxFeatures::default(),
            bootstrap: Self::default_bootstrap(),
            seed: Self::default_seed(),
            features: FeaturesConfig::default(),
        }
    }
}

/// How many features a tree considers at each split.
///
/// Written as `all`, `sqrt`, `log2`, an integer count or a fraction in (0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub enum MaxFeatures {
    /// Every feature (scikit-learn's regressor default).
    #[default]
    All,
    /// The square root of the number of features.
    Sqrt,
    /// The base-2 logarithm of the number of features.
    Log2,
    /// A fixed number of features.
    Count(usize),
    /// A fraction of the features.
    Fraction(f64),
}

impl Serialize for MaxFeatures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => serializer.serialize_str("all"),
            Self::Sqrt => serializer.serialize_str("sqrt"),
            Self::Log2 => serializer.serialize_str("log2"),
            Self::Count(count) => serializer.serialize_u64(*count as u64),
            Self::Fraction(fraction) => serializer.serialize_f64(*fraction),
        }
    }
}

impl<'de> Deserialize<'de> for MaxFeatures {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = MaxFeatures;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "\"all\", \"sqrt\", \"log2\", a positive integer or a fraction in (0, 1]",
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<MaxFeatures, E> {
                match value {
                    "all" => Ok(MaxFeatures::All),
                    "sqrt" => Ok(MaxFeatures::Sqrt),
                    "log2" => Ok(MaxFeatures::Log2),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<MaxFeatures, E> {
                match usize::try_from(value) {
                    Ok(count) if count > 0 => Ok(MaxFeatures::Count(count)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(value), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<MaxFeatures, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &self)),
                }
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<MaxFeatures, E> {
                if value > 0.0 && value <= 1.0 {
                    Ok(MaxFeatures::Fraction(value))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(value), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for MaxFeatures {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaxFeatures".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"all\", \"sqrt\", \"log2\", a positive integer or a fraction in (0, 1]",
            "anyOf": [
                {"type": "string", "enum": ["all", "sqrt", "log2"]},
                {"type": "integer", "minimum": 1},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
            ]
        })
    }
}

/// The feature pipeline: which input columns feed the model, and how they are encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Columns encoded as categories (besides those the inputs schema types `categorical`).
    #[serde(default)]
    pub categoricals: Vec<String>,
    /// Numerical columns passed to the model; empty means every remaining input column.
    #[serde(default)]
    pub numericals: Vec<String>,
    /// Columns never passed to the model (the schema's index is always left out).
    #[serde(default)]
    pub drop: Vec<String>,
    /// How categories are encoded.
    #[serde(default)]
    pub encoding: CategoricalEncoding,
    /// How numerical columns are scaled (categorical encodings are never scaled).
    #[serde(default)]
    pub scaling: Scaling,
}

/// How numerical columns are scaled before they reach the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scaling {
    /// Values are passed through unchanged (what trees need: splits do not care about scale).
    #[default]
    None,
    /// `(x - mean) / std`, with the mean and the population standard deviation of the training
    /// data (missing values ignored; a constant column keeps a scale of 1), as scikit-learn's
    /// `StandardScaler`; for models sensitive to scale, such as neural networks.
    Standard,
}

/// How categorical columns are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CategoricalEncoding {
    /// One indicator column per category seen in training; unknown categories are all zeros.
    #[default]
    OneHot,
    /// One integer column of category codes; unknown categories get a reserved code.
    Ordinal,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ModelConfig, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn defaults_are_the_reference_forest() {
        let Ok(ModelConfig::RandomForestModel(model)) = parse("KIND: RandomForestModel") else {
            panic!("a forest");
        };
        assert_eq!(model, RandomForestModel::default());
        assert_eq!(
            (model.n_estimators, model.max_depth, model.seed),
            (200, Some(20), 42)
        );
    }

    #[test]
    fn the_network_is_a_model_kind() {
        let Ok(ModelConfig::NeuralNetModel(model)) =
            parse("{KIND: NeuralNetModel, hidden_layers: [16], activation: tanh}")
        else {
            panic!("a network");
        };
        assert_eq!(model.hidden_layers, vec![16]);
        let config = ModelConfig::NeuralNetModel(model);
        assert_eq!(config.kind(), "NeuralNetModel");
        assert_eq!(config.features().scaling, Scaling::Standard);
        let error = parse("{KIND: NeuralNetModel, activation: swish}").unwrap_err();
        assert!(error.to_string().contains("swish"), "{error}");
    }

    #[test]
    fn max_features_accepts_names_counts_and_fractions() {
        for (text, expected) in [
            ("all", MaxFeatures::All),
            ("sqrt", MaxFeatures::Sqrt),
            ("log2", MaxFeatures::Log2),
            ("3", MaxFeatures::Count(3)),
            ("0.5", MaxFeatures::Fraction(0.5)),
        ] {
            let model = parse(&format!(
                "{{KIND: RandomForestModel, max_features: {text}}}"
            ))
            .expect(text);
            let ModelConfig::RandomForestModel(model) = model else {
                panic!("a forest");
            };
            assert_eq!(model.max_features, expected);
            let round_trip: MaxFeatures =
                serde_json::from_value(serde_json::to_value(expected).expect("serializes"))
                    .expect("parses");
            assert_eq!(round_trip, expected);
        }
        for bad in ["0", "1.5", "-1", "half"] {
            assert!(
                parse(&format!("{{KIND: RandomForestModel, max_features: {bad}}}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_kinds_fail() {
        assert!(parse("{KIND: RandomForestModel, max_dept: 3}").is_err());
        assert!(parse("{KIND: RandomForest}").is_err());
        assert!(parse("{KIND: RandomForestModel, features: {drop: [a], keep: [b]}}").is_err());
    }
}
