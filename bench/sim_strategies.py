"""CPU per simulated request for every strategy, at a few pool sizes (not a test: it prints figures).

The million-request benchmark (``sim_bench.py``) uses power of two choices, which reads two members of a pool
whatever its size. The other strategies read more: this script runs the same small scenario with each of them at
each pool size — 2,000 req/s for 5 s (10,000 requests), 8 workers and a queue of 16 per instance (work 5 ± 2 ms),
``b`` crashed at 1 s, ``c`` gray at 2 s, ``d`` slow at 3 s — each run in a fresh child process, and prints CPU
microseconds per request (medians of ``--rounds`` interleaved rounds) and each run's digest.

``--root DIR`` adds another copy of the package (e.g. the commit a change started from:
``mkdir /tmp/base && git archive BASE | tar -x -C /tmp/base``), run in the same rounds, interleaved, and prints
the ratio of the two (base / this, per round, then the median) and whether the digests are equal — a change that
should make the same choices faster must keep them.

::

    .venv/bin/python bench/sim_strategies.py [--sizes 5 100] [--rounds 3] [--root /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from spofkit.sim import Capacity, SimLab
strategy, size = sys.argv[2], int(sys.argv[3])
lab = SimLab(size, strategy=strategy, seed=3, capacity=Capacity(concurrency=8, queue=16, work_ms=5, spread_ms=2))
faults = [(1.0, "b", "crash", {}), (2.0, "c", "gray", {"rate": 0.5, "status": 503}), (3.0, "d", "slow", {"ms": 100.0})]
started = time.process_time()
report = lab.run_load_sync(2000, 5.0, faults=faults)
cpu = time.process_time() - started
print(json.dumps({"us": cpu / report.requests * 1e6, "digest": lab.digest.hexdigest(), "failed": report.failed}))
"""


def run(root: Path, strategy: str, size: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), strategy, str(size)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 100], help="pool sizes (instances)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is printed")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: every built-in strategy")
    parser.add_argument("--root", type=Path, default=None, help="another copy of spofkit to compare with")
    options = parser.parse_args(argv)
    if options.rounds < 1 or any(size < 4 for size in options.sizes):
        parser.error("--rounds must be >= 1 and every size >= 4 (the faults name a..d)")
    sys.path.insert(0, str(HERE.parent))
    from spofkit.policy.strategies import strategy_names

    strategies = options.strategies or strategy_names()
    roots = {"this": HERE.parent}
    if options.root is not None:
        roots["base"] = options.root.resolve()
    print(f"Python {sys.version.split()[0]}; 10,000 requests a run; CPU µs per request, median of {options.rounds}")
    header = f"{'strategy':22} {'size':>5} {'this':>8}"
    if "base" in roots:
        header += f" {'base':>8} {'base/this':>10}  same digest"
    print(header)
    for strategy in strategies:
        for size in options.sizes:
            figures: dict[str, list[float]] = {name: [] for name in roots}
            ratios: list[float] = []
            digests: dict[str, set[object]] = {name: set() for name in roots}
            for _ in range(options.rounds):
                this_round = {}
                for name, root in roots.items():  # interleaved: each round runs every copy once
                    result = run(root, strategy, size)
                    this_round[name] = float(str(result["us"]))
                    figures[name].append(this_round[name])
                    digests[name].add(result["digest"])
                if "base" in this_round:
                    ratios.append(this_round["base"] / this_round["this"])
            line = f"{strategy:22} {size:>5} {statistics.median(figures['this']):>8.1f}"
            if "base" in roots:
                same = "yes" if digests["this"] == digests["base"] else "NO"
                line += f" {statistics.median(figures['base']):>8.1f} {statistics.median(ratios):>9.2f}x  {same}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
