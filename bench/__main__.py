"""Run every benchmark in turn (make bench). Each writes bench/results/<name>.json."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["import_bench", "mail_bench", "compose_bench", "tick_bench", "consolidation_bench", "web_bench", "nation_import_bench", "nation_tick_bench", "nation_consolidation_bench"]

if __name__ == "__main__":
    failed = [name for name in BENCHMARKS if subprocess.call([sys.executable, "-m", f"bench.{name}"]) != 0]
    sys.exit(1 if failed else 0)
