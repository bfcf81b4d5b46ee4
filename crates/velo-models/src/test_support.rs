//! Test helpers shared by velo-models' unit tests: the shared bike-sharing CSV.

/// The twelve numerical input columns the reference model uses, in its order.
pub(crate) const BIKE_NUMERICALS: [&str; 12] = [
    "yr",
    "mnth",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "temp",
    "atemp",
    "hum",
    "windspeed",
    "casual",
    "registered",
];

/// The shared `hour.csv` (next to the repository, never copied into it) as a header and rows
/// of cells, or `None` with a visible message when it is absent outside CI (in CI its absence
/// fails the test).
#[expect(
    clippy::disallowed_methods,
    reason = "tests read the shared reference data"
)]
pub(crate) fn hour_csv() -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bike-sharing/hour.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing (required in CI)",
            path.display()
        );
        eprintln!("SKIPPED: {} is missing", path.display());
        return None;
    };
    let mut lines = text.lines();
    let header = lines.next()?.split(',').map(str::to_owned).collect();
    let rows = lines
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect();
    Some((header, rows))
}
