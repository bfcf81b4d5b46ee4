//! Validation of record batches against a schema, one batch after another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, Scalar,
};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::cmp;
use arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::coerce::{self, CoerceError, Coerced, set_bits};
use super::report::{MAX_EXAMPLES, Rule, ValidationSummary, Violation, ViolationReport};
use super::{ColumnSpec, ColumnType, Schema, SchemaError, Value};

/// A schema compiled for validation: bounds and allowed values converted to Arrow scalars of
/// their column's type.
#[derive(Debug)]
pub(crate) struct Plan {
    columns: Vec<ColumnPlan>,
    /// The type of columns not in the schema, when they are kept.
    extra: Option<(ColumnType, DataType)>,
    /// The Arrow schema of validated batches without extra columns.
    output: SchemaRef,
}

#[derive(Debug)]
struct ColumnPlan {
    name: String,
    column_type: ColumnType,
    target: DataType,
    nullable: bool,
    unique: bool,
    min: Option<Bound>,
    max: Option<Bound>,
    allowed: Option<Allowed>,
}

/// A bound as written and as a one-element array of the column's type.
#[derive(Debug)]
struct Bound {
    value: Value,
    array: ArrayRef,
}

/// Allowed values as written and as one-element arrays of the column's type.
#[derive(Debug)]
struct Allowed {
    values: Vec<Value>,
    arrays: Vec<ArrayRef>,
}

impl Plan {
    /// Compiles `schema`, or lists everything wrong with it.
    pub(crate) fn compile(schema: &Schema) -> Result<Self, SchemaError> {
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        let mut repeated = HashSet::new();
        for column in &schema.columns {
            if column.name.is_empty() {
                problems.push("a column has an empty name".to_owned());
            } else if !seen.insert(column.name.as_str()) && repeated.insert(column.name.as_str()) {
                problems.push(format!("column '{}' is listed more than once", column.name));
            }
        }
        if let Some(index) = &schema.index {
            match schema.column(index) {
                None => problems.push(format!("index '{index}' is not one of the columns")),
                Some(column) if column.nullable => {
                    problems.push(format!("index '{index}' cannot be nullable"));
                }
                Some(_) => {}
            }
        }
        let mut extra = None;
        if let Some(extra_type) = schema.extra_columns {
            if schema.strict {
                problems.push(
                    "extra_columns needs strict: false (a strict schema accepts no other column)"
                        .to_owned(),
                );
            }
            match extra_type.arrow_type() {
                Some(target) => extra = Some((extra_type, target)),
                None => problems
                    .push("extra_columns cannot be categorical (it has no categories)".to_owned()),
            }
        }
        let columns = schema
            .columns
            .iter()
            .map(|column| {
                let is_index = schema.index.as_deref() == Some(column.name.as_str());
                compile_column(column, is_index, &mut problems)
            })
            .collect();
        if !problems.is_empty() {
            return Err(SchemaError::Definition {
                schema: schema.name.clone(),
                problems,
            });
        }
        Ok(Self {
            columns,
            extra,
            output: schema.arrow_schema(),
        })
    }
}

