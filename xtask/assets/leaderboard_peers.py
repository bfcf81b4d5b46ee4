"""The peers of velo's leaderboard (`cargo xtask bench --leaderboard`), on the same folds.

scikit-learn's RandomForestRegressor (200 trees of depth 20, all cores) and
HistGradientBoostingRegressor, LightGBM and XGBoost (defaults), each in a pipeline of one-hot
season and weathersit and the other columns passed through, without the leaking casual and
registered, the date and the index: the features of velo's configs/benchmark.yaml. The folds are
scikit-learn's TimeSeriesSplit(n_splits, test_size), which velo's TimeSeriesSplitter mirrors.
Writes one row per model and fold (model, fold, the three metrics, fit and predict times, the
1-row prediction time and the pickled model's size), and per model one row of fold -1: fitted
on every training row and scored on the test split (the holdout), to a Parquet file for the
BenchmarkJob's `peers`.

Usage: python leaderboard_peers.py DATA_DIR OUT.parquet [N_SPLITS TEST_SIZE]
"""

import pickle
import statistics
import sys
import time

import lightgbm
import numpy as np
import pandas as pd
import xgboost
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

data_dir, out = sys.argv[1], sys.argv[2]
n_splits = int(sys.argv[3]) if len(sys.argv) > 3 else 5
test_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1440
CATEGORICALS = ["season", "weathersit"]
NUMERICALS = ["yr", "mnth", "hr", "holiday", "weekday", "workingday", "temp", "atemp", "hum", "windspeed"]

inputs = pd.read_parquet(f"{data_dir}/inputs_train.parquet")
targets = pd.read_parquet(f"{data_dir}/targets_train.parquet")
y = targets["cnt"].to_numpy(dtype=float)
x = inputs[CATEGORICALS + NUMERICALS].astype({c: "float64" for c in NUMERICALS})


def pipeline(regressor):
    encoder = OneHotEncoder(sparse_output=False, handle_unknown="ignore")
    transformer = ColumnTransformer(
        [("categoricals", encoder, CATEGORICALS), ("numericals", "passthrough", NUMERICALS)]
    )
    return Pipeline([("transformer", transformer), ("regressor", regressor)])


PEERS = {
    "sklearn_forest": lambda: RandomForestRegressor(n_estimators=200, max_depth=20, n_jobs=-1, random_state=42),
    "sklearn_hist_gbm": lambda: HistGradientBoostingRegressor(random_state=42),
    "lightgbm": lambda: lightgbm.LGBMRegressor(random_state=42, verbose=-1),
    "xgboost": lambda: xgboost.XGBRegressor(random_state=42),
}

rows = []
folds = list(TimeSeriesSplit(n_splits=n_splits, test_size=test_size).split(x))
for name, make in PEERS.items():
    for fold, (train, test) in enumerate(folds):
        model = pipeline(make())
        started = time.perf_counter()
        model.fit(x.iloc[train], y[train])
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predicted = model.predict(x.iloc[test])
        predict_seconds = time.perf_counter() - started
        row = {
            "model": name,
            "fold": fold,
            "root_mean_squared_error": float(np.sqrt(metrics.mean_squared_error(y[test], predicted))),
            "mean_absolute_error": float(metrics.mean_absolute_error(y[test], predicted)),
            "r2_score": float(metrics.r2_score(y[test], predicted)),
            "fit_seconds": fit_seconds,
            "predict_batch_seconds": predict_seconds,
        }
        if fold == len(folds) - 1:
            times = []
            for i in range(51):
                one = x.iloc[test[i % len(test)] : test[i % len(test)] + 1]
                started = time.perf_counter()
                model.predict(one)
                times.append((time.perf_counter() - started) * 1000)
            row["predict_one_row_ms"] = statistics.median(times)
            row["model_bytes"] = float(len(pickle.dumps(model)))
        rows.append(row)
        print(f"{name} fold {fold}: rmse {row['root_mean_squared_error']:.3f}, fit {fit_seconds:.2f} s", file=sys.stderr)
    # The holdout (fold -1): fitted on every training row, scored on the test split.
    test_inputs = pd.read_parquet(f"{data_dir}/inputs_test.parquet")
    test_y = pd.read_parquet(f"{data_dir}/targets_test.parquet")["cnt"].to_numpy(dtype=float)
    model = pipeline(make())
    model.fit(x, y)
    predicted = model.predict(test_inputs[CATEGORICALS + NUMERICALS].astype({c: "float64" for c in NUMERICALS}))
    rows.append(
        {
            "model": name,
            "fold": -1,
            "root_mean_squared_error": float(np.sqrt(metrics.mean_squared_error(test_y, predicted))),
            "mean_absolute_error": float(metrics.mean_absolute_error(test_y, predicted)),
            "r2_score": float(metrics.r2_score(test_y, predicted)),
        }
    )
pd.DataFrame(rows).to_parquet(out, index=False)
