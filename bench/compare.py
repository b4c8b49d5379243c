"""Two source trees side by side in one run: the speed figures a change must not lose.

    python bench/compare.py BEFORE_SRC AFTER_SRC [--rounds 3] [--only runtime,ceiling,remote]

Each tree is a ``src`` directory with its Cython modules built in place (``make
compile`` in its checkout). Rounds alternate before/after so a noisy machine hurts
both alike; the medians and the after/before ratios are printed as one JSON
object. Figures: ``bench/runtime.py`` (casts compiled and pure, call p50),
``dna bench --ceiling`` (seed bench on SQLite against raw ingest) and
``dna bench --remote`` (the actor in a ``dna node`` process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

KEYS = {
    "runtime": ["casts_per_s_compiled", "casts_per_s_pure", "casts_ratio", "call_p50_us"],
    "ceiling": ["puts_per_s", "ratio", "ceiling_rows_per_s"],
    "remote": ["puts_per_s", "inprocess_puts_per_s", "ratio", "remote_call_p50_us",
               "echo_p50_us", "call_vs_echo", "client_cpu_us_per_put", "server_cpu_us_per_put"],
}


def command(what: str, src: Path, n: int) -> list[str]:
    if what == "runtime":
        return [sys.executable, str(src.parent / "bench" / "runtime.py"), "--json",
                "--casts", str(n), "--calls", "20000", "--idle", "20000"]
    if what == "ceiling":
        return [sys.executable, "-m", "dna", "bench", "--ceiling", "--json", "-n", str(n)]
    return [sys.executable, "-m", "dna", "bench", "--remote", "--json", "-n", str(n // 3)]


def once(what: str, src: Path, n: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("DNA_NO_EXTENSIONS", None)
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(command(what, src, n), env=env, cwd=cwd, capture_output=True,
                             text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{what} on {src} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=1_000_000, help="messages per bench run")
    ap.add_argument("--only", default="runtime,ceiling,remote")
    ns = ap.parse_args()
    report: dict[str, Any] = {}
    for what in ns.only.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for _ in range(ns.rounds):
            for side in ("before", "after"):
                runs[side].append(once(what, getattr(ns, side).resolve(), ns.n))
        for key in KEYS[what]:
            med = {side: statistics.median(r[key] for r in runs[side] if key in r)
                   for side in runs if all(key in r for r in runs[side])}
            if len(med) == 2:
                report[f"{what}.{key}"] = {**med, "after/before": med["after"] / med["before"]}
        print(json.dumps({what: {k: v for k, v in report.items() if k.startswith(what)}}),
              file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
