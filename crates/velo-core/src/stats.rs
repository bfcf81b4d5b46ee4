//! Paired statistical tests: whether one model beats another fold by fold (Wilcoxon), or row
//! by row on the same data (a paired bootstrap).

/// The Wilcoxon signed-rank test of paired samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wilcoxon {
    /// The smaller of the rank sums of positive and negative differences (scipy's statistic).
    pub statistic: f64,
    /// The two-sided p-value: the chance of a statistic this small if neither side is better.
    pub p_value: f64,
    /// Pairs with a non-zero difference (zero differences are dropped).
    pub n: usize,
    /// Whether the p-value is exact (up to 50 pairs) or from the normal approximation.
    pub exact: bool,
}

/// Pairs at most this many get an exact p-value (scipy's threshold).
const EXACT_UP_TO: usize = 50;

/// The two-sided Wilcoxon signed-rank test of `x - y`, as scipy's `wilcoxon` with its defaults:
/// zero differences dropped, tied absolute differences given their average rank, an exact
/// p-value for up to 50 pairs (over every sign of the ranks as they are, ties included), else
/// the normal approximation with the tie correction (no continuity correction).
///
/// ```
/// // scipy.stats.wilcoxon of the differences of its documentation's example.
/// let d = [6.0, 8.0, 14.0, 16.0, 23.0, 24.0, 28.0, 29.0, 41.0, -48.0, 49.0, 56.0, 60.0, -67.0, 75.0];
/// let zeros = vec![0.0; d.len()];
/// let test = velo_core::stats::wilcoxon(&d, &zeros).unwrap();
/// assert_eq!(test.statistic, 24.0);
/// assert!((test.p_value - 0.041259765625).abs() < 1e-12);
/// ```
///
/// # Errors
/// Samples of different lengths, or a value that is not finite.
pub fn wilcoxon(x: &[f64], y: &[f64]) -> Result<Wilcoxon, String> {
    if x.len() != y.len() {
        return Err(format!("{} values paired with {}", x.len(), y.len()));
    }
    if x.iter().chain(y).any(|value| !value.is_finite()) {
        return Err("the samples hold a value that is not finite".to_owned());
    }
    let mut differences: Vec<f64> = x
        .iter()
        .zip(y)
        .map(|(a, b)| a - b)
        .filter(|d| *d != 0.0)
        .collect();
    let n = differences.len();
    if n == 0 {
        return Ok(Wilcoxon {
            statistic: 0.0,
            p_value: 1.0,
            n,
            exact: true,
        });
    }
    differences.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // Average ranks of tied absolute differences.
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && differences[end].abs() == differences[start].abs() {
            end += 1;
        }
        let count = (end - start) as f64;
        if end - start > 1 {
            tie_term += count * count * count - count;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        ranks[start..end].iter_mut().for_each(|r| *r = rank);
        start = end;
    }
    let positive: f64 = differences
        .iter()
        .zip(&ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = (n * (n + 1)) as f64 / 2.0;
    let statistic = positive.min(total - positive);
    if n <= EXACT_UP_TO {
        // Ranks are whole or half numbers: doubled, they index sums. counts[s]: sign patterns
        // whose positive ranks sum to s / 2, each equally likely under the null.
        let doubled: Vec<usize> = ranks.iter().map(|r| (r * 2.0).round() as usize).collect();
        let most: usize = doubled.iter().sum();
        let mut counts = vec![0.0_f64; most + 1];
        counts[0] = 1.0;
        for rank in &doubled {
            for sum in (*rank..=most).rev() {
                counts[sum] += counts[sum - rank];
            }
        }
        let below: f64 = counts[..=((statistic * 2.0).round() as usize)].iter().sum();
        let p_value = (2.0 * below / 2f64.powi(n as i32)).min(1.0);
        return Ok(Wilcoxon {
            statistic,
            p_value,
            n,
            exact: true,
        });
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let variance = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let z = if variance > 0.0 {
        (statistic - mean) / variance.sqrt()
    } else {
        0.0
    };
    Ok(Wilcoxon {
        statistic,
        p_value: (2.0 * normal_cdf(z)).min(1.0),
        n,
        exact: false,
    })
}

/// A paired bootstrap of the relative improvement of a challenger's metric over a champion's
/// on the same rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedBootstrap {
    /// The champion's metric on all rows.
    pub champion: f64,
    /// The challenger's metric on all rows.
    pub challenger: f64,
    /// The challenger's relative improvement on all rows (positive: better), as a share of
    /// the champion's metric.
    pub improvement: f64,
    /// The lower bound of the improvement's central confidence interval over the resamples.
    pub low: f64,
    /// Its upper bound.
    pub high: f64,
    /// The share of resamples whose improvement is at most the margin asked for.
    pub not_better: f64,
    /// Resamples drawn.
    pub resamples: usize,
}

/// Resamples the rows with replacement `resamples` times (seeded) and computes, on each, the
/// challenger's relative improvement over the champion of `metric` (lower is better unless
/// `greater_is_better`): the improvement on all rows, the central `confidence` interval of the
/// resampled ones (percentiles), and the share of resamples not better than `margin`.
///
/// # Errors
/// Samples of different lengths or empty, fewer than one resample, a confidence outside
/// (0, 1), or a metric that cannot be computed on the rows.
pub fn paired_bootstrap(
    targets: &[f64],
    (champion, challenger): (&[f64], &[f64]),
    metric: impl Fn(&[f64], &[f64]) -> Result<f64, String>,
    greater_is_better: bool,
    (resamples, confidence, margin, seed): (usize, f64, f64, u64),
) -> Result<PairedBootstrap, String> {
    use rand::{Rng as _, SeedableRng as _};
    let n = targets.len();
    if n == 0 || champion.len() != n || challenger.len() != n {
        return Err(format!(
            "{n} targets with {} and {} predictions",
            champion.len(),
            challenger.len()
        ));
    }
    if resamples == 0 || !(confidence > 0.0 && confidence < 1.0) {
        return Err(format!(
            "{resamples} resamples at confidence {confidence}: at least one, in (0, 1)"
        ));
    }
    let improvement = |champion: f64, challenger: f64| {
        let scale = champion.abs().max(f64::MIN_POSITIVE);
        if greater_is_better {
            (challenger - champion) / scale
        } else {
            (champion - challenger) / scale
        }
    };
    let (champion_all, challenger_all) = (metric(targets, champion)?, metric(targets, challenger)?);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut y, mut a, mut b) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut improvements = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in 0..n {
            let row = rng.random_range(0..n);
            (y[slot], a[slot], b[slot]) = (targets[row], champion[row], challenger[row]);
        }
        improvements.push(improvement(metric(&y, &a)?, metric(&y, &b)?));
    }
    improvements.sort_by(f64::total_cmp);
    let at = |p: f64| improvements[((p * resamples as f64) as usize).min(resamples - 1)];
    let not_better =
        improvements.iter().filter(|i| **i <= margin).count() as f64 / resamples as f64;
    Ok(PairedBootstrap {
        champion: champion_all,
        challenger: challenger_all,
        improvement: improvement(champion_all, challenger_all),
        low: at((1.0 - confidence) / 2.0),
        high: at((1.0 + confidence) / 2.0),
        not_better,
        resamples,
    })
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26 on erf, error
/// below 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy.stats.wilcoxon([(i % 7) - 2.5 for i in range(60)]).
    const SCIPY_60: (f64, f64) = (724.5, 0.156_975_942_538_571_4);

    #[test]
    fn exact_and_approximate_p_values_match_scipy() {
        // All five folds favour one side: the smallest two-sided p-value five pairs allow.
        let test = wilcoxon(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.0; 5]).unwrap();
        assert_eq!((test.statistic, test.n, test.exact), (0.0, 5, true));
        assert!((test.p_value - 0.0625).abs() < 1e-12);
        // Ties, exact over the tied ranks: scipy.stats.wilcoxon([1, 1, 2, 3, -1, 4, 5, 2])
        // gives statistic 2.0, p-value 0.03125.
        let test = wilcoxon(&[1.0, 1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 2.0], &[0.0; 8]).unwrap();
        assert_eq!((test.statistic, test.exact), (2.0, true));
        assert!((test.p_value - 0.03125).abs() < 1e-12, "{}", test.p_value);
        // Over 50 pairs, the normal approximation: scipy on (i % 7) - 2.5 for i in 0..60.
        let many: Vec<f64> = (0..60).map(|i| f64::from(i % 7) - 2.5).collect();
        let test = wilcoxon(&many, &[0.0; 60]).unwrap();
        assert!(!test.exact);
        assert_eq!(test.statistic, SCIPY_60.0);
        assert!((test.p_value - SCIPY_60.1).abs() < 1e-6, "{}", test.p_value);
        // No difference at all.
        assert_eq!(wilcoxon(&[1.0, 2.0], &[1.0, 2.0]).unwrap().p_value, 1.0);
        assert!(wilcoxon(&[1.0], &[1.0, 2.0]).is_err());
        assert!(wilcoxon(&[f64::NAN], &[1.0]).is_err());
    }

    fn rmse(y: &[f64], p: &[f64]) -> Result<f64, String> {
        let sum: f64 = y.iter().zip(p).map(|(y, p)| (y - p) * (y - p)).sum();
        Ok((sum / y.len() as f64).sqrt())
    }

    #[test]
    fn a_clearly_better_challenger_wins_its_bootstrap_and_an_equal_one_does_not() {
        let y: Vec<f64> = (0..400).map(|i| f64::from(i % 37)).collect();
        // The champion is off by 3 everywhere, the challenger by 1: 66.7% better.
        let champion: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 3.0 } else { -3.0 })
            .collect();
        let challenger: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let test = paired_bootstrap(
            &y,
            (&champion, &challenger),
            rmse,
            false,
            (500, 0.95, 0.01, 7),
        )
        .unwrap();
        assert!((test.improvement - 2.0 / 3.0).abs() < 1e-12, "{test:?}");
        assert!(test.low > 0.6 && test.high <= 2.0 / 3.0 + 1e-9, "{test:?}");
        assert_eq!(test.not_better, 0.0);
        // The same predictions: no improvement, every resample at zero.
        let same =
            paired_bootstrap(&y, (&champion, &champion), rmse, false, (200, 0.95, 0.0, 7)).unwrap();
        assert_eq!(
            (same.improvement, same.low, same.high, same.not_better),
            (0.0, 0.0, 0.0, 1.0)
        );
        // Seeded: the same draw twice.
        let again = paired_bootstrap(
            &y,
            (&champion, &challenger),
            rmse,
            false,
            (500, 0.95, 0.01, 7),
        )
        .unwrap();
        assert_eq!(again, test);
        assert!(
            paired_bootstrap(&y, (&champion, &y[..3]), rmse, false, (10, 0.9, 0.0, 1)).is_err()
        );
        assert!(
            paired_bootstrap(&y, (&champion, &challenger), rmse, false, (0, 0.9, 0.0, 1)).is_err()
        );
    }

    #[test]
    fn the_test_is_symmetric() {
        let a = [3.1, 2.0, 5.5, 4.0, 1.2, 7.7, 6.0];
        let b = [2.0, 2.5, 4.0, 4.4, 0.2, 5.0, 6.5];
        let ab = wilcoxon(&a, &b).unwrap();
        let ba = wilcoxon(&b, &a).unwrap();
        assert_eq!(ab, ba);
    }
}
