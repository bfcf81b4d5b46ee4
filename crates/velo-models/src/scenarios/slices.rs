//! Slices: named subsets of the rows, declared as filters over input columns or found where
//! the model's error is worst.

use serde::{Deserialize, Serialize};
use velo_core::schemas::Value;

use super::columns::{self, Values};
use crate::{FeatureMatrix, MaxFeatures, RandomForestModel, forest::RandomForest};

/// A filter over input columns: one condition on a `column` (`in`, `equals`, `min`, `max`,
/// the last two inclusive and combinable), or a combination of filters (`all`, `any`, `not`).
///
/// ```yaml
/// all:
///   - {column: hr, in: [7, 8, 9, 17, 18, 19]}
///   - {column: temp, min: 0.6}
///   - not: {column: holiday, equals: true}
/// ```
///
/// Numeric and boolean columns compare as numbers (`true` is 1); other columns compare as text,
/// dates and datetimes in their ISO form (`min: "2012-06-01"`). A null never matches a condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The column a condition tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The row matches when the column holds one of these values.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The row matches when the column holds this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The row matches when the column is at least this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// The row matches when the column is at most this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// The row matches every filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<Filter>>,
    /// The row matches at least one filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<Filter>>,
    /// The row does not match the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Filter>>,
}

impl Filter {
    /// A condition `low <= column <= high` (either bound optional).
    pub fn range(column: impl Into<String>, low: Option<f64>, high: Option<f64>) -> Self {
        Self {
            column: Some(column.into()),
            min: low.map(Value::Float),
            max: high.map(Value::Float),
            ..Self::default()
        }
    }

    /// Checks the filter's shape: a condition has a column and at least one test; a
    /// combination has exactly one of `all`, `any`, `not` and no column.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        let combinations = usize::from(self.all.is_some())
            + usize::from(self.any.is_some())
            + usize::from(self.not.is_some());
        let tests = self.one_of.is_some()
            || self.equals.is_some()
            || self.min.is_some()
            || self.max.is_some();
        match (&self.column, combinations) {
            (Some(column), 0) if tests => Ok(()),
            (Some(column), 0) => Err(format!(
                "the condition on `{column}` needs `in`, `equals`, `min` or `max`"
            )),
            (Some(column), _) => Err(format!(
                "a condition on `{column}` cannot also hold `all`, `any` or `not`; nest them"
            )),
            (None, 1) if tests => Err(
                "`in`, `equals`, `min` and `max` need a `column`".to_owned(),
            ),
            (None, 1) => {
                for filter in self.children() {
                    filter.check()?;
                }
                if self.all.as_ref().is_some_and(Vec::is_empty)
                    || self.any.as_ref().is_some_and(Vec::is_empty)
                {
                    return Err("`all` and `any` need at least one filter".to_owned());
                }
                Ok(())
            }
            (None, 0) => Err(
                "a filter needs a `column` with `in`, `equals`, `min` or `max`, or one of `all`, `any`, `not`"
                    .to_owned(),
            ),
            (None, _) => Err("a filter holds one of `all`, `any` or `not`; nest them".to_owned()),
        }
    }

    fn children(&self) -> impl Iterator<Item = &Filter> {
        self.all
            .iter()
            .flatten()
            .chain(self.any.iter().flatten())
            .chain(self.not.as_deref())
    }

    /// The filter in words: `hr in [7, 8] and temp >= 0.6`.
    pub fn describe(&self) -> String {
        let join = |filters: &[Filter], word: &str| {
            let parts: Vec<String> = filters
                .iter()
                .map(|filter| {
                    let text = filter.describe();
                    if filter.column.is_none() && filters.len() > 1 {
                        format!("({text})")
                    } else {
                        text
                    }
                })
                .collect();
            parts.join(word)
        };
        if let Some(all) = &self.all {
            return join(all, " and ");
        }
        if let Some(any) = &self.any {
            return join(any, " or ");
        }
        if let Some(not) = &self.not {
            return format!("not ({})", not.describe());
        }
        let column = self.column.as_deref().unwrap_or("?");
        let mut parts = Vec::new();
        if let Some(values) = &self.one_of {
            let values: Vec<String> = values.iter().map(Value::to_string).collect();
            parts.push(format!("{column} in [{}]", values.join(", ")));
        }
        if let Some(value) = &self.equals {
            parts.push(format!("{column} = {value}"));
        }
        match (&self.min, &self.max) {
            (Some(low), Some(high)) => parts.push(format!("{low} <= {column} <= {high}")),
            (Some(low), None) => parts.push(format!("{column} >= {low}")),
            (None, Some(high)) => parts.push(format!("{column} <= {high}")),
            (None, None) => {}
        }
        parts.join(" and ")
    }

    /// Which rows of `batch` match.
    ///
    /// # Errors
    /// A column missing from `batch`, or a value of the wrong kind for its column (text for a
    /// numeric column).
    pub fn mask(&self, batch: &arrow::record_batch::RecordBatch) -> Result<Vec<bool>, String> {
        let rows = batch.num_rows();
        if let Some(all) = &self.all {
            let mut mask = vec![true; rows];
            for filter in all {
                for (kept, matched) in mask.iter_mut().zip(filter.mask(batch)?) {
                    *kept &= matched;
                }
            }
            return Ok(mask);
        }
        if let Some(any) = &self.any {
            let mut mask = vec![false; rows];
            for filter in any {
                for (kept, matched) in mask.iter_mut().zip(filter.mask(batch)?) {
                    *kept |= matched;
                }
            }
            return Ok(mask);
        }
        if let Some(not) = &self.not {
            return Ok(not
                .mask(batch)?
                .into_iter()
                .map(|matched| !matched)
                .collect());
        }
        let name = self.column.as_deref().ok_or("a filter without a column")?;
        let values = columns::values(columns::column(batch, name)?)?;
        match values {
            Values::Numbers(numbers) => {
                let number = |value: &Value| {
                    columns::value_number(value).ok_or_else(|| {
                        format!("column `{name}` holds numbers, but the filter compares it with {value:?}")
                    })
                };
                let one_of: Option<Vec<f64>> = self
                    .one_of
                    .as_ref()
                    .map(|values| values.iter().map(number).collect())
                    .transpose()?;
                let equals = self.equals.as_ref().map(number).transpose()?;
                let low = self.min.as_ref().map(number).transpose()?;
                let high = self.max.as_ref().map(number).transpose()?;
                Ok(numbers
                    .iter()
                    .map(|value| {
                        value.is_some_and(|value| {
                            one_of.as_ref().is_none_or(|set| set.contains(&value))
                                && equals.is_none_or(|equal| value == equal)
                                && low.is_none_or(|low| value >= low)
                                && high.is_none_or(|high| value <= high)
                        })
                    })
                    .collect())
            }
            Values::Texts(texts) => {
                let text = |value: &Value| value.to_string();
                let one_of: Option<Vec<String>> = self
                    .one_of
                    .as_ref()
                    .map(|values| values.iter().map(text).collect());
                let equals = self.equals.as_ref().map(text);
                let low = self.min.as_ref().map(text);
                let high = self.max.as_ref().map(text);
                Ok(texts
                    .iter()
                    .map(|value| {
                        value.as_deref().is_some_and(|value| {
                            one_of
                                .as_ref()
                                .is_none_or(|set| set.iter().any(|item| item == value))
                                && equals.as_deref().is_none_or(|equal| value == equal)
                                && low.as_deref().is_none_or(|low| value >= low)
                                && high.as_deref().is_none_or(|high| value <= high)
                        })
                    })
                    .collect())
            }
        }
    }
}

