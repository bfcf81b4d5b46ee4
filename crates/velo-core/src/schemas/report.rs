//! Violations found while validating data against a schema, and how they are reported.

use std::fmt;

use arrow::datatypes::DataType;

use super::{ColumnType, Value};

/// How many offending rows (and values) a [`Violation`] keeps.
pub const MAX_EXAMPLES: usize = 10;

/// The rule a column broke.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// A column of the schema is absent from the data.
    MissingColumn,
    /// The data has a column the schema does not list, and the schema is strict.
    UnexpectedColumn,
    /// The data has two columns with this name.
    DuplicateColumn,
    /// The column's Arrow type cannot be converted to the schema's type at all (or coercion is
    /// off and the types differ).
    Type {
        /// The schema's type.
        expected: ColumnType,
        /// The Arrow type found in the data.
        found: DataType,
    },
    /// Some values do not convert losslessly to the schema's type (out of range, not integral,
    /// unparsable, ...).
    Coerce {
        /// The schema's type.
        expected: ColumnType,
        /// The Arrow type found in the data.
        found: DataType,
    },
    /// Missing values (null, or NaN in a float column) in a column that is not nullable.
    Nullable,
    /// Values below the column's minimum.
    Min(Value),
    /// Values above the column's maximum.
    Max(Value),
    /// Values outside the column's allowed values.
    Allowed(Vec<Value>),
    /// Values of the index column seen before: the index must be unique.
    Unique,
}

impl Rule {
    /// Whether the rule is about the columns of the data rather than about their values.
    pub fn is_structural(&self) -> bool {
        matches!(
            self,
            Self::MissingColumn
                | Self::UnexpectedColumn
                | Self::DuplicateColumn
                | Self::Type { .. }
        )
    }

    /// The rank of the rule in a report: structure first, then conversions, then values.
    pub(crate) fn rank(&self) -> usize {
        match self {
            Self::MissingColumn => 0,
            Self::UnexpectedColumn => 1,
            Self::DuplicateColumn => 2,
            Self::Type { .. } => 3,
            Self::Coerce { .. } => 4,
            Self::Nullable => 5,
            Self::Min(_) => 6,
            Self::Max(_) => 7,
            Self::Allowed(_) => 8,
            Self::Unique => 9,
        }
    }
}

/// One rule broken by one column, with the rows that break it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Violation {
    /// The column's name.
    pub column: String,
    /// The rule it breaks.
    pub rule: Rule,
    /// How many rows break it (0 for structural rules, which concern the whole column).
    pub count: usize,
    /// The zero-based positions of the first offending rows (at most [`MAX_EXAMPLES`]),
    /// counted from the first row of the first batch.
    pub first_rows: Vec<usize>,
    /// The offending values of those rows, as found in the data, in the same order.
    pub first_values: Vec<String>,
    /// The schema's index column, when the data has it: the rows are also named by its values.
    pub index_column: Option<String>,
    /// The index values of the first offending rows, in the same order (empty without one).
    pub first_index_values: Vec<String>,
}

impl Violation {
    /// A violation of a structural rule (no rows).
    pub(crate) fn structural(column: &str, rule: Rule) -> Self {
        Self {
            column: column.to_owned(),
            rule,
            count: 0,
            first_rows: Vec::new(),
            first_values: Vec::new(),
            index_column: None,
            first_index_values: Vec::new(),
        }
    }

    /// Adds the rows of `other` (the same column and rule, from a later batch).
    pub(crate) fn merge(&mut self, other: Self) {
        self.count += other.count;
        let room = MAX_EXAMPLES.saturating_sub(self.first_rows.len());
        self.first_rows
            .extend(other.first_rows.into_iter().take(room));
        self.first_values
            .extend(other.first_values.into_iter().take(room));
        if self.index_column.is_none() {
            self.index_column = other.index_column;
        }
        self.first_index_values
            .extend(other.first_index_values.into_iter().take(room));
    }
}

