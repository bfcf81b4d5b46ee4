"""`cargo xtask mlflow doctor`: what MLflow's own client sees in a store (URI as argv[1]).

Prints one JSON object: MLflow's version, the experiments, the registered models and the
aliases of each.
"""

import json
import sys

import mlflow
from mlflow.tracking import MlflowClient

uri = sys.argv[1]
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
models = client.search_registered_models()
print(
    json.dumps(
        {
            "version": mlflow.__version__,
            "experiments": [e.name for e in client.search_experiments()],
            "registered_models": [m.name for m in models],
            "aliases": {m.name: dict(m.aliases) for m in models},
        }
    )
)
