"""Host side of `cargo xtask containers check`.

`store STORE MODEL`: MLflow's own client reads the store a container wrote (experiments, the
registered model, its Champion alias and the run behind it) and prints what it found as JSON.
`score URL INPUTS ROWS`: posts the first ROWS rows of INPUTS (Parquet, as pandas reads it) to
URL/invocations in MLflow's `dataframe_split` format and prints the answer's predictions.
"""

import json
import os
import sys
import urllib.request


def store(path, model):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    uri = "file://" + os.path.abspath(path)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiments = [e.name for e in client.search_experiments()]
    champion = client.get_model_version_by_alias(model, "Champion")
    run = client.get_run(champion.run_id)
    print(
        json.dumps(
            {
                "experiments": experiments,
                "registered_models": [m.name for m in client.search_registered_models()],
                "champion_version": champion.version,
                "champion_run": champion.run_id,
                "run_status": run.info.status,
                "metrics": sorted(run.data.metrics),
            }
        )
    )


def score(url, inputs, rows):
    import pandas

    frame = pandas.read_parquet(inputs).head(int(rows))
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso"))})
    request = urllib.request.Request(
        url + "/invocations",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    print(json.dumps({"status": response.status, "predictions": answer["predictions"]}))


if __name__ == "__main__":
    {"store": store, "score": score}[sys.argv[1]](*sys.argv[2:])
