"""Times MLflow's Python client on the tracking and registry steps velo's bench also times.

The steps are those the reference package performs with MLflow's fluent API: open a run, log
20 params and 100 metrics, end it; log a pyfunc model (explicit pip requirements, so no
dependency inference is timed); register it and set an alias; load it back by alias. Prints one
JSON object of medians in milliseconds. Usage: python mlflow_tracking_bench.py URI REPEATS BYTES
"""

import json
import os
import statistics
import sys
import tempfile
import time

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema


class Payload(mlflow.pyfunc.PythonModel):
    """A model carrying opaque bytes, standing in for a trained model of the same size."""

    def __init__(self, payload):
        self.payload = payload

    def predict(self, context, model_input, params=None):
        return model_input.iloc[:, 0] * 0.0


def main():
    uri, repeats, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("bench")
    client = mlflow.MlflowClient()
    payload = os.urandom(size)
    example = pd.DataFrame({"hr": [0, 1], "temp": [0.2, 0.3]})
    signature = ModelSignature(
        inputs=Schema([ColSpec("long", "hr"), ColSpec("double", "temp")]),
        outputs=Schema([ColSpec("double", "cnt")]),
    )
    times = {"run_log_ms": [], "log_model_ms": [], "register_alias_ms": [], "load_by_alias_ms": []}
    params = {f"param_{i}": str(i) for i in range(20)}
    metrics = {f"metric_{i}": float(i) for i in range(100)}
    for index in range(repeats + 1):
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"bench-{index}"):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
        run_log = time.perf_counter() - started

        with mlflow.start_run(run_name=f"model-{index}") as run:
            started = time.perf_counter()
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=Payload(payload),
                signature=signature,
                input_example=example,
                pip_requirements=["velo-bench"],
            )
            log_model = time.perf_counter() - started

        started = time.perf_counter()
        version = mlflow.register_model(info.model_uri, "bench-model")
        client.set_registered_model_alias("bench-model", "Champion", version.version)
        register = time.perf_counter() - started

        with tempfile.TemporaryDirectory():
            started = time.perf_counter()
            loaded = mlflow.pyfunc.load_model("models:/bench-model@Champion")
            assert len(loaded.unwrap_python_model().payload) == size
            load = time.perf_counter() - started

        if index == 0:
            continue  # warm-up: imports and first connections are not timed
        for key, seconds in zip(times, (run_log, log_model, register, load)):
            times[key].append(seconds * 1000.0)
    print(json.dumps({key: statistics.median(values) for key, values in times.items()}))


if __name__ == "__main__":
    main()
