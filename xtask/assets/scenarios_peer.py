"""The pandas peer of velo's perturbation throughput (`cargo xtask bench --scenarios`).

Giskard's scan and Deepchecks perturb pandas frames with numpy; this applies the same four
perturbations as velo's bench (Gaussian noise on four float columns, +1 on 10% of `hr`, 10% of
`hum` set missing, 10% of `season` swapped for another season) to frames of the same shape,
batch by batch, and prints one JSON object. Generation is not timed.
"""

import json
import sys
import time

import numpy as np
import pandas as pd

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
batch = 65_536
rng = np.random.default_rng(7)
seconds = 0.0
done = 0
while done < rows:
    n = min(batch, rows - done)
    frame = pd.DataFrame(
        {
            "season": rng.integers(1, 5, n).astype("uint8"),
            "hr": rng.integers(0, 24, n).astype("uint8"),
            "temp": rng.random(n, dtype=np.float32),
            "atemp": rng.random(n, dtype=np.float32),
            "hum": rng.random(n, dtype=np.float32),
            "windspeed": rng.random(n, dtype=np.float32),
        }
    )
    started = time.perf_counter()
    out = frame.copy()
    for column in ["temp", "atemp", "hum", "windspeed"]:
        out[column] = (out[column] + 0.05 * rng.standard_normal(n)).astype("float32")
    picked = rng.random(n) < 0.1
    out.loc[picked, "hr"] = np.minimum(out.loc[picked, "hr"].astype("int64") + 1, 255).astype("uint8")
    picked = rng.random(n) < 0.1
    out.loc[picked, "hum"] = np.nan
    picked = rng.random(n) < 0.1
    seasons = np.array([1, 2, 3, 4], dtype="uint8")
    current = out.loc[picked, "season"].to_numpy()
    shift = rng.integers(1, 4, picked.sum()).astype("uint8")
    out.loc[picked, "season"] = seasons[(current - 1 + shift) % 4]
    seconds += time.perf_counter() - started
    done += n
print(json.dumps({"perturbed_rows": done, "perturb_seconds": seconds, "perturb_rows_per_second": done / seconds}))
