//! Data drift: compact profiles of reference data, and per-column drift of production data
//! against them, with Evidently's methods and defaults.
//!
//! A [`DataProfile`] (kilobytes: every value of small columns, else 1,001 quantiles; category
//! counts; missing counts) is stored with a model version at training time, so monitoring
//! needs no access to the training files. [`column_drift`] compares a column of a window of
//! production data with its reference profile; [`default_method`] picks the method as
//! Evidently does:
//!
//! | reference column | up to 1,000 values | more |
//! |---|---|---|
//! | numerical, more than 5 distinct values | Kolmogorov–Smirnov, drift when p < 0.05 | Wasserstein distance / reference std ≥ 0.1 |
//! | categorical, or at most 5 distinct values | chi-squared, drift when p < 0.05 | Jensen–Shannon distance ≥ 0.1 |
//!
//! Categories are compared with a chi-squared test of homogeneity rather than Evidently's
//! goodness-of-fit, whose false alarms exceed its nominal rate ([`DriftMethod::ChiSquare`]).
//! The population stability index (drift at 0.1) is available on request. A dataset drifts
//! when at least half of its columns do ([`DatasetDrift`]).

mod profile;
pub mod sketch;
pub mod statistics;
mod windows;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use profile::{
    CategoricalProfile, ColumnProfile, DataProfile, ESTIMATOR_PREDICTION, EXACT_UP_TO, MAX_LEVELS,
    NumericalProfile, ProfileBuilder, ProfileOptions, QUANTILES, ReferenceProfile,
    WINDOW_EXACT_UP_TO, profile_arrays,
};
pub use windows::{Period, Window, WindowSpec, windows};

/// Reference columns with at most this many distinct numbers are compared as categories.
pub const CATEGORICAL_UP_TO: usize = 5;

/// Bins of numerical columns for the population stability index and the Jensen–Shannon
/// distance: equal widths over the range of both samples.
pub const BINS: usize = 10;

/// A drift method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Two-sample Kolmogorov–Smirnov test (numerical): drift when the p-value is below the
    /// threshold (0.05).
    Ks,
    /// Wasserstein distance divided by the reference's standard deviation (numerical): drift
    /// at or above the threshold (0.1).
    Wasserstein,
    /// Pearson's chi-squared test of homogeneity of the reference and current counts: drift
    /// when the p-value is below the threshold (0.05). (Evidently tests the current counts
    /// against the reference's shares, which ignores the reference's own noise and raised
    /// 11% false alarms at the nominal 5% in velo's test.)
    ChiSquare,
    /// Jensen–Shannon distance (natural logarithm): drift at or above the threshold (0.1).
    JensenShannon,
    /// Population stability index: drift at or above the threshold (0.1).
    Psi,
}

impl DriftMethod {
    /// Evidently's default threshold of the method.
    pub fn default_threshold(self) -> f64 {
        match self {
            Self::Ks | Self::ChiSquare => 0.05,
            Self::Wasserstein | Self::JensenShannon | Self::Psi => 0.1,
        }
    }

    /// Whether the method is a test (drift when its p-value is below the threshold) rather
    /// than a distance (drift at or above it).
    pub fn is_test(self) -> bool {
        matches!(self, Self::Ks | Self::ChiSquare)
    }

    /// The method's name in configs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ks => "ks",
            Self::Wasserstein => "wasserstein",
            Self::ChiSquare => "chi_square",
            Self::JensenShannon => "jensen_shannon",
            Self::Psi => "psi",
        }
    }
}

/// Evidently's choice of method for a reference column (see the [module](self) table).
pub fn default_method(reference: &ColumnProfile) -> DriftMethod {
    let small = reference.count() as usize <= EXACT_UP_TO;
    let categorical = match reference {
        ColumnProfile::Categorical(_) => true,
        ColumnProfile::Numerical(profile) => profile
            .distinct()
            .is_some_and(|distinct| distinct <= CATEGORICAL_UP_TO),
    };
    match (categorical, small) {
        (false, true) => DriftMethod::Ks,
        (false, false) => DriftMethod::Wasserstein,
        (true, true) => DriftMethod::ChiSquare,
        (true, false) => DriftMethod::JensenShannon,
    }
}