fn compile_column(column: &ColumnSpec, is_index: bool, problems: &mut Vec<String>) -> ColumnPlan {
    let label = format!("column '{}'", column.name);
    let target = column.arrow_type();
    let mut categories_ok = true;
    if column.data_type == ColumnType::Categorical {
        match &column.allowed {
            None => {
                categories_ok = false;
                problems.push(format!(
                    "{label}: a categorical column needs its allowed values (its categories)"
                ));
            }
            Some(values) if !values.is_empty() => {
                let integers = values
                    .iter()
                    .all(|value| matches!(value, Value::Int(_) | Value::UInt(_)));
                let strings = values.iter().all(|value| matches!(value, Value::String(_)));
                if !integers && !strings {
                    categories_ok = false;
                    problems.push(format!(
                        "{label}: categories must be all integers or all strings"
                    ));
                }
            }
            Some(_) => {}
        }
    }
    let ordered = column.data_type.is_ordered();
    if !ordered && (column.min.is_some() || column.max.is_some()) {
        problems.push(format!(
            "{label}: min and max apply to numeric, date and datetime columns, not {}",
            column.data_type
        ));
    }
    let mut bound = |what: &str, value: &Option<Value>| {
        let value = value.as_ref().filter(|_| ordered)?;
        match literal(what, value, column.data_type, &target) {
            Ok(array) => Some(Bound {
                value: value.clone(),
                array,
            }),
            Err(problem) => {
                problems.push(format!("{label}: {problem}"));
                None
            }
        }
    };
    let min = bound("min", &column.min);
    let max = bound("max", &column.max);
    if let (Some(min), Some(max)) = (&min, &max) {
        let inverted = cmp::gt(&min.array, &max.array).is_ok_and(|greater| greater.value(0));
        if inverted {
            problems.push(format!(
                "{label}: min {} is greater than max {}",
                min.value, max.value
            ));
        }
    }
    let allowed = match &column.allowed {
        Some(values) if values.is_empty() => {
            problems.push(format!("{label}: allowed values are empty"));
            None
        }
        Some(values) if categories_ok => {
            let mut arrays = Vec::with_capacity(values.len());
            for value in values {
                match literal("allowed value", value, column.data_type, &target) {
                    Ok(array) => arrays.push(array),
                    Err(problem) => problems.push(format!("{label}: {problem}")),
                }
            }
            Some(Allowed {
                values: values.clone(),
                arrays,
            })
        }
        _ => None,
    };
    ColumnPlan {
        name: column.name.clone(),
        column_type: column.data_type,
        target,
        nullable: column.nullable,
        unique: column.unique || is_index,
        min,
        max,
        allowed,
    }
}

/// Converts a literal of the schema file to a one-element array of the column's type.
fn literal(
    what: &str,
    value: &Value,
    column_type: ColumnType,
    target: &DataType,
) -> Result<ArrayRef, String> {
    match coerce::coerce(&value.to_array(), target, true) {
        Err(CoerceError::Incompatible) => Err(format!(
            "{what} {value} cannot be converted to {column_type}"
        )),
        Err(CoerceError::Arrow(error)) => Err(format!(
            "{what} {value} cannot be converted to {column_type}: {error}"
        )),
        Ok(coerced) if coerced.missing.is_some() => Err(format!("{what} {value} is not a value")),
        Ok(coerced) if coerced.failed.is_some() => {
            Err(format!("{what} {value} does not fit {column_type}"))
        }
        Ok(coerced) => Ok(coerced.array),
    }
}

/// Validates a stream of record batches against a schema.
///
/// Each [`push`](Self::push) returns the batch converted to the schema, or fails at once on a
/// structural violation (a missing, unexpected or duplicated column, or a type that cannot be
/// converted), listing every violation seen so far. Value violations (coercion, nulls, bounds,
/// allowed values, uniqueness) are accumulated instead, with row positions counted from the
/// first row of the first batch; [`finish`](Self::finish) fails if there were any.
///
/// A batch returned by `push` is trustworthy only once `finish` succeeds: values that failed
/// a check are kept as they are, and values that could not be converted are null (the field is
/// then nullable in that batch's schema).
#[derive(Debug)]
pub struct Validator<'a> {
    schema: &'a Schema,
    plan: Result<Plan, Vec<String>>,
    state: State,
}

/// What a validator has seen so far.
#[derive(Debug, Default)]
struct State {
    rows: usize,
    batches: usize,
    /// Violations with their column's position (schema columns first, then others).
    entries: Vec<(usize, Violation)>,
    /// Columns not in the schema, in the order first seen.
    other_columns: Vec<String>,
    /// The values seen in unique columns, by column position.
    unique: HashMap<usize, UniqueKeys>,
}

