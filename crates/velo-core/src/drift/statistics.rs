//! The drift statistics, on samples given as sorted values (numerical) or counts (categorical).
//!
//! Each follows the scipy function Evidently calls, so that a threshold means the same here:
//! `ks_2samp`, `wasserstein_distance`, `chisquare`, `distance.jensenshannon` (natural
//! logarithm), and Evidently's own population stability index.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KolmogorovSmirnov {
    /// The largest distance between the two empirical distribution functions.
    pub statistic: f64,
    /// The two-sided p-value.
    pub p_value: f64,
    /// Whether the p-value is exact (small samples) or from the limiting distribution.
    pub exact: bool,
}

/// Sample-size products up to this get an exact p-value (an `O(n m)` path count).
const EXACT_KS_UP_TO: f64 = 1e7;

/// The largest distance between the empirical distribution functions of two sorted samples
/// whose points weigh equally within each sample.
///
/// # Panics
/// Never; an empty sample gives 0.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut statistic: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let value = a[i].min(b[j]);
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
        statistic = statistic.max((i as f64 / n - j as f64 / m).abs());
    }
    statistic
}

/// The two-sided two-sample Kolmogorov–Smirnov test of samples of sizes `n` and `m` whose
/// statistic is `statistic`: exact when `n m` is at most ten million (the lattice path count
/// of Hodges, as R's `psmirnov` computes it; scipy's `ks_2samp` is exact below 10,000 rows a
/// side), else Kolmogorov's limiting distribution at `sqrt(n m / (n + m)) D`.
pub fn ks_test(statistic: f64, n: usize, m: usize) -> KolmogorovSmirnov {
    if n == 0 || m == 0 {
        return KolmogorovSmirnov {
            statistic,
            p_value: 1.0,
            exact: true,
        };
    }
    let (nf, mf) = (n as f64, m as f64);
    if nf * mf <= EXACT_KS_UP_TO {
        let p_value = (1.0 - smirnov_below(statistic, n, m)).clamp(0.0, 1.0);
        return KolmogorovSmirnov {
            statistic,
            p_value,
            exact: true,
        };
    }
    let lambda = (nf * mf / (nf + mf)).sqrt() * statistic;
    KolmogorovSmirnov {
        statistic,
        p_value: kolmogorov_survival(lambda),
        exact: false,
    }
}

/// `P(D < d)` for the two-sample statistic of sizes `n` and `m` under the null hypothesis: the
/// share of monotone lattice paths from `(0, 0)` to `(m, n)` that stay strictly within `d` of
/// the diagonal, counted with each row's counts scaled so that they stay probabilities.
fn smirnov_below(d: f64, n: usize, m: usize) -> f64 {
    let (small, large) = if n <= m { (n, m) } else { (m, n) };
    let (sf, lf) = (small as f64, large as f64);
    // D takes values k / (n m): just under d, so that D = d counts as outside.
    let q = (0.5 + (d * sf * lf - 1e-7).floor()) / (sf * lf);
    let mut u: Vec<f64> = (0..=large)
        .map(|j| if j as f64 / lf > q { 0.0 } else { 1.0 })
        .collect();
    for i in 1..=small {
        let w = i as f64 / (i + large) as f64;
        let x = i as f64 / sf;
        u[0] = if x > q { 0.0 } else { w * u[0] };
        for j in 1..=large {
            u[j] = if (x - j as f64 / lf).abs() > q {
                0.0
            } else {
                w * u[j] + u[j - 1]
            };
        }
    }
    u[large]
}

/// The survival function of Kolmogorov's distribution, `2 Σ (-1)^(k-1) exp(-2 k² λ²)`.
fn kolmogorov_survival(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u32 % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The first Wasserstein distance between two sorted samples whose points weigh equally within
/// each sample (scipy's `wasserstein_distance`): the area between their distribution functions.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut previous = a[0].min(b[0]);
    let mut area = 0.0;
    while i < a.len() || j < b.len() {
        let value = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        area += (i as f64 / n - j as f64 / m).abs() * (value - previous);
        previous = value;
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
    }
    area
}

/// Pearson's chi-squared test of `observed` counts against `expected` ones (scipy's
/// `chisquare`): the statistic and its p-value with one degree of freedom fewer than
/// categories. A count where none is expected makes the statistic infinite (p-value 0).
pub fn chi_square(observed: &[f64], expected: &[f64]) -> (f64, f64) {
    let mut statistic = 0.0;
    for (&observed, &expected) in observed.iter().zip(expected) {
        if expected > 0.0 {
            statistic += (observed - expected) * (observed - expected) / expected;
        } else if observed > 0.0 {
            return (f64::INFINITY, 0.0);
        }
    }
    let freedom = observed.len().saturating_sub(1);
    if freedom == 0 {
        return (statistic, 1.0);
    }
    let p_value = ChiSquared::new(freedom as f64)
        .map(|distribution| distribution.sf(statistic))
        .unwrap_or(1.0);
    (statistic, p_value)
}