/// The drift of one column of a window against its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnDrift {
    /// The method used.
    pub method: DriftMethod,
    /// The p-value (tests) or distance (the others).
    pub score: f64,
    /// The threshold the score was held against.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
}

/// Why a drift could not be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DriftError {
    /// One side has no value to compare.
    #[error("no {side} values to compare")]
    Empty {
        /// `reference` or `current`.
        side: &'static str,
    },
    /// The method needs numbers and one side holds categories.
    #[error("{method} compares numbers, and the {side} column holds categories")]
    NotNumerical {
        /// The method's name.
        method: &'static str,
        /// `reference` or `current`.
        side: &'static str,
    },
    /// A threshold outside its range.
    #[error("threshold {threshold} of {method} is not in {range}")]
    Threshold {
        /// The method's name.
        method: &'static str,
        /// The threshold given.
        threshold: f64,
        /// The accepted range.
        range: &'static str,
    },
}

/// The drift of the `current` profile of a column against its `reference` profile, with
/// `method` (else [`default_method`]) and `threshold` (else the method's default).
///
/// Current profiles should keep every value ([`ProfileOptions::keeping_every_value`]); the
/// reference may hold quantiles (each then stands for an equal share of its rows, the tests
/// using the reference's real row count).
///
/// # Errors
/// [`DriftError`] when a side is empty, a numerical method meets categories, or the threshold
/// is out of range (a p-value threshold outside `(0, 1)`, a negative distance).
pub fn column_drift(
    reference: &ColumnProfile,
    current: &ColumnProfile,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    let method = method.unwrap_or_else(|| default_method(reference));
    let threshold = threshold.unwrap_or_else(|| method.default_threshold());
    let valid = if method.is_test() {
        threshold > 0.0 && threshold < 1.0
    } else {
        threshold >= 0.0 && threshold.is_finite()
    };
    if !valid {
        return Err(DriftError::Threshold {
            method: method.name(),
            threshold,
            range: if method.is_test() {
                "(0, 1)"
            } else {
                "[0, inf)"
            },
        });
    }
    if reference.count() == 0 {
        return Err(DriftError::Empty { side: "reference" });
    }
    if current.count() == 0 {
        return Err(DriftError::Empty { side: "current" });
    }
    let score = match method {
        DriftMethod::Ks => {
            let (reference, current) = numerical(reference, current, method)?;
            let statistic = statistics::ks_statistic(&reference.points(), &current.points());
            statistics::ks_test(statistic, reference.count as usize, current.count as usize).p_value
        }
        DriftMethod::Wasserstein => {
            let (reference, current) = numerical(reference, current, method)?;
            statistics::wasserstein(&reference.points(), &current.points())
                / reference.std.max(0.001)
        }
        DriftMethod::ChiSquare => {
            let (reference, current) = counts(reference, current);
            statistics::chi_square_homogeneity(&reference, &current).1
        }
        DriftMethod::JensenShannon => {
            let (reference, current) = counts(reference, current);
            statistics::jensen_shannon(&reference, &current)
        }
        DriftMethod::Psi => {
            let (reference, current) = counts(reference, current);
            statistics::population_stability(&reference, &current)
        }
    };
    let drifted = if method.is_test() {
        score < threshold
    } else {
        score >= threshold
    };
    Ok(ColumnDrift {
        method,
        score,
        threshold,
        drifted,
    })
}

fn numerical<'a>(
    reference: &'a ColumnProfile,
    current: &'a ColumnProfile,
    method: DriftMethod,
) -> Result<(&'a NumericalProfile, &'a NumericalProfile), DriftError> {
    let side = |profile: &'a ColumnProfile, side| match profile {
        ColumnProfile::Numerical(profile) => Ok(profile),
        ColumnProfile::Categorical(_) => Err(DriftError::NotNumerical {
            method: method.name(),
            side,
        }),
    };
    Ok((side(reference, "reference")?, side(current, "current")?))
}