/// The result of checking one column of one batch.
enum Checked {
    /// The column's type cannot be converted.
    Incompatible,
    /// The converted column and its value violations.
    Converted(ArrayRef, Vec<Violation>),
}

impl<'a> Validator<'a> {
    pub(crate) fn new(schema: &'a Schema) -> Self {
        let plan = Plan::compile(schema).map_err(|error| match error {
            SchemaError::Definition { problems, .. } => problems,
            other => vec![other.to_string()],
        });
        Self {
            schema,
            plan,
            state: State::default(),
        }
    }

    /// Validates the next batch and returns it converted to the schema.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
        let plan = match &self.plan {
            Ok(plan) => plan,
            Err(problems) => return Err(self.definition_error(problems)),
        };
        let state = &mut self.state;
        let offset = state.rows;
        let input_schema = batch.schema();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for field in input_schema.fields() {
            *counts.entry(field.name().as_str()).or_default() += 1;
        }
        let mut found: Vec<(usize, Violation)> = Vec::new();
        let mut structural = false;
        let mut output: Vec<(Field, ArrayRef)> = Vec::with_capacity(plan.columns.len());

        for (position, column) in plan.columns.iter().enumerate() {
            let input = match counts.get(column.name.as_str()) {
                Some(1) => batch.column_by_name(&column.name),
                Some(_) => {
                    found.push((
                        position,
                        Violation::structural(&column.name, Rule::DuplicateColumn),
                    ));
                    None
                }
                None => {
                    found.push((
                        position,
                        Violation::structural(&column.name, Rule::MissingColumn),
                    ));
                    None
                }
            };
            let Some(input) = input else {
                structural = true;
                continue;
            };
            let unique = column.unique.then(|| {
                state
                    .unique
                    .entry(position)
                    .or_insert_with(|| UniqueKeys::new(&column.target))
            });
            match check_column(column, input, self.schema.coerce, offset, unique)? {
                Checked::Incompatible => {
                    structural = true;
                    found.push((position, type_violation(column, input, offset)));
                }
                Checked::Converted(array, violations) => {
                    found.extend(
                        violations
                            .into_iter()
                            .map(|violation| (position, violation)),
                    );
                    let nullable = column.nullable || array.null_count() > 0;
                    output.push((
                        Field::new(&column.name, array.data_type().clone(), nullable),
                        array,
                    ));
                }
            }
        }

