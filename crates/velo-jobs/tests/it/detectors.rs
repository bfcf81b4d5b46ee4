//! The drift detectors on `velo data synth` rows: two disjoint random samples of the same
//! synthetic hours drift no more often than the tests' nominal 5% (over 200 draws), and the
//! same samples with the temperature shifted are flagged almost every time.

use std::collections::BTreeMap;

use arrow::{
    array::{ArrayRef, AsArray as _, Float32Array},
    compute::{concat_batches, take},
    datatypes::Float32Type,
    record_batch::RecordBatch,
};
use velo_core::drift::{DataProfile, ProfileOptions, compare};
use velo_io::datasets::{load_schema, spec::DataSpec, synth::SynthGenerator};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// 20,000 synthetic hours (the inputs only), validated by the bike inputs schema.
fn hours() -> RecordBatch {
    let spec = DataSpec::load(&root().join("configs/data.yaml")).unwrap();
    let schema = load_schema(&root().join("configs/schemas/inputs.yaml")).unwrap();
    let batches: Vec<RecordBatch> =
        SynthGenerator::new(spec.synth.as_ref().unwrap(), 20_000, 7, 5_000)
            .unwrap()
            .map(|batch| {
                let keep: Vec<usize> = schema
                    .columns
                    .iter()
                    .filter_map(|column| batch.schema().index_of(&column.name).ok())
                    .collect();
                schema.validate(&batch.project(&keep).unwrap()).unwrap()
            })
            .collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// A seeded permutation of `0..n` (xorshift, Fisher–Yates).
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn rows(batch: &RecordBatch, indices: &[u32]) -> RecordBatch {
    let indices = arrow::array::UInt32Array::from(indices.to_vec());
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| take(column, &indices, None).unwrap())
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// `batch` with `temp` raised by `by`.
fn warmer(batch: &RecordBatch, by: f32) -> RecordBatch {
    let position = batch.schema().index_of("temp").unwrap();
    let temp = batch.column(position).as_primitive::<Float32Type>();
    let shifted: Float32Array = temp.iter().map(|value| value.map(|v| v + by)).collect();
    let mut columns = batch.columns().to_vec();
    columns[position] = std::sync::Arc::new(shifted);
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn false_alarms_stay_at_the_nominal_level_and_a_shift_is_flagged() {
    let all = hours();
    let mut options = ProfileOptions::with_categorical(vec!["season".into(), "weathersit".into()]);
    options
        .skip
        .extend(["instant".to_owned(), "dteday".to_owned()]);
    let window = options.clone().keeping_every_value();
    let profile = |batch: &RecordBatch, options: &ProfileOptions| {
        DataProfile::from_batches(std::slice::from_ref(batch), options)
    };
    let draws = 200;
    let mut alarms: BTreeMap<String, usize> = BTreeMap::new();
    let mut flagged_shifts = 0;
    for draw in 0..draws {
        let order = permutation(all.num_rows(), draw as u64 + 1);
        // 500 reference rows (Evidently's tests' regime: at most 1,000) and 500 others.
        let reference = profile(&rows(&all, &order[..500]), &options);
        let current = rows(&all, &order[500..1_000]);
        for (column, drift) in compare(&reference, &profile(&current, &window), &BTreeMap::new()) {
            let drift = drift.unwrap();
            assert!(drift.method.is_test(), "{column}: {:?}", drift.method);
            *alarms.entry(column).or_default() += usize::from(drift.drifted);
        }
        if draw < 50 {
            let shifted = profile(&warmer(&current, 0.05), &window);
            let drift = compare(&reference, &shifted, &BTreeMap::new());
            let temp = drift.iter().find(|(column, _)| column == "temp").unwrap();
            flagged_shifts += usize::from(temp.1.as_ref().unwrap().drifted);
        }
    }
    // At the nominal 5%, 200 draws give 10 alarms a column on average; 3 standard deviations
    // above is 19. Across all columns the rate stays near 5%.
    let total: usize = alarms.values().sum();
    let rate = total as f64 / (draws * alarms.len()) as f64;
    for (column, count) in &alarms {
        assert!(
            *count <= 19,
            "{column}: {count} false alarms in {draws} draws ({alarms:?})"
        );
    }
    assert!(
        rate <= 0.065,
        "false-alarm rate {rate:.3} over {} columns ({alarms:?})",
        alarms.len()
    );
    // Temperature one twentieth of its range warmer is found in at least 45 of 50 draws.
    assert!(
        flagged_shifts >= 45,
        "the shift was flagged {flagged_shifts} times in 50"
    );
    eprintln!("false-alarm rate {rate:.3} ({alarms:?}); shift flagged {flagged_shifts}/50");
}
