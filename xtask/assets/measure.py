"""Run one command and report its wall time and peak resident memory as one JSON line.

Usage: python measure.py LOG -- COMMAND [ARGS...]

The command's stdout and stderr go to LOG. Peak memory is the largest resident set of the
command and of every descendant it waited for (getrusage of this wrapper's children; the
wrapper runs one command only, so the figure is that command's own).
"""

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    log, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        print("usage: measure.py LOG -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with open(log, "wb") as out:
        start = time.perf_counter()
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": max_rss / divisor, "status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