        let mut extra_fields = false;
        let mut reported = HashSet::new();
        for (index, field) in input_schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            if self.schema.column(name).is_some() {
                continue;
            }
            let position = plan.columns.len() + state.other_position(name);
            if counts.get(name).copied().unwrap_or_default() > 1 {
                if reported.insert(name) {
                    structural = true;
                    found.push((position, Violation::structural(name, Rule::DuplicateColumn)));
                }
                continue;
            }
            match &plan.extra {
                Some((column_type, target)) => {
                    let column = ColumnPlan {
                        name: name.to_owned(),
                        column_type: *column_type,
                        target: target.clone(),
                        nullable: false,
                        unique: false,
                        min: None,
                        max: None,
                        allowed: None,
                    };
                    let input = batch.column(index);
                    match check_column(&column, input, self.schema.coerce, offset, None)? {
                        Checked::Incompatible => {
                            structural = true;
                            found.push((position, type_violation(&column, input, offset)));
                        }
                        Checked::Converted(array, violations) => {
                            found.extend(
                                violations
                                    .into_iter()
                                    .map(|violation| (position, violation)),
                            );
                            let nullable = array.null_count() > 0;
                            output.push((
                                Field::new(name, array.data_type().clone(), nullable),
                                array,
                            ));
                            extra_fields = true;
                        }
                    }
                }
                None if self.schema.strict => {
                    structural = true;
                    found.push((
                        position,
                        Violation::structural(name, Rule::UnexpectedColumn),
                    ));
                }
                None => {}
            }
        }

        if let Some(index) = self.schema.index.as_deref()
            && counts.get(index) == Some(&1)
            && let Some(keys) = batch.column_by_name(index)
        {
            name_rows_by_index(&mut found, index, keys, offset);
        }
        state.rows += batch.num_rows();
        state.batches += 1;
        state.record(found);
        if structural {
            return Err(SchemaError::Violations(state.report(self.schema)));
        }
        let fits = !extra_fields
            && output
                .iter()
                .zip(plan.output.fields())
                .all(|((field, _), expected)| field.is_nullable() == expected.is_nullable());
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = output.into_iter().unzip();
        let output_schema = if fits {
            plan.output.clone()
        } else {
            Arc::new(arrow::datatypes::Schema::new(fields))
        };
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(output_schema, arrays, &options).map_err(|source| {
            SchemaError::Arrow {
                action: "assemble the validated batch".to_owned(),
                source,
            }
        })
    }

    /// Every violation seen so far.
    pub fn violations(&self) -> ViolationReport {
        self.state.report(self.schema)
    }

    /// Ends the stream: a summary, or every violation seen in any batch.
    pub fn finish(self) -> Result<ValidationSummary, SchemaError> {
        if let Err(problems) = &self.plan {
            return Err(self.definition_error(problems));
        }
        if !self.state.entries.is_empty() {
            return Err(SchemaError::Violations(self.state.report(self.schema)));
        }
        Ok(ValidationSummary {
            rows: self.state.rows,
            batches: self.state.batches,
        })
    }

    fn definition_error(&self, problems: &[String]) -> SchemaError {
        SchemaError::Definition {
            schema: self.schema.name.clone(),
            problems: problems.to_vec(),
        }
    }
}

impl State {
    /// The position of a column not in the schema, among such columns.
    fn other_position(&mut self, name: &str) -> usize {
        match self.other_columns.iter().position(|other| other == name) {
            Some(position) => position,
            None => {
                self.other_columns.push(name.to_owned());
                self.other_columns.len() - 1
            }
        }
    }

    /// Adds violations, merging them with earlier ones of the same column and rule.
    fn record(&mut self, found: Vec<(usize, Violation)>) {
        for (position, violation) in found {
            let earlier = self.entries.iter_mut().find(|(_, earlier)| {
                earlier.column == violation.column && earlier.rule == violation.rule
            });
            match earlier {
                Some((_, earlier)) => earlier.merge(violation),
                None => self.entries.push((position, violation)),
            }
        }
    }

    /// The violations so far, by column position then rule.
    fn report(&self, schema: &Schema) -> ViolationReport {
        let mut entries: Vec<&(usize, Violation)> = self.entries.iter().collect();
        entries.sort_by_key(|(position, violation)| (*position, violation.rule.rank()));
        ViolationReport {
            schema: schema.name.clone(),
            violations: entries
                .into_iter()
                .map(|(_, violation)| violation.clone())
                .collect(),
        }
    }
}

fn type_violation(column: &ColumnPlan, input: &ArrayRef, offset: usize) -> Violation {
    let rule = Rule::Type {
        expected: column.column_type,
        found: input.data_type().clone(),
    };
    // Text where numbers are expected: name the rows that are not numbers (a CSV cell typed
    // by hand), so the file can be fixed where it is wrong.
    let text = matches!(
        input.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    if text && column.target.is_numeric() {
        let options = arrow::compute::CastOptions {
            safe: true,
            ..arrow::compute::CastOptions::default()
        };
        if let Ok(numbers) = arrow::compute::cast_with_options(input, &DataType::Float64, &options)
        {
            let bad: Vec<usize> = (0..input.len())
                .filter(|&row| input.is_valid(row) && numbers.is_null(row))
                .collect();
            let first: Vec<usize> = bad.iter().copied().take(MAX_EXAMPLES).collect();
            if let Ok(violation) =
                violation(&column.name, rule.clone(), bad.len(), &first, input, offset)
                && !bad.is_empty()
            {
                return violation;
            }
        }
    }
    Violation::structural(&column.name, rule)
}

fn arrow_error(column: &ColumnPlan) -> impl FnOnce(ArrowError) -> SchemaError + '_ {
    move |source| SchemaError::Arrow {
        action: format!("check column '{}'", column.name),
        source,
    }
}

