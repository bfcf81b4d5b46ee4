"""Register the reference scikit-learn pipeline in an MLflow store, for `mlflow models serve`.

Usage: python mlflow_serve_model.py DATA_DIR TRACKING_URI OUT_DIR

Fits the pipeline of ../shared/bench/sklearn_baseline.py (one-hot season and weathersit,
passthrough numericals, RandomForestRegressor(max_depth=20, n_estimators=200, random_state=42))
on the training split less its last TEST_SIZE rows (as velo's parity training does), logs it with mlflow.sklearn (signature and input example), registers it
as `bikes` with the alias `Champion`, and writes the request bodies both servers are loaded
with: OUT_DIR/body_1.json and OUT_DIR/body_1000.json (pandas `to_json(orient="split")` of the
first test rows, as MLflow's clients send them).
"""

import json
import pathlib
import sys

import mlflow
import pandas as pd
from mlflow.models import infer_signature


def main() -> int:
    data_dir, tracking_uri, out_dir = sys.argv[1:]
    data_dir, out_dir = pathlib.Path(data_dir), pathlib.Path(out_dir)
    harness = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "bench"
    sys.path.insert(0, str(harness))
    import sklearn_baseline as reference  # noqa: E402  (the shared harness, read where it lies)

    # The same rows velo's configs/parity/training.yaml fits: all but the last TEST_SIZE.
    n_train = len(pd.read_parquet(data_dir / "targets_train.parquet")) - reference.TEST_SIZE
    inputs = pd.read_parquet(data_dir / "inputs_train.parquet").iloc[:n_train]
    targets = pd.read_parquet(data_dir / "targets_train.parquet")[reference.TARGET].iloc[:n_train]
    model = reference.make_pipeline(reference.make_forest())
    model.fit(inputs, targets)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("serve-bench")
    example = inputs.head(5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            registered_model_name="bikes",
            # MLflow 3.17 defaults to skops, which refuses forests' tree storage unless told to
            # trust it; cloudpickle is what MLflow used for scikit-learn models until then.
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )
    client = mlflow.MlflowClient(tracking_uri, tracking_uri)
    client.set_registered_model_alias("bikes", "Champion", info.registered_model_version)

    test = pd.read_parquet(data_dir / "inputs_test.parquet")
    for rows in (1, 1000):
        split = json.loads(test.head(rows).to_json(orient="split"))
        (out_dir / f"body_{rows}.json").write_text(json.dumps({"dataframe_split": split}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
