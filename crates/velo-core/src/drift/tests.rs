use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// `n` draws of a normal distribution (Box–Muller).
fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            mean + (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// `n` draws of categories `a`..`d` with the given weights.
fn categories(rng: &mut ChaCha8Rng, n: usize, weights: [f64; 4]) -> ColumnProfile {
    let total: f64 = weights.iter().sum();
    let names = ["a", "b", "c", "d"];
    let draws: Vec<&str> = (0..n)
        .map(|_| {
            let mut draw = rng.random::<f64>() * total;
            for (name, weight) in names.iter().zip(weights) {
                if draw < weight {
                    return *name;
                }
                draw -= weight;
            }
            names[3]
        })
        .collect();
    ColumnProfile::Categorical(CategoricalProfile::from_values(draws.into_iter().map(Some)))
}

fn numbers(values: Vec<f64>, keep_up_to: usize) -> ColumnProfile {
    ColumnProfile::Numerical(NumericalProfile::from_values(values, 0, keep_up_to))
}

/// The share of `seeds` runs whose column drifted.
fn alarm_rate(seeds: u64, mut run: impl FnMut(&mut ChaCha8Rng) -> ColumnDrift) -> f64 {
    let alarms = (0..seeds)
        .filter(|&seed| run(&mut ChaCha8Rng::seed_from_u64(seed)).drifted)
        .count();
    alarms as f64 / seeds as f64
}

/// The nominal 5% level plus three standard errors over `seeds` runs.
fn nominal_bound(seeds: u64) -> f64 {
    0.05 + 3.0 * (0.05 * 0.95 / seeds as f64).sqrt()
}

#[test]
fn methods_are_chosen_as_evidently_does() {
    let rng = &mut ChaCha8Rng::seed_from_u64(7);
    assert_eq!(
        default_method(&numbers(normal(rng, 500, 0.0), EXACT_UP_TO)),
        DriftMethod::Ks
    );
    assert_eq!(
        default_method(&numbers(normal(rng, 5_000, 0.0), EXACT_UP_TO)),
        DriftMethod::Wasserstein
    );
    assert_eq!(
        default_method(&categories(rng, 500, [1.0; 4])),
        DriftMethod::ChiSquare
    );
    assert_eq!(
        default_method(&categories(rng, 5_000, [1.0; 4])),
        DriftMethod::JensenShannon
    );
    // Five distinct numbers are categories.
    let codes: Vec<f64> = (0..2_000).map(|i| f64::from(i % 5)).collect();
    assert_eq!(
        default_method(&numbers(codes, EXACT_UP_TO)),
        DriftMethod::JensenShannon
    );
}

#[test]
fn kolmogorov_smirnov_keeps_its_level_and_finds_a_shift() {
    let seeds = 300;
    let quiet = alarm_rate(seeds, |rng| {
        let reference = numbers(normal(rng, 800, 0.0), EXACT_UP_TO);
        let current = numbers(normal(rng, 300, 0.0), usize::MAX);
        column_drift(&reference, &current, None, None).expect("drift")
    });
    assert!(quiet <= nominal_bound(seeds), "false alarms {quiet}");
    let shifted = alarm_rate(100, |rng| {
        let reference = numbers(normal(rng, 800, 0.0), EXACT_UP_TO);
        let current = numbers(normal(rng, 300, 0.4), usize::MAX);
        column_drift(&reference, &current, None, None).expect("drift")
    });
    assert!(shifted >= 0.95, "a shift of 0.4 sd found {shifted}");
}

#[test]
fn chi_square_keeps_its_level_and_finds_a_shift() {
    let seeds = 300;
    let quiet = alarm_rate(seeds, |rng| {
        let reference = categories(rng, 800, [4.0, 3.0, 2.0, 1.0]);
        let current = categories(rng, 300, [4.0, 3.0, 2.0, 1.0]);
        column_drift(&reference, &current, None, None).expect("drift")
    });
    assert!(quiet <= nominal_bound(seeds), "false alarms {quiet}");
    let shifted = alarm_rate(100, |rng| {
        let reference = categories(rng, 800, [4.0, 3.0, 2.0, 1.0]);
        let current = categories(rng, 300, [2.0, 3.0, 2.0, 3.0]);
        column_drift(&reference, &current, None, None).expect("drift")
    });
    assert!(shifted >= 0.95, "{shifted}");
    // A category never seen in the reference is drift.
    let reference = categories(&mut ChaCha8Rng::seed_from_u64(1), 500, [1.0, 1.0, 1.0, 0.0]);
    let current = categories(&mut ChaCha8Rng::seed_from_u64(2), 100, [1.0; 4]);
    assert!(
        column_drift(&reference, &current, None, None)
            .expect("drift")
            .drifted
    );
}

#[test]
fn distances_on_large_references_stay_quiet_without_a_shift() {
    // References over 1,000 rows keep quantiles and are held to distances.
    for seed in 0..50 {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let reference = numbers(normal(rng, 20_000, 0.0), EXACT_UP_TO);
        let same = numbers(normal(rng, 1_000, 0.0), usize::MAX);
        let shifted = numbers(normal(rng, 1_000, 0.3), usize::MAX);
        let quiet = column_drift(&reference, &same, None, None).expect("drift");
        assert_eq!(quiet.method, DriftMethod::Wasserstein);
        assert!(!quiet.drifted, "seed {seed}: {quiet:?}");
        assert!(
            column_drift(&reference, &shifted, None, None)
                .expect("drift")
                .drifted
        );
        let reference = categories(rng, 20_000, [4.0, 3.0, 2.0, 1.0]);
        let same = categories(rng, 1_000, [4.0, 3.0, 2.0, 1.0]);
        let shifted = categories(rng, 1_000, [1.0, 2.0, 3.0, 4.0]);
        let quiet = column_drift(&reference, &same, None, None).expect("drift");
        assert_eq!(quiet.method, DriftMethod::JensenShannon);
        assert!(!quiet.drifted, "seed {seed}: {quiet:?}");
        assert!(
            column_drift(&reference, &shifted, None, None)
                .expect("drift")
                .drifted
        );
        let psi = column_drift(&reference, &shifted, Some(DriftMethod::Psi), None).expect("psi");
        assert!(psi.drifted && psi.score > 0.2, "{psi:?}");
    }
}

#[test]
fn bad_requests_are_errors() {
    let rng = &mut ChaCha8Rng::seed_from_u64(3);
    let reference = numbers(normal(rng, 100, 0.0), EXACT_UP_TO);
    let empty = numbers(Vec::new(), usize::MAX);
    assert_eq!(
        column_drift(&reference, &empty, None, None),
        Err(DriftError::Empty { side: "current" })
    );
    let text = categories(rng, 10, [1.0; 4]);
    let error = column_drift(&reference, &text, Some(DriftMethod::Ks), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ks compares numbers, and the current column holds categories"
    );
    let error = column_drift(&reference, &reference, None, Some(1.5)).unwrap_err();
    assert_eq!(error.to_string(), "threshold 1.5 of ks is not in (0, 1)");
}

#[test]
fn datasets_drift_when_half_their_columns_do() {
    let drift = |drifted| ColumnDrift {
        method: DriftMethod::Ks,
        score: 0.0,
        threshold: 0.05,
        drifted,
    };
    let columns = [drift(true), drift(false), drift(true), drift(false)];
    let dataset = DatasetDrift::of(&columns, DatasetDrift::DEFAULT_THRESHOLD);
    assert_eq!(
        (dataset.drifted_columns, dataset.share, dataset.drifted),
        (2, 0.5, true)
    );
    assert!(!DatasetDrift::of(&columns[1..], 0.5).drifted);
    assert!(!DatasetDrift::of(&[], 0.5).drifted);
}