/// Converts one column and checks its values.
fn check_column(
    column: &ColumnPlan,
    input: &ArrayRef,
    allow_coercion: bool,
    offset: usize,
    unique: Option<&mut UniqueKeys>,
) -> Result<Checked, SchemaError> {
    let coerced = match coerce::coerce(input, &column.target, allow_coercion) {
        Ok(coerced) => coerced,
        Err(CoerceError::Incompatible) => return Ok(Checked::Incompatible),
        Err(CoerceError::Arrow(source)) => return Err(arrow_error(column)(source)),
    };
    let violations =
        check_values(column, input, &coerced, offset, unique).map_err(arrow_error(column))?;
    Ok(Checked::Converted(coerced.array, violations))
}

fn check_values(
    column: &ColumnPlan,
    input: &ArrayRef,
    coerced: &Coerced,
    offset: usize,
    unique: Option<&mut UniqueKeys>,
) -> Result<Vec<Violation>, ArrowError> {
    let array = &coerced.array;
    let mut masks: Vec<(Rule, BooleanBuffer)> = Vec::new();
    if let Some(failed) = &coerced.failed {
        let rule = Rule::Coerce {
            expected: column.column_type,
            found: input.data_type().clone(),
        };
        masks.push((rule, failed.clone()));
    }
    if let (false, Some(missing)) = (column.nullable, &coerced.missing) {
        masks.push((Rule::Nullable, missing.clone()));
    }
    if let Some(min) = &column.min
        && let Some(below) = compare(array, &min.array, Side::Below)?
    {
        masks.push((Rule::Min(min.value.clone()), below));
    }
    if let Some(max) = &column.max
        && let Some(above) = compare(array, &max.array, Side::Above)?
    {
        masks.push((Rule::Max(max.value.clone()), above));
    }
    if let Some(allowed) = &column.allowed
        && let Some(outside) = not_allowed(array, &allowed.arrays)?
    {
        masks.push((Rule::Allowed(allowed.values.clone()), outside));
    }
    let mut violations = Vec::with_capacity(masks.len() + 1);
    for (rule, mask) in masks {
        let count = mask.count_set_bits();
        let rows: Vec<usize> = mask.set_indices().take(MAX_EXAMPLES).collect();
        violations.push(violation(&column.name, rule, count, &rows, input, offset)?);
    }
    if let Some(keys) = unique {
        let (count, rows) = keys.insert(array);
        if count > 0 {
            violations.push(violation(
                &column.name,
                Rule::Unique,
                count,
                &rows,
                input,
                offset,
            )?);
        }
    }
    Ok(violations)
}

/// Names the offending rows of `found` by their value in the index column `keys` too (the
/// batch's rows start at `offset`).
fn name_rows_by_index(
    found: &mut [(usize, Violation)],
    index: &str,
    keys: &ArrayRef,
    offset: usize,
) {
    let options = FormatOptions::new().with_null("null");
    // An index type with no text form leaves the rows named by position only.
    let Ok(formatter) = ArrayFormatter::try_new(keys.as_ref(), &options) else {
        return;
    };
    for (_, violation) in found.iter_mut() {
        if violation.first_rows.is_empty() || violation.column == index {
            continue;
        }
        let values: Option<Vec<String>> = violation
            .first_rows
            .iter()
            .map(|row| {
                row.checked_sub(offset)
                    .filter(|local| *local < keys.len())
                    .map(|local| formatter.value(local).to_string())
            })
            .collect();
        if let Some(values) = values {
            violation.index_column = Some(index.to_owned());
            violation.first_index_values = values;
        }
    }
}