/// Pearson's chi-squared test of homogeneity of two samples given as counts over the same
/// categories (scipy's `chi2_contingency` of the 2 × k table, without continuity correction):
/// the statistic and its p-value with k - 1 degrees of freedom.
///
/// Unlike a goodness-of-fit test against the first sample's shares (Evidently's `chisquare`),
/// it accounts for the first sample's own noise, so its false alarms keep the nominal rate.
pub fn chi_square_homogeneity(first: &[f64], second: &[f64]) -> (f64, f64) {
    let (total_first, total_second) = (first.iter().sum::<f64>(), second.iter().sum::<f64>());
    let total = total_first + total_second;
    if total_first <= 0.0 || total_second <= 0.0 {
        return (0.0, 1.0);
    }
    let mut statistic = 0.0;
    let mut categories = 0;
    for (&a, &b) in first.iter().zip(second) {
        let column = a + b;
        if column <= 0.0 {
            continue;
        }
        categories += 1;
        for (observed, row) in [(a, total_first), (b, total_second)] {
            let expected = row * column / total;
            statistic += (observed - expected) * (observed - expected) / expected;
        }
    }
    if categories < 2 {
        return (statistic, 1.0);
    }
    let p_value = ChiSquared::new(f64::from(categories - 1))
        .map(|distribution| distribution.sf(statistic))
        .unwrap_or(1.0);
    (statistic, p_value)
}

/// The Jensen–Shannon distance between two distributions given as counts over the same
/// categories (scipy's `distance.jensenshannon`, natural logarithm): between 0 and `sqrt(ln 2)`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sum_p, sum_q) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if sum_p <= 0.0 || sum_q <= 0.0 {
        return 0.0;
    }
    let mut divergence = 0.0;
    for (&p, &q) in p.iter().zip(q) {
        let (p, q) = (p / sum_p, q / sum_q);
        let mean = (p + q) / 2.0;
        if p > 0.0 {
            divergence += p * (p / mean).ln();
        }
        if q > 0.0 {
            divergence += q * (q / mean).ln();
        }
    }
    (divergence / 2.0).max(0.0).sqrt()
}

/// The population stability index of `actual` against `reference` counts over the same bins,
/// `Σ (a - r) ln(a / r)` on shares, an empty bin counting as a share of 0.0001 (Evidently).
pub fn population_stability(reference: &[f64], actual: &[f64]) -> f64 {
    let (sum_r, sum_a) = (reference.iter().sum::<f64>(), actual.iter().sum::<f64>());
    if sum_r <= 0.0 || sum_a <= 0.0 {
        return 0.0;
    }
    let share = |count: f64, total: f64| {
        let share = count / total;
        if share == 0.0 { 0.0001 } else { share }
    };
    reference
        .iter()
        .zip(actual)
        .map(|(&r, &a)| {
            let (r, a) = (share(r, sum_r), share(a, sum_a));
            (a - r) * (a / r).ln()
        })
        .sum()
}

