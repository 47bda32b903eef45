"""`make bench`: every benchmark behind docs/benchmarks.md, one after another."""

from __future__ import annotations

import subprocess
import sys

STEPS = [
    [sys.executable, "-m", "benchmarks.scifact"],
    [sys.executable, "-m", "benchmarks.ingest_throughput", "--docs", "500", "--rounds", "3"],
    [sys.executable, "-m", "benchmarks.wrapper_overhead", "--calls", "2000"],
    ["bash", "benchmarks/demo_fresh_clone.sh"],
]

if __name__ == "__main__":
    for step in STEPS:
        print("$", " ".join(step), flush=True)
        subprocess.run(step, check=True)