/// A violation of `rule` by `count` rows, the first of which are `rows` (local to the batch).
fn violation(
    column: &str,
    rule: Rule,
    count: usize,
    rows: &[usize],
    input: &ArrayRef,
    offset: usize,
) -> Result<Violation, ArrowError> {
    let options = FormatOptions::new().with_null("null");
    let formatter = ArrayFormatter::try_new(input.as_ref(), &options)?;
    let quote = matches!(
        input.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(
        input.data_type(),
        DataType::Dictionary(_, value_type)
            if matches!(value_type.as_ref(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    );
    let first_values = rows
        .iter()
        .map(|&row| {
            let text = formatter.value(row).to_string();
            if quote && input.is_valid(row) {
                format!("{text:?}")
            } else {
                text
            }
        })
        .collect();
    Ok(Violation {
        column: column.to_owned(),
        rule,
        count,
        first_rows: rows.iter().map(|row| row + offset).collect(),
        first_values,
        index_column: None,
        first_index_values: Vec::new(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Below,
    Above,
}

/// The valid rows below (or above) a bound, with IEEE comparisons for floats.
fn compare(
    array: &ArrayRef,
    bound: &ArrayRef,
    side: Side,
) -> Result<Option<BooleanBuffer>, ArrowError> {
    let mask = match array.data_type() {
        DataType::Float32 => {
            let bound = bound.as_primitive::<Float32Type>().value(0);
            BooleanArray::from_unary(array.as_primitive::<Float32Type>(), |value| match side {
                Side::Below => value < bound,
                Side::Above => value > bound,
            })
        }
        DataType::Float64 => {
            let bound = bound.as_primitive::<Float64Type>().value(0);
            BooleanArray::from_unary(array.as_primitive::<Float64Type>(), |value| match side {
                Side::Below => value < bound,
                Side::Above => value > bound,
            })
        }
        _ => {
            let bound = Scalar::new(bound.clone());
            match side {
                Side::Below => cmp::lt(array, &bound)?,
                Side::Above => cmp::gt(array, &bound)?,
            }
        }
    };
    Ok(set_bits(&mask))
}

/// The valid rows whose value is none of the allowed ones.
fn not_allowed(
    array: &ArrayRef,
    allowed: &[ArrayRef],
) -> Result<Option<BooleanBuffer>, ArrowError> {
    let mask = match array.data_type() {
        DataType::Float32 => {
            let allowed: Vec<f32> = allowed
                .iter()
                .map(|value| value.as_primitive::<Float32Type>().value(0))
                .collect();
            BooleanArray::from_unary(array.as_primitive::<Float32Type>(), |value| {
                !allowed.contains(&value)
            })
        }
        DataType::Float64 => {
            let allowed: Vec<f64> = allowed
                .iter()
                .map(|value| value.as_primitive::<Float64Type>().value(0))
                .collect();
            BooleanArray::from_unary(array.as_primitive::<Float64Type>(), |value| {
                !allowed.contains(&value)
            })
        }
        _ => {
            let mut any: Option<BooleanBuffer> = None;
            for value in allowed {
                let equal = cmp::eq(array, &Scalar::new(value.clone()))?;
                let equal = equal.values();
                any = Some(match any {
                    Some(any) => &any | equal,
                    None => equal.clone(),
                });
            }
            let outside = match any {
                Some(any) => !&any,
                None => BooleanBuffer::new_set(array.len()),
            };
            BooleanArray::new(outside, array.logical_nulls())
        }
    };
    Ok(set_bits(&mask))
}

/// The values seen so far in a unique column.
#[derive(Debug)]
enum UniqueKeys {
    /// Integers, dates, datetimes, booleans and floats (by bit pattern), as `i128` keys.
    Integers(IntegerSet),
    /// Strings.
    Strings(HashSet<String>),
}

impl UniqueKeys {
    fn new(data_type: &DataType) -> Self {
        match data_type {
            DataType::Utf8 => Self::Strings(HashSet::new()),
            _ => Self::Integers(IntegerSet::default()),
        }
    }

    /// Records the valid values of `array`; returns how many repeat an earlier value, and the
    /// first of those rows.
    fn insert(&mut self, array: &ArrayRef) -> (usize, Vec<usize>) {
        let mut count = 0;
        let mut rows = Vec::new();
        let mut repeated = |row: usize| {
            count += 1;
            if rows.len() < MAX_EXAMPLES {
                rows.push(row);
            }
        };
        match self {
            Self::Strings(seen) => {
                for (row, value) in array.as_string::<i32>().iter().enumerate() {
                    if let Some(value) = value
                        && !seen.contains(value)
                    {
                        seen.insert(value.to_owned());
                    } else if value.is_some() {
                        repeated(row);
                    }
                }
            }
            Self::Integers(seen) => for_each_key(array, |row, key| {
                if !seen.insert(key) {
                    repeated(row);
                }
            }),
        }
        (count, rows)
    }
}

/// Calls `each(row, key)` for every valid row of a primitive or boolean array.
fn for_each_key(array: &ArrayRef, mut each: impl FnMut(usize, i128)) {
    macro_rules! primitive {
        ($type:ty, $key:expr) => {
            for (row, value) in array.as_primitive::<$type>().iter().enumerate() {
                if let Some(value) = value {
                    each(row, $key(value));
                }
            }
        };
    }
    match array.data_type() {
        DataType::Int8 => primitive!(Int8Type, i128::from),
        DataType::Int16 => primitive!(Int16Type, i128::from),
        DataType::Int32 => primitive!(Int32Type, i128::from),
        DataType::Int64 => primitive!(Int64Type, i128::from),
        DataType::UInt8 => primitive!(UInt8Type, i128::from),
        DataType::UInt16 => primitive!(UInt16Type, i128::from),
        DataType::UInt32 => primitive!(UInt32Type, i128::from),
        DataType::UInt64 => primitive!(UInt64Type, i128::from),
        DataType::Date32 => primitive!(Date32Type, i128::from),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            primitive!(TimestampMicrosecondType, i128::from);
        }
        // Adding 0.0 turns -0.0 into 0.0, so that the two zeros are the same key.
        DataType::Float32 => primitive!(Float32Type, |value: f32| i128::from(
            (value + 0.0).to_bits()
        )),
        DataType::Float64 => primitive!(Float64Type, |value: f64| i128::from(
            (value + 0.0).to_bits()
        )),
        DataType::Boolean => {
            for (row, value) in array.as_boolean().iter().enumerate() {
                if let Some(value) = value {
                    each(row, i128::from(value));
                }
            }
        }
        // Validated arrays have one of the types above (strings use their own set).
        _ => {}
    }
}

/// A set of integers that stores ascending runs compactly: values arriving in increasing order
/// extend or append runs (a sorted index of consecutive values costs one run), and values
/// arriving out of order go to a hash set.
#[derive(Debug, Default)]
struct IntegerSet {
    /// Disjoint inclusive ranges, sorted.
    runs: Vec<(i128, i128)>,
    /// Values below the end of the last run when they arrived.
    others: HashSet<i128>,
}

impl IntegerSet {
    /// Adds `key`; false if it was already there.
    fn insert(&mut self, key: i128) -> bool {
        let Some(last) = self.runs.last_mut() else {
            self.runs.push((key, key));
            return true;
        };
        if key > last.1 {
            // Every value in `others` is below the end of the last run, so `key` is new.
            if key == last.1 + 1 {
                last.1 = key;
            } else {
                self.runs.push((key, key));
            }
            return true;
        }
        let run = self.runs.partition_point(|&(_, end)| end < key);
        if self.runs.get(run).is_some_and(|&(start, _)| start <= key) {
            return false;
        }
        self.others.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn schema(yaml: &str) -> Schema {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn report(result: Result<RecordBatch, SchemaError>) -> ViolationReport {
        match result {
            Err(SchemaError::Violations(report)) => report,
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn integer_sets_find_repeats_in_any_order() {
        let mut set = IntegerSet::default();
        let inserted: Vec<bool> = [1, 2, 3, 10, 11, 5, 2, 11, 5, 4, 12, -1, -1]
            .into_iter()
            .map(|key| set.insert(key))
            .collect();
        assert_eq!(
            inserted,
            [
                true, true, true, true, true, true, false, false, false, true, true, true, false
            ]
        );
        assert_eq!(set.runs, [(1, 3), (10, 12)]);
    }

    #[test]
    fn integer_sets_agree_with_a_hash_set() {
        let mut set = IntegerSet::default();
        let mut reference = HashSet::new();
        let mut state = 12_345_u64;
        for _ in 0..5_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let key = i128::from((state >> 33) % 3_000);
            assert_eq!(set.insert(key), reference.insert(key), "key {key}");
        }
    }

    #[test]
    fn a_sorted_index_costs_one_run() {
        let schema = schema("index: id\ncolumns: [{name: id, type: uint32}]");
        let mut validator = schema.validator();
        for start in [0_i64, 1_000] {
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(start..start + 1_000));
            validator.push(&batch(vec![("id", ids)])).unwrap();
        }
        match validator.state.unique.get(&0) {
            Some(UniqueKeys::Integers(set)) => {
                assert_eq!(set.runs, [(0, 1_999)]);
                assert!(set.others.is_empty());
            }
            other => panic!("unexpected keys {other:?}"),
        }
        assert_eq!(validator.finish().unwrap().rows, 2_000);
    }

    #[test]
    fn unique_strings_and_floats() {
        let schema = schema(
            "columns:\n- {name: s, type: string, unique: true}\n- {name: f, type: float64, unique: true}",
        );
        let found = report(schema.validate(&batch(vec![
            ("s", Arc::new(StringArray::from(vec!["a", "b", "a"]))),
            ("f", Arc::new(Float64Array::from(vec![0.0, -0.0, 1.0]))),
        ])));
        let lines: Vec<String> = found.violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "column 's': 1 row with a duplicate value in a unique column (row 2; values \"a\")",
                "column 'f': 1 row with a duplicate value in a unique column (row 1; values -0.0)",
            ]
        );
    }

    #[test]
    fn value_checks_skip_missing_and_failed_rows() {
        let schema = schema("columns: [{name: a, type: uint8, nullable: true, min: 1, max: 9}]");
        let found = report(schema.validate(&batch(vec![(
            "a",
            Arc::new(Int64Array::from(vec![
                Some(0),
                None,
                Some(300),
                Some(5),
                Some(10),
            ])),
        )])));
        let rules: Vec<(&Rule, &[usize])> = found
            .violations
            .iter()
            .map(|violation| (&violation.rule, violation.first_rows.as_slice()))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    &Rule::Coerce {
                        expected: ColumnType::UInt8,
                        found: DataType::Int64
                    },
                    &[2][..]
                ),
                (&Rule::Min(Value::Int(1)), &[0][..]),
                (&Rule::Max(Value::Int(9)), &[4][..]),
            ]
        );
    }

    #[test]
    fn failed_values_become_null_in_a_nullable_field() {
        let schema = schema("columns: [{name: a, type: uint8}]");
        let mut validator = schema.validator();
        let clean = validator
            .push(&batch(vec![("a", Arc::new(Int64Array::from(vec![1])))]))
            .unwrap();
        assert_eq!(clean.schema(), schema.arrow_schema());
        let broken = validator
            .push(&batch(vec![(
                "a",
                Arc::new(Int64Array::from(vec![1, 300])),
            )]))
            .unwrap();
        assert!(broken.schema().field(0).is_nullable());
        assert!(broken.column(0).is_null(1));
        let error = validator.finish().unwrap_err().to_string();
        assert!(error.contains("(row 2; values 300)"), "{error}");
    }
}