fn rows(count: usize) -> String {
    if count == 1 {
        "1 row".to_owned()
    } else {
        format!("{count} rows")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column '{}': ", self.column)?;
        let count = rows(self.count);
        match &self.rule {
            Rule::MissingColumn => return f.write_str("missing from the data"),
            Rule::UnexpectedColumn => return f.write_str("not in the schema, which is strict"),
            Rule::DuplicateColumn => return f.write_str("appears more than once in the data"),
            Rule::Type { expected, found } => {
                write!(f, "expected type {expected}, found Arrow type {found}")?;
                if self.first_rows.is_empty() {
                    return Ok(());
                }
                write!(f, "; {count} not a number")?;
            }
            Rule::Coerce { expected, found } => {
                write!(
                    f,
                    "{count} cannot be converted losslessly from {found} to {expected}"
                )?;
            }
            Rule::Nullable => write!(f, "{count} missing (null or NaN), but not nullable")?,
            Rule::Min(min) => write!(f, "{count} below the minimum {min}")?,
            Rule::Max(max) => write!(f, "{count} above the maximum {max}")?,
            Rule::Allowed(allowed) => {
                let allowed: Vec<String> = allowed.iter().map(Value::quoted).collect();
                write!(f, "{count} not in allowed values [{}]", allowed.join(", "))?;
            }
            Rule::Unique => write!(f, "{count} with a duplicate value in a unique column")?,
        }
        if self.first_rows.is_empty() {
            return Ok(());
        }
        let first = if self.count > self.first_rows.len() {
            "first rows"
        } else if self.first_rows.len() == 1 {
            "row"
        } else {
            "rows"
        };
        let positions: Vec<String> = self.first_rows.iter().map(usize::to_string).collect();
        write!(f, " ({first} {}", positions.join(", "))?;
        if let Some(index) = &self.index_column
            && self.first_index_values.len() == self.first_rows.len()
        {
            write!(f, "; {index} {}", self.first_index_values.join(", "))?;
        }
        if !self.first_values.is_empty() {
            write!(f, "; values {}", self.first_values.join(", "))?;
        }
        f.write_str(")")
    }
}

/// Every violation found in data checked against a schema.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ViolationReport {
    /// The schema's name, if it has one.
    pub schema: Option<String>,
    /// The violations, ordered by column (schema order, then other columns) and rule.
    pub violations: Vec<Violation>,
}

impl ViolationReport {
    /// The violations of one column.
    pub fn for_column<'a>(&'a self, column: &'a str) -> impl Iterator<Item = &'a Violation> {
        self.violations
            .iter()
            .filter(move |violation| violation.column == column)
    }
}

impl fmt::Display for ViolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.violations.len();
        let plural = if count == 1 { "" } else { "s" };
        match &self.schema {
            Some(name) => write!(f, "data does not match schema '{name}'")?,
            None => f.write_str("data does not match the schema")?,
        }
        write!(f, " ({count} violation{plural}):")?;
        for violation in &self.violations {
            write!(f, "\n  {violation}")?;
        }
        Ok(())
    }
}

/// What a successful validation saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationSummary {
    /// Rows validated.
    pub rows: usize,
    /// Batches validated.
    pub batches: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(rule: Rule, count: usize, rows: &[usize], values: &[&str]) -> Violation {
        Violation {
            index_column: None,
            first_index_values: Vec::new(),
            column: "season".into(),
            rule,
            count,
            first_rows: rows.to_vec(),
            first_values: values.iter().map(ToString::to_string).collect(),
        }
    }

    fn check(violation: &Violation, expected: &str) {
        assert_eq!(violation.to_string(), expected);
    }

    #[test]
    fn violations_read_as_sentences() {
        let allowed = Rule::Allowed(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Int(4),
        ]);
        check(
            &violation(allowed, 3, &[5, 17, 20], &["0", "7", "9"]),
            "column 'season': 3 rows not in allowed values [1, 2, 3, 4] \
             (rows 5, 17, 20; values 0, 7, 9)",
        );
        check(
            &violation(Rule::Min(Value::Int(1)), 12, &[0, 1], &["0", "0"]),
            "column 'season': 12 rows below the minimum 1 (first rows 0, 1; values 0, 0)",
        );
        check(
            &violation(Rule::Nullable, 1, &[4], &["null"]),
            "column 'season': 1 row missing (null or NaN), but not nullable (row 4; values null)",
        );
        check(
            &Violation::structural("season", Rule::MissingColumn),
            "column 'season': missing from the data",
        );
        check(
            &Violation::structural(
                "season",
                Rule::Type {
                    expected: ColumnType::UInt8,
                    found: DataType::Utf8,
                },
            ),
            "column 'season': expected type uint8, found Arrow type Utf8",
        );
    }

    #[test]
    fn merging_keeps_the_first_examples() {
        let mut first = violation(Rule::Unique, 8, &[0, 1, 2, 3, 4, 5, 6, 7], &["1"; 8]);
        first.merge(violation(Rule::Unique, 3, &[20, 21, 22], &["2"; 3]));
        assert_eq!(first.count, 11);
        assert_eq!(first.first_rows, [0, 1, 2, 3, 4, 5, 6, 7, 20, 21]);
        assert_eq!(first.first_values.len(), MAX_EXAMPLES);
    }

    #[test]
    fn a_report_lists_each_violation_on_its_own_line() {
        let report = ViolationReport {
            schema: Some("inputs".into()),
            violations: vec![
                Violation::structural("a", Rule::MissingColumn),
                Violation::structural("b", Rule::UnexpectedColumn),
            ],
        };
        assert_eq!(
            report.to_string(),
            "data does not match schema 'inputs' (2 violations):\n  \
             column 'a': missing from the data\n  \
             column 'b': not in the schema, which is strict"
        );
    }
}
