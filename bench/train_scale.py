"""Training at scale: `shopcast train` end to end beside a bare implicit ALS fit of the same matrix.

    python bench/train_scale.py [--events 1000000,5000000,20000000]

Synthetic power-law data (users and items drawn from Zipf-like distributions, views, carts and
purchases, sessions). Each side runs in its own process; wall time and peak memory (max RSS)
are measured the same way for both, in the same run. "ALS fit" is implicit's `fit` alone;
"bare proc" is that whole process (reading the file, building the matrix, fitting).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHOPCAST = str(Path(sys.executable).with_name("shopcast"))

BARE_FIT = """
import sys, time, numpy as np, scipy.sparse as sp, pyarrow.parquet as pq, pyarrow.compute as pc
from threadpoolctl import threadpool_limits
from implicit.cpu.als import AlternatingLeastSquares
t = pq.read_table(sys.argv[1], columns=["user_id", "item_id"])
users = pc.dictionary_encode(t["user_id"]).combine_chunks().indices.to_numpy()
items = pc.dictionary_encode(t["item_id"]).combine_chunks().indices.to_numpy()
m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)))
m.sum_duplicates()
with threadpool_limits(1, "blas"):
    model = AlternatingLeastSquares(
        factors=64, regularization=0.05, alpha=2.0, iterations=15, random_state=42)
    started = time.perf_counter()
    model.fit(m, show_progress=False)
    print(time.perf_counter() - started)
"""


def synthetic(count: int, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(1_000, count // 20), max(500, count // 100)
    users = np.minimum(rng.zipf(1.3, count) - 1, n_users - 1)
    items = np.minimum(rng.zipf(1.2, count) - 1, n_items - 1)
    kinds = rng.choice(["view", "add_to_cart", "purchase"], count, p=[0.85, 0.1, 0.05])
    stamps = 1.7e9 + np.sort(rng.uniform(0, 90 * 86_400, count))
    table = pa.table(
        {
            "user_id": pa.array(users.astype(str)),
            "item_id": pa.array(items.astype(str)),
            "event": pa.array(kinds),
            "timestamp": stamps,
            "session_id": pa.array((users * 1_000 + (stamps // 3_600) % 1_000).astype(np.int64).astype(str)),
        }
    )
    pq.write_table(table, path)


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and standard output of one child process (its own rusage)."""
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=output, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{command[0]} failed: {errors.read().decode()[-2000:]}")
        output.seek(0)
        return elapsed, usage.ru_maxrss / 1024, output.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="1000000,5000000,20000000")
    args = parser.parse_args()
    rows: list[tuple[int, float, float, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(n) for n in args.events.split(",")):
            path = Path(tmp) / f"events-{count}.parquet"
            synthetic(count, path)
            env = {
                **os.environ,
                "SHOPCAST_DATA_DIR": str(Path(tmp) / f"var-{count}"),
                "SHOPCAST_SECRET_KEY": "bench",
            }
            bare_s, bare_mb, fit_only = measure([sys.executable, "-c", BARE_FIT, str(path)], env)
            ours_s, ours_mb, _ = measure([SHOPCAST, "train", "--events", str(path), "--target", "all"], env)
            rows.append((count, float(fit_only), bare_s, bare_mb, ours_s, ours_mb))
            print(f"{count:,} events done", file=sys.stderr)
    print(
        f"\n{'events':>12} {'ALS fit s':>10} {'bare proc s':>12} {'train s':>8} {'vs fit':>7} {'vs proc':>8}"
        f" {'bare MiB':>9} {'train MiB':>10}"
    )
    for count, fit_s, bare_s, bare_mb, ours_s, ours_mb in rows:
        print(
            f"{count:>12,} {fit_s:>10.1f} {bare_s:>12.1f} {ours_s:>8.1f} {ours_s / fit_s:>6.1f}x"
            f" {ours_s / bare_s:>7.1f}x {bare_mb:>9.0f} {ours_mb:>10.0f}"
        )


if __name__ == "__main__":
    main()