/// How slices of high error are searched for: a shallow regression tree fitted on each row's
/// loss (the squared error), whose leaves are conjunctions of ranges over input columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AutoSlices {
    /// How many slices to report at most (the worst first); 0 turns the search off.
    #[serde(default = "AutoSlices::default_count")]
    pub count: usize,
    /// Depth of the tree: the most conditions a slice has (at least 1).
    #[serde(default = "AutoSlices::default_max_depth")]
    pub max_depth: usize,
    /// The fewest rows a slice holds, as a fraction of the rows (at least one row).
    #[serde(default = "AutoSlices::default_min_fraction")]
    pub min_fraction: f64,
    /// Columns the search must not use (an index, a date); numeric and boolean columns are used.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl Default for AutoSlices {
    fn default() -> Self {
        Self {
            count: Self::default_count(),
            max_depth: Self::default_max_depth(),
            min_fraction: Self::default_min_fraction(),
            exclude: Vec::new(),
        }
    }
}

impl AutoSlices {
    fn default_count() -> usize {
        3
    }
    fn default_max_depth() -> usize {
        2
    }
    fn default_min_fraction() -> f64 {
        0.02
    }
}

/// A column's range on a tree path: the column, its exclusive lower and inclusive upper bound.
type Bound = (usize, Option<f32>, Option<f32>);

/// A slice of high error found by [`find_slices`].
#[derive(Debug, Clone, PartialEq)]
pub struct FoundSlice {
    /// The slice as a filter over input columns.
    pub filter: Filter,
    /// The slice in words, with the tree's strict lower bounds (`temp > 0.505 and hr <= 6.5`).
    pub description: String,
    /// Rows in the slice.
    pub rows: usize,
    /// The slice's mean loss over the mean loss of all rows (above 1: worse than average).
    pub lift: f64,
}

