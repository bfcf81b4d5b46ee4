//! Scenario suites end to end on a fitted forest: slices, perturbations, expectations, sweeps,
//! cases and extreme inputs.

use std::sync::Arc;

use arrow::{
    array::{Array as _, ArrayRef, AsArray as _, Float64Array, Int64Array, StringArray},
    datatypes::{DataType, Field, Float64Type, Int64Type, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use proptest::prelude::*;
use velo_core::schemas::Schema;
use velo_models::{
    Model, ModelConfig,
    scenarios::{Filter, Perturbation, Suite},
};

fn schema() -> Schema {
    serde_yaml::from_str(
        "index: id
columns:
  - {name: id, type: int64}
  - {name: kind, type: categorical, allowed: [0, 1, 2]}
  - {name: city, type: categorical, allowed: [north, south, east]}
  - {name: x, type: float64, min: 0, max: 10}
  - {name: z, type: float64, min: 0, max: 1}
",
    )
    .expect("schema")
}

/// Rows where the target rises with `x` and `kind`, `city` adds a little, and rows with
/// `z > 0.8` carry unpredictable noise (the slice a search should find).
fn data(rows: usize, seed: u64) -> (RecordBatch, Vec<f64>) {
    let mut state = seed.wrapping_add(0x2545_F491_4F6C_DD1D);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let cities = ["north", "south", "east"];
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut city = Vec::new();
    let mut xs = Vec::new();
    let mut zs = Vec::new();
    let mut targets = Vec::new();
    for row in 0..rows {
        let kind = (next() * 3.0) as i64;
        let c = (next() * 3.0) as usize;
        let x = next() * 10.0;
        let z = next();
        let noise = if z > 0.8 { (next() - 0.5) * 40.0 } else { 0.0 };
        ids.push(row as i64);
        kinds.push(kind);
        city.push(cities[c]);
        xs.push(x);
        zs.push(z);
        targets.push(5.0 * kind as f64 + 3.0 * x + c as f64 + noise);
    }
    let arrow_schema = Arc::new(ArrowSchema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Int64, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("x", DataType::Float64, false),
        Field::new("z", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int64Array::from(kinds)),
        Arc::new(StringArray::from(city)),
        Arc::new(Float64Array::from(xs)),
        Arc::new(Float64Array::from(zs)),
    ];
    (
        RecordBatch::try_new(arrow_schema, columns).expect("batch"),
        targets,
    )
}

fn fitted() -> (Box<dyn Model>, RecordBatch, Vec<f64>) {
    let config: ModelConfig = serde_yaml::from_str(
        "{KIND: RandomForestModel, n_estimators: 30, max_depth: 10, min_samples_leaf: 2}",
    )
    .expect("config");
    let mut model = config.build(&schema());
    let (train, y) = data(1500, 1);
    model.fit(&train, &y).expect("fit");
    let (test, y) = data(800, 2);
    (model, test, y)
}

fn suite(yaml: &str) -> Suite {
    serde_yaml::from_str(yaml).expect("suite")
}

#[test]
fn filters_select_rows_by_numbers_text_and_combinations() {
    let (batch, _) = data(200, 3);
    let x = batch.column(3).as_primitive::<Float64Type>();
    let kind = batch.column(1).as_primitive::<Int64Type>();
    let city = batch.column(2).as_string::<i32>();
    let filter: Filter = serde_yaml::from_str(
        "any: [{all: [{column: x, min: 2, max: 5}, {column: kind, in: [0, 2]}]}, {column: city, equals: east}]",
    )
    .expect("filter");
    filter.check().expect("valid");
    let mask = filter.mask(&batch).expect("mask");
    for (row, matched) in mask.iter().enumerate() {
        let expected = ((2.0..=5.0).contains(&x.value(row)) && kind.value(row) != 1)
            || city.value(row) == "east";
        assert_eq!(*matched, expected, "row {row}");
    }
    assert!(mask.iter().any(|m| *m) && !mask.iter().all(|m| *m));
    assert_eq!(
        filter.describe(),
        "(2 <= x <= 5 and kind in [0, 2]) or city = east"
    );
    let negated: Filter = serde_yaml::from_str("not: {column: city, equals: east}").expect("not");
    let inverse = negated.mask(&batch).expect("mask");
    let plain: Filter = serde_yaml::from_str("{column: city, equals: east}").expect("plain");
    assert!(
        plain
            .mask(&batch)
            .expect("mask")
            .iter()
            .zip(&inverse)
            .all(|(a, b)| a != b)
    );

    let text_on_numbers: Filter = serde_yaml::from_str("{column: x, equals: high}").expect("f");
    let error = text_on_numbers.mask(&batch).unwrap_err();
    assert!(error.contains("column `x` holds numbers"), "{error}");
    let missing: Filter = serde_yaml::from_str("{column: nope, min: 1}").expect("f");
    assert!(
        missing
            .mask(&batch)
            .unwrap_err()
            .contains("column `nope` is not in the inputs")
    );
    let shapeless: Filter = serde_yaml::from_str("{column: x}").expect("f");
    assert!(
        shapeless
            .check()
            .unwrap_err()
            .contains("needs `in`, `equals`, `min` or `max`")
    );
}

#[test]
fn perturbations_keep_types_and_change_what_they_say() {
    let schema = schema();
    let (batch, y) = data(300, 4);
    let apply = |yaml: &str| {
        let p: Perturbation = serde_yaml::from_str(yaml).expect("perturbation");
        p.check(&schema).expect("valid");
        p.apply(&batch, &y, Some(&schema), 7).expect("apply")
    };
    let noisy = apply("{KIND: Noise, columns: [x, kind], std: 0.5}");
    assert_eq!(noisy.inputs.schema(), batch.schema(), "types are kept");
    let moved = (0..300)
        .filter(|row| {
            noisy
                .inputs
                .column(3)
                .as_primitive::<Float64Type>()
                .value(*row)
                != batch.column(3).as_primitive::<Float64Type>().value(*row)
        })
        .count();
    assert_eq!(moved, 300);
    // Integers are rounded and held in range of their type; the other columns are untouched.
    assert_eq!(noisy.inputs.column(2), batch.column(2));

    let missing = apply("{KIND: SetMissing, columns: [z], rate: 0.25}");
    let nulls = missing.inputs.column(4).null_count();
    assert_eq!(nulls, missing.affected);
    assert!((50..100).contains(&nulls), "{nulls} of 300 at 25%");

    let out = apply("{KIND: OutOfRange, columns: [x], beyond: 1.0}");
    let values = out.inputs.column(3).as_primitive::<Float64Type>();
    assert!(values.iter().all(|v| v == Some(20.0)), "10 + 1 × width 10");

    let swapped = apply("{KIND: SwapCategories, columns: [city, kind]}");
    let before = batch.column(2).as_string::<i32>();
    let after = swapped.inputs.column(2).as_string::<i32>();
    for row in 0..300 {
        assert_ne!(before.value(row), after.value(row));
        assert!(["north", "south", "east"].contains(&after.value(row)));
    }
    let unseen = apply("{KIND: UnseenCategory, columns: [city], value: west, rate: 0.5}");
    let west = unseen
        .inputs
        .column(2)
        .as_string::<i32>()
        .iter()
        .filter(|v| *v == Some("west"))
        .count();
    assert_eq!(west, unseen.affected);

    let dropped = apply("{KIND: DropColumn, columns: [x]}");
    assert!(dropped.inputs.column_by_name("x").is_none());

    let doubled = apply("{KIND: DuplicateRows, rate: 0.1}");
    let origin = doubled.origin.expect("origin");
    assert_eq!(doubled.inputs.num_rows(), 300 + doubled.affected);
    assert_eq!(origin.len(), doubled.targets.len());
    for (row, source) in origin.iter().enumerate() {
        assert_eq!(doubled.targets[row], y[*source]);
    }

    let bad: Perturbation =
        serde_yaml::from_str("{KIND: Noise, columns: [city], std: 1}").expect("parses");
    let error = bad.apply(&batch, &y, Some(&schema), 1).unwrap_err();
    assert!(
        error.contains("column `city` holds Utf8, expected numbers"),
        "{error}"
    );
    let unknown: Perturbation =
        serde_yaml::from_str("{KIND: Shift, columns: [tmp], by: 1}").expect("parses");
    assert!(
        unknown
            .check(&schema)
            .unwrap_err()
            .contains("column `tmp` is not in the inputs schema")
    );
    let error = serde_yaml::from_str::<Perturbation>("{KIND: Blur, columns: [x]}").unwrap_err();
    assert!(
        error.to_string().contains("unknown variant `Blur`"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Rows picked at a rate are picked at every higher rate: a sweep over `rate` changes
    /// one thing at a time.
    #[test]
    fn higher_rates_pick_supersets(low in 0.0_f64..1.0, extra in 0.0_f64..1.0, seed in any::<u64>()) {
        let high = (low + extra).min(1.0);
        let schema = schema();
        let (batch, y) = data(200, 5);
        let at = |rate: f64| {
            let p: Perturbation = serde_yaml::from_str(&format!(
                "{{KIND: SetMissing, columns: [x], rate: {rate}}}"
            )).expect("perturbation");
            let out = p.apply(&batch, &y, Some(&schema), seed).expect("apply");
            let column = out.inputs.column(3).clone();
            (0..200).map(move |row| column.is_null(row)).collect::<Vec<bool>>()
        };
        let (few, many) = (at(low), at(high));
        for row in 0..200 {
            prop_assert!(!few[row] || many[row]);
        }
    }
}

#[test]
fn a_suite_judges_scenarios_and_finds_where_they_break() {
    let (model, inputs, y) = fitted();
    let report = suite(
        "
slices:
  heavy: {column: kind, equals: 2}
  noisy_z: {column: z, min: 0.8}
auto_slices: {count: 2, max_depth: 2, exclude: [id]}
scenarios:
  - name: baseline
    expect: [{KIND: MetricBound, metric: r2_score, min: 0.5}]
  - name: irrelevant_noise
    perturb: {KIND: Noise, columns: [z], std: 0.01}
    expect: [{KIND: Invariance, tolerance: 1.0, relative: false, max_rate: 0.25}]
  - name: x_noise
    perturb: {KIND: Noise, columns: [x], std: 0.05}
    expect: [{KIND: Degradation, metric: r2_score, max_absolute: 0.02}]
    sweep: {from: 0, to: 4, steps: 5, precision: 0.01}
  - name: more_x_more_target
    slice: heavy
    perturb: {KIND: Shift, columns: [x], by: 2}
    expect: [{KIND: Directional, increasing: true, tolerance: 0.5, max_rate: 0.05}]
  - name: impossible
    expect: [{KIND: MetricBound, metric: root_mean_squared_error, max: 0.001}]
  - name: no_x
    perturb: {KIND: DropColumn, columns: [x]}
    expect: [{KIND: Refusal}]
cases:
  - {name: low, like_row: 0, set: {kind: 0, x: 0.5, z: 0.1, city: north}, min: -5, max: 10}
  - {name: high, set: {kind: 2, x: 9.5, z: 0.1}, min: 30}
  - {name: wrong, set: {x: 9.5}, max: 1}
",
    )
    .run(model.as_ref(), &inputs, &y, &schema())
    .expect("suite runs");

    let by_name = |name: &str| {
        report
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("scenario {name}"))
    };
    assert!(by_name("baseline").passed);
    assert!(
        by_name("irrelevant_noise").passed,
        "{:?}",
        by_name("irrelevant_noise").checks
    );
    assert!(
        by_name("more_x_more_target").passed,
        "{:?}",
        by_name("more_x_more_target").checks
    );
    assert!(by_name("no_x").passed);
    assert!(
        by_name("no_x")
            .refused
            .as_deref()
            .is_some_and(|m| m.contains("x"))
    );
    let impossible = by_name("impossible");
    assert!(!impossible.passed);
    assert!(
        impossible.checks[0]
            .detail
            .starts_with("root_mean_squared_error = ")
    );

    // The sweep: small noise on x holds, large noise breaks, and the point found is where it
    // starts to break within the precision asked.
    let x_noise = by_name("x_noise");
    assert!(x_noise.passed, "{:?}", x_noise.checks);
    let sweep = x_noise.sweep.as_ref().expect("sweep");
    let point = sweep.failure_point.expect("breaks before std 4");
    assert!(point > 0.0 && point < 4.0, "{point}");
    let held = sweep
        .points
        .iter()
        .filter(|p| p.passed)
        .map(|p| p.magnitude);
    let broke = sweep
        .points
        .iter()
        .filter(|p| !p.passed)
        .map(|p| p.magnitude);
    let last_held = held.fold(f64::NEG_INFINITY, f64::max);
    let first_broke = broke.fold(f64::INFINITY, f64::min);
    assert_eq!(first_broke, point);
    assert!(
        first_broke - last_held <= 0.01,
        "{last_held}..{first_broke}"
    );
    assert!(
        sweep
            .points
            .windows(2)
            .all(|w| w[0].magnitude <= w[1].magnitude)
    );

    // Slices: the declared ones with their sizes, then the worst found, which the noise on
    // `z > 0.8` explains.
    let heavy = &report.slices[0];
    assert_eq!((heavy.name.as_str(), heavy.auto), ("heavy", false));
    let kinds = inputs.column(1).as_primitive::<Int64Type>();
    assert_eq!(heavy.rows, kinds.iter().filter(|k| *k == Some(2)).count());
    let worst = report
        .slices
        .iter()
        .find(|s| s.name == "worst_1")
        .expect("found");
    let lower_bound_on_z = worst.description.contains("z >") || worst.description.contains("< z");
    assert!(worst.auto && lower_bound_on_z, "{}", worst.description);
    assert!(worst.lift.expect("lift") > 2.0);

    // Cases.
    let case = |name: &str| report.cases.iter().find(|c| c.name == name).expect("case");
    assert!(case("low").passed, "{:?}", case("low"));
    assert!(case("high").passed, "{:?}", case("high"));
    assert!(!case("wrong").passed);

    // The forest predicts every extreme input or refuses it; none crashes.
    assert_eq!(report.extremes.len(), 8);
    assert!(
        report.extremes.iter().all(|e| e.passed),
        "{:?}",
        report.extremes
    );
    assert_eq!(report.failures(), ["scenario `impossible`", "case `wrong`"]);
}

#[test]
fn a_suite_names_what_is_wrong_before_running() {
    let (model, inputs, y) = fitted();
    let cases = [
        (
            "scenarios: [{name: a, slice: rush, expect: [{KIND: Refusal}]}]",
            "scenario `a`: slice `rush` is not declared under `slices` (none is)",
        ),
        (
            "scenarios: [{name: a, expect: []}]",
            "scenario `a`: `expect` needs at least one expectation",
        ),
        (
            "scenarios: [{name: a, expect: [{KIND: Refusal}]}, {name: a, expect: [{KIND: Refusal}]}]",
            "scenario `a`: the name is used twice",
        ),
        (
            "scenarios: [{name: a, perturb: {KIND: DropColumn, columns: [x]}, expect: [{KIND: Refusal}], sweep: {from: 0, to: 1}}]",
            "`sweep` needs a `perturb` with a magnitude",
        ),
        (
            "scenarios: [{name: a, perturb: {KIND: SetMissing, columns: [x], rate: 2}, expect: [{KIND: Refusal}]}]",
            "scenario `a`, SetMissing: `rate` is 2, expected a fraction in [0, 1]",
        ),
        (
            "scenarios: [{name: 'a b', expect: [{KIND: Refusal}]}]",
            "must be letters, digits",
        ),
        (
            "scenarios: [{name: a, expect: [{KIND: MetricBound, metric: r2_score}]}]",
            "MetricBound on r2_score needs `min` or `max`",
        ),
        (
            "slices: {s: {column: temp, min: 1}}",
            "slice `s`: column `temp` is not in the inputs schema",
        ),
        (
            "cases: [{name: c, set: {x: 1}}]",
            "case `c`: a case needs `min` or `max`",
        ),
    ];
    for (yaml, expected) in cases {
        let error = suite(yaml)
            .run(model.as_ref(), &inputs, &y, &schema())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(expected),
            "{yaml}\n  gave: {error}\n  expected: {expected}"
        );
    }
}
