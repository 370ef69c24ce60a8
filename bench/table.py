#!/usr/bin/env python3
"""A bench/run.py result as the Markdown table docs/PERFORMANCE.md shows.

    python3 bench/table.py bench/results/<time>.json          # a finished run
    python3 bench/table.py bench/results/<time>-partial.json  # the rounds a cut-short run finished

Medians of the samples; ratios fusevault/gocryptfs and fusevault+peer/gocryptfs.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

NAMES = ["plain", "gocryptfs", "fusevault", "fusevault+peer"]
HIGHER_IS_BETTER = ("MiB/s", "IOPS")


def samples_of(path: Path) -> dict[str, dict[str, list[float]]]:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "rows" in data:
        return {entry["row"]: entry["samples"] for entry in data["rows"]}
    return data


def verdict(ratio: float, higher: bool) -> str:
    return "met" if (ratio >= 1.0 if higher else ratio <= 1.0) else "not met"


def main() -> int:
    samples = samples_of(Path(sys.argv[1]))
    print("| row | plain | gocryptfs | fusevault | fusevault + peer | fv / gc | fv+peer / gc |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row, by_target in samples.items():
        med = {t: statistics.median(v) for t, v in by_target.items()}
        higher = row.endswith(HIGHER_IS_BETTER)
        cells = [f"{med[n]:.2f}" if n in med else "" for n in NAMES]
        ratios = []
        for name in ("fusevault", "fusevault+peer"):
            if name in med and med.get("gocryptfs"):
                ratio = med[name] / med["gocryptfs"]
                good = verdict(ratio, higher) == "met"
                ratios.append(f"**{ratio:.2f}**" if good else f"{ratio:.2f}")
            else:
                ratios.append("")
        print(f"| {row} | " + " | ".join(cells + ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