/// Both sides as counts over the same bins: categories (numbers with few distinct values
/// count as categories), else [`BINS`] equal-width bins over both sides' range.
fn counts(reference: &ColumnProfile, current: &ColumnProfile) -> (Vec<f64>, Vec<f64>) {
    if let (ColumnProfile::Numerical(reference), ColumnProfile::Numerical(current)) =
        (reference, current)
        && reference
            .distinct()
            .is_none_or(|distinct| distinct > CATEGORICAL_UP_TO)
    {
        let (reference, current) = (reference.points(), current.points());
        let low = reference[0].min(current[0]);
        let high = reference[reference.len() - 1].max(current[current.len() - 1]);
        return (
            statistics::histogram(&reference, low, high, BINS),
            statistics::histogram(&current, low, high, BINS),
        );
    }
    let (reference, current) = (categories(reference), categories(current));
    let mut union: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (category, &count) in &reference {
        union.entry(category).or_default().0 = count;
    }
    for (category, &count) in &current {
        union.entry(category).or_default().1 = count;
    }
    union.into_values().unzip()
}

/// A column's counts per category; numbers count by value (their distinct values, else every
/// value kept; quantiles count as equal shares of the rows).
fn categories(profile: &ColumnProfile) -> BTreeMap<String, f64> {
    match profile {
        ColumnProfile::Categorical(profile) => profile
            .categories
            .iter()
            .map(|(category, &count)| (category.clone(), count as f64))
            .collect(),
        ColumnProfile::Numerical(profile) => {
            let mut counts = BTreeMap::new();
            if let Some(levels) = &profile.levels {
                for &(value, count) in levels {
                    counts.insert(value.to_string(), count as f64);
                }
            } else {
                let points = profile.points();
                let weight = profile.count as f64 / points.len() as f64;
                for value in points.iter() {
                    *counts.entry(value.to_string()).or_insert(0.0) += weight;
                }
            }
            counts
        }
    }
}

/// The method and threshold of one column, where they differ from the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnSettings {
    /// The method (default: Evidently's choice for the column's type and size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    /// The threshold (default: the method's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// The drift of each column of `reference` in `current`, in the reference's order, with the
/// settings of `settings` where a column has some. A column `current` lacks is an
/// [`DriftError::Empty`] of the current side.
pub fn compare(
    reference: &DataProfile,
    current: &DataProfile,
    settings: &BTreeMap<String, ColumnSettings>,
) -> Vec<(String, Result<ColumnDrift, DriftError>)> {
    reference
        .columns
        .iter()
        .map(|(name, profile)| {
            let setting = settings.get(name).copied().unwrap_or_default();
            let drift = match current.column(name) {
                Some(window) => column_drift(profile, window, setting.method, setting.threshold),
                None => Err(DriftError::Empty { side: "current" }),
            };
            (name.clone(), drift)
        })
        .collect()
}

/// Whether a dataset drifted: the share of its columns that did, against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DatasetDrift {
    /// Columns compared.
    pub columns: usize,
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / columns` (0 without columns).
    pub share: f64,
    /// The share at which the dataset drifts (Evidently: 0.5).
    pub threshold: f64,
    /// Whether `share >= threshold`.
    pub drifted: bool,
}

impl DatasetDrift {
    /// Evidently's share of drifted columns at which a dataset drifts.
    pub const DEFAULT_THRESHOLD: f64 = 0.5;

    /// The dataset drift of column results.
    pub fn of<'a>(columns: impl IntoIterator<Item = &'a ColumnDrift>, threshold: f64) -> Self {
        let (mut total, mut drifted) = (0, 0);
        for column in columns {
            total += 1;
            drifted += usize::from(column.drifted);
        }
        let share = if total == 0 {
            0.0
        } else {
            drifted as f64 / total as f64
        };
        Self {
            columns: total,
            drifted_columns: drifted,
            share,
            threshold,
            drifted: total > 0 && share >= threshold,
        }
    }
}

#[cfg(test)]
mod tests;
