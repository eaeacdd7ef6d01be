"""Instructions per simulated request, counted by valgrind (not a test: it prints a figure).

CPU seconds on a shared machine move by 20-40 % from one minute to the next, which hides a change of a few per
cent. An instruction count does not move: ``valgrind --tool=callgrind`` counts the instructions the CPU runs,
the same for the same program and input whatever else the machine is doing. This script runs part 1 of
``sim_bench.py`` (100 instances, power of two, 16 workers and a queue of 64, the four faults) under callgrind
twice, with a small and a larger number of requests, and prints the difference per request: start-up, imports
and the report's fixed costs cancel out. It also prints each run's digest, so that a change that should not
change what happens can be seen not to.

::

    .venv/bin/python bench/sim_instructions.py                  # this checkout
    .venv/bin/python bench/sim_instructions.py --root /tmp/base # another copy of the package, e.g. a commit:
    # mkdir /tmp/base && git archive BASE | tar -x -C /tmp/base

Needs valgrind (Debian's package ``valgrind``). Each run is about 50 times slower than without valgrind: the
defaults (10,000 and 30,000 requests) take about a minute, the two runs side by side.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import sys
root, requests = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [root, root + "/bench"]
import sim_bench
setup = sim_bench.Setup(100, requests, 10_000.0, "power_of_two",
                        sim_bench.Capacity(concurrency=16, queue=64, work_ms=5.0, spread_ms=2.0), 1)
run = sim_bench.run_spofkit(setup)
print("digest", run.digest, "failed", run.report.failed)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the copy of spofkit to measure")
    parser.add_argument("--small", type=int, default=10_000, help="requests of the smaller run")
    parser.add_argument("--large", type=int, default=30_000, help="requests of the larger run")
    options = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 < options.small < options.large:
        parser.error("--small must be at least 1 and less than --large")
    with tempfile.TemporaryDirectory() as folder:
        child = Path(folder) / "child.py"
        child.write_text(_CHILD)
        under_callgrind = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(child)]
        runs = {
            requests: subprocess.Popen(
                [*under_callgrind, str(options.root.resolve()), str(requests)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for requests in (options.small, options.large)
        }
        counts, digests = {}, {}
        for requests, process in runs.items():
            out, err = process.communicate(timeout=3600)
            collected = re.search(r"Collected : (\d+)", err)
            if process.returncode != 0 or collected is None:
                print(f"the run of {requests:,} requests failed:\n{err[-2000:]}", file=sys.stderr)
                return 1
            counts[requests] = int(collected.group(1))
            digests[requests] = out.strip()
    per_request = (counts[options.large] - counts[options.small]) / (options.large - options.small)
    print(f"spofkit at {options.root}: Python {sys.version.split()[0]}")
    for requests in runs:
        print(f"  {requests:>9,} requests: {counts[requests]:>15,} instructions; {digests[requests]}")
    print(f"  => {per_request:,.0f} instructions per simulated request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