/// Finds up to `options.count` slices of `inputs` where `loss` (one value per row) is highest,
/// each worse than the average row: the leaves of a regression tree of depth
/// `options.max_depth` fitted on the loss over the numeric and boolean input columns, worst
/// first.
///
/// # Errors
/// A loss of the wrong length or not finite.
pub fn find_slices(
    inputs: &arrow::record_batch::RecordBatch,
    loss: &[f64],
    options: &AutoSlices,
) -> Result<Vec<FoundSlice>, String> {
    let rows = inputs.num_rows();
    if loss.len() != rows {
        return Err(format!("{} losses for {rows} rows", loss.len()));
    }
    if options.count == 0 || rows < 2 {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    let mut features = Vec::new();
    for field in inputs.schema().fields() {
        if options.exclude.contains(field.name()) || !columns::is_numeric(field.data_type()) {
            continue;
        }
        let Values::Numbers(values) = columns::values(columns::column(inputs, field.name())?)?
        else {
            continue;
        };
        // Missing values sort after every number, as the trees send NaN right.
        features.push(
            values
                .iter()
                .map(|value| value.map_or(f32::MAX, |value| value as f32))
                .map(|value| if value.is_finite() { value } else { f32::MAX })
                .collect::<Vec<f32>>(),
        );
        names.push(field.name().clone());
    }
    if features.is_empty() {
        return Ok(Vec::new());
    }
    let matrix = FeatureMatrix::from_columns(names.clone(), features)?;
    let min_rows = ((options.min_fraction * rows as f64).ceil() as usize).max(1);
    let params = RandomForestModel {
        n_estimators: 1,
        max_depth: Some(options.max_depth.max(1)),
        min_samples_leaf: min_rows,
        min_samples_split: (2 * min_rows).max(2),
        max_features: MaxFeatures::All,
        bootstrap: false,
        ..RandomForestModel::default()
    };
    let forest = RandomForest::fit(&params, &matrix, loss).map_err(|error| error.to_string())?;
    let tree = &forest.trees()[0];
    let mean_loss = loss.iter().sum::<f64>() / rows as f64;
    // Walk the tree, keeping for each leaf the range each column is held to on its path.
    let mut leaves: Vec<(Vec<Bound>, f64, f64)> = Vec::new();
    let mut stack = vec![(0_usize, Vec::<Bound>::new())];
    while let Some((index, path)) = stack.pop() {
        let node = tree.nodes()[index];
        if node.is_leaf() {
            leaves.push((path, node.value, node.cover));
            continue;
        }
        let feature = node.feature as usize;
        let bound = |path: &[Bound], left: bool| {
            let mut path = path.to_vec();
            match path.iter_mut().find(|(column, _, _)| *column == feature) {
                Some(entry) if left => entry.2 = Some(node.threshold),
                Some(entry) => entry.1 = Some(node.threshold),
                None if left => path.push((feature, None, Some(node.threshold))),
                None => path.push((feature, Some(node.threshold), None)),
            }
            path
        };
        stack.push((node.right as usize, bound(&path, false)));
        stack.push((node.left as usize, bound(&path, true)));
    }
    leaves.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut found = Vec::new();
    for (path, value, cover) in leaves {
        if found.len() == options.count || path.is_empty() || value <= mean_loss {
            break;
        }
        let conditions: Vec<Filter> = path
            .iter()
            .map(|&(column, low, high)| {
                Filter::range(
                    names[column].clone(),
                    // Thresholds lie between two values: a row at the upper bound goes left,
                    // so the lower bound is nudged up to stay exclusive.
                    low.map(|low| f64::from(low.next_up())),
                    high.map(f64::from),
                )
            })
            .collect();
        let description: Vec<String> = path
            .iter()
            .map(|&(column, low, high)| {
                let name = &names[column];
                match (low, high) {
                    (Some(low), Some(high)) => format!("{low} < {name} <= {high}"),
                    (Some(low), None) => format!("{name} > {low}"),
                    (None, Some(high)) => format!("{name} <= {high}"),
                    (None, None) => name.clone(),
                }
            })
            .collect();
        let filter = if conditions.len() == 1 {
            conditions.into_iter().next().unwrap_or_default()
        } else {
            Filter {
                all: Some(conditions),
                ..Filter::default()
            }
        };
        found.push(FoundSlice {
            filter,
            description: description.join(" and "),
            rows: cover.round() as usize,
            lift: if mean_loss > 0.0 {
                value / mean_loss
            } else {
                1.0
            },
        });
    }
    Ok(found)
}