/// Counts of a sorted sample in `bins` equal-width bins over `[low, high]` (the last bin
/// closed, as numpy's `histogram`).
pub fn histogram(sorted: &[f64], low: f64, high: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0.0; bins.max(1)];
    let width = (high - low) / bins.max(1) as f64;
    for &value in sorted {
        let bin = if width > 0.0 {
            (((value - low) / width) as usize).min(counts.len() - 1)
        } else {
            0
        };
        counts[bin] += 1.0;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not within {tolerance} of {expected}"
        );
    }

    #[test]
    fn kolmogorov_smirnov_matches_scipy() {
        // scipy.stats.ks_2samp([1, 2, 3, 4, 5], [3.5, 4.5, 5.5, 6.5, 7.5, 8.5]):
        // statistic 0.6666666666666666, p-value 0.10822510822510821 (exact).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [3.5, 4.5, 5.5, 6.5, 7.5, 8.5];
        let statistic = ks_statistic(&a, &b);
        close(statistic, 2.0 / 3.0, 1e-12);
        let test = ks_test(statistic, a.len(), b.len());
        assert!(test.exact);
        close(test.p_value, 0.108_225_108_225_108_21, 1e-9);
        // Identical samples: no distance, p-value 1.
        let test = ks_test(ks_statistic(&a, &a), 5, 5);
        assert_eq!((test.statistic, test.p_value), (0.0, 1.0));
        // Ties across samples: ks_2samp([1, 1, 2, 2], [1, 2, 2, 2, 3]) gives statistic 0.3
        // and p-value 0.9682539682539681.
        let statistic = ks_statistic(&[1.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 2.0, 2.0, 3.0]);
        close(statistic, 0.3, 1e-12);
        close(
            ks_test(statistic, 4, 5).p_value,
            0.968_253_968_253_968_3,
            1e-9,
        );
    }

    #[test]
    fn hundreds_of_rows_match_scipy() {
        // a = [(i * 0.37) % 1 for i in range(300)], b = [((i * 0.53) % 1) ** 1.3 for i in
        // range(400)]: ks_2samp gives 0.1 and p-value 0.061118874860959765 (exact);
        // wasserstein_distance 0.06520764973561921.
        let mut a: Vec<f64> = (0..300).map(|i| (f64::from(i) * 0.37) % 1.0).collect();
        let mut b: Vec<f64> = (0..400)
            .map(|i| ((f64::from(i) * 0.53) % 1.0).powf(1.3))
            .collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let statistic = ks_statistic(&a, &b);
        close(statistic, 0.1, 1e-12);
        close(
            ks_test(statistic, 300, 400).p_value,
            0.061_118_874_860_959_765,
            1e-9,
        );
        close(wasserstein(&a, &b), 0.065_207_649_735_619_21, 1e-12);
    }

    #[test]
    fn large_samples_use_the_limiting_distribution() {
        // Kolmogorov's survival function at 1.0 is 0.26999967167735456 (scipy's kstwobign.sf).
        close(kolmogorov_survival(1.0), 0.269_999_671_677_354_56, 1e-12);
        let test = ks_test(0.01, 5_000, 5_000);
        assert!(!test.exact);
        close(
            test.p_value,
            kolmogorov_survival((2_500.0_f64).sqrt() * 0.01),
            1e-15,
        );
        // The exact count and the limit agree where both apply.
        let exact = 1.0 - smirnov_below(0.05, 2_000, 3_000);
        let limit = kolmogorov_survival((1_200.0_f64).sqrt() * 0.05);
        close(exact, limit, 0.01);
    }

    #[test]
    fn wasserstein_matches_scipy() {
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        close(wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]), 5.0, 1e-12);
        // wasserstein_distance([0, 1], [0, 1, 2, 3]) == 1.0
        close(wasserstein(&[0.0, 1.0], &[0.0, 1.0, 2.0, 3.0]), 1.0, 1e-12);
        assert_eq!(wasserstein(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn chi_square_and_jensen_shannon_match_scipy() {
        // scipy.stats.chisquare([16, 18, 16, 14, 12, 12], [16, 16, 16, 16, 16, 8]):
        // statistic 3.5, p-value 0.6233876277495822.
        let (statistic, p_value) = chi_square(
            &[16.0, 18.0, 16.0, 14.0, 12.0, 12.0],
            &[16.0, 16.0, 16.0, 16.0, 16.0, 8.0],
        );
        close(statistic, 3.5, 1e-12);
        close(p_value, 0.623_387_627_749_582_2, 1e-9);
        assert_eq!(chi_square(&[1.0, 2.0], &[3.0, 0.0]).1, 0.0);
        // scipy.stats.chi2_contingency([[30, 20, 50], [10, 25, 15]], correction=False):
        // statistic 14.326923076923077, p-value 0.0007743693990582862.
        let (statistic, p_value) = chi_square_homogeneity(&[30.0, 20.0, 50.0], &[10.0, 25.0, 15.0]);
        close(statistic, 14.326_923_076_923_077, 1e-9);
        close(p_value, 0.000_774_369_399_058_286_2, 1e-12);
        // scipy.spatial.distance.jensenshannon([1, 0, 0], [0, 1, 0]) == sqrt(ln 2)
        close(
            jensen_shannon(&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]),
            std::f64::consts::LN_2.sqrt(),
            1e-12,
        );
        // jensenshannon([1, 0, 0], [1, 0, 0]) == 0; jensenshannon([1, 1], [1, 3]):
        // 0.18390779094047432.
        assert_eq!(jensen_shannon(&[1.0, 0.0], &[1.0, 0.0]), 0.0);
        close(
            jensen_shannon(&[1.0, 1.0], &[1.0, 3.0]),
            0.183_907_790_940_474_32,
            1e-12,
        );
    }

    #[test]
    fn population_stability_is_zero_for_equal_shares_and_grows_with_shift() {
        assert_eq!(population_stability(&[10.0, 20.0], &[1.0, 2.0]), 0.0);
        // Shares 0.5/0.5 against 0.9/0.1: 0.4 ln(1.8) + (-0.4) ln(0.2) = 0.8789...
        let psi = population_stability(&[5.0, 5.0], &[9.0, 1.0]);
        close(psi, 0.4 * 1.8_f64.ln() - 0.4 * 0.2_f64.ln(), 1e-12);
        assert_eq!(histogram(&[0.0, 0.5, 1.0], 0.0, 1.0, 2), vec![1.0, 2.0]);
    }
}
