"""The Python side of `cargo xtask bench --monitoring`.

feed URL PARQUET ROWS: posts the rows of PARQUET to a scoring server, ROWS per request
(MLflow's dataframe_split), so that the server logs them.

evidently REFERENCE LOGS WINDOWS RUNS: Evidently's data drift preset over WINDOWS equal windows
of the prediction log LOGS against the REFERENCE inputs, RUNS times; prints one JSON object with
the median seconds and the drifted windows.
"""

import json
import statistics
import sys
import time
import urllib.request

import pandas as pd

NUMERICAL = ["mnth", "hr", "weekday", "temp", "atemp", "hum", "windspeed", "casual", "registered"]
CATEGORICAL = ["season", "yr", "holiday", "workingday", "weathersit"]


def feed(url: str, path: str, rows: int) -> None:
    frame = pd.read_parquet(path)
    frame = frame.drop(columns=[c for c in ("instant",) if c in frame.columns])
    frame["dteday"] = frame["dteday"].astype(str)
    for start in range(0, len(frame), rows):
        body = frame.iloc[start : start + rows].to_json(orient="split", index=False)
        request = urllib.request.Request(
            url,
            data=('{"dataframe_split": ' + body + "}").encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            response.read()
    print(json.dumps({"rows": len(frame)}))


def evidently(reference_path: str, logs: str, windows: int, runs: int) -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = NUMERICAL + CATEGORICAL
    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    seconds = []
    drifted = 0
    rows = 0
    for _ in range(runs):
        started = time.perf_counter()
        # Reading is part of the job, as it is of velo's.
        reference = pd.read_parquet(reference_path, columns=columns)
        current = pd.read_parquet(logs, columns=columns)
        rows = len(current)
        size = -(-rows // windows)
        reference_data = Dataset.from_pandas(reference, data_definition=definition)
        drifted = 0
        for start in range(0, rows, size):
            window = Dataset.from_pandas(
                current.iloc[start : start + size].reset_index(drop=True),
                data_definition=definition,
            )
            snapshot = Report([DataDriftPreset()]).run(window, reference_data)
            for metric in snapshot.dict()["metrics"]:
                if metric["metric_name"].startswith("DriftedColumnsCount"):
                    drifted += metric["value"]["share"] >= 0.5
        seconds.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "median_seconds": statistics.median(seconds),
                "runs": runs,
                "rows": rows,
                "windows": windows,
                "columns": len(columns),
                "drifted_windows": int(drifted),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "feed":
        feed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        evidently(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
