"""pyunfold 0.5 against otinverse on the same binned unfolding, 50 to 1000 bins, in one run.

Problem: a Gaussian-smeared, inefficient response estimated from MC counts (square, bins ×
bins), Poisson data, pyunfold's default multinomial response covariance, exactly 25 iterations
(ks statistic, a stopping value it never reaches).

Each run is a fresh subprocess (time, and peak memory as its ``ru_maxrss``), under an 8 GB
address-space cap and a time cap so that a method that cannot cope fails visibly instead of
taking the shared machine down:

* ``pyunfold``: ``pyunfold.iterative_unfold`` (its dense (effects·causes)² response covariance
  and causes × effects·causes derivative);
* ``otinverse``: ``otinverse.unfolding.iterative_unfold`` (same call);
* ``otinverse, no errors``: the same with ``propagate_errors=False``;
* ``richardson_lucy``: otinverse's full-covariance propagation (``richardson_lucy(...,
  cov_type=...)``), which keeps the causes × effects·causes derivative.

"max rel. diff" is the largest relative difference of ``unfolded``, ``stat_err`` and
``sys_err`` between otinverse's ``iterative_unfold`` and pyunfold (or, where pyunfold failed,
the full-covariance ``richardson_lucy``).

    python benches/bench_pyunfold.py            # writes benches/results_pyunfold.md
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyunfold
from otinverse.unfolding import iterative_unfold, richardson_lucy

BINS = [50, 150, 300, 1000]
N_ITER = 25
MEMORY_CAP = 8 * 2**30
TIME_CAP_S = 600
METHODS = ["pyunfold", "otinverse", "otinverse, no errors", "richardson_lucy"]


def problem(bins: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.linspace(0, 1, bins)
    kernel = np.exp(-0.5 * ((centres[:, None] - centres[None, :]) / 0.05) ** 2)
    mc = rng.poisson(2000 * kernel / kernel.sum(axis=0)).astype(float)
    thrown = mc.sum(axis=0) / rng.uniform(0.6, 0.95, bins)
    response = mc / thrown
    truth = 1e5 / bins * (np.exp(-((centres - 0.4) ** 2) / 0.05) + 0.1)
    data = rng.poisson(response @ truth).astype(float)
    eff = response.sum(axis=0)
    return {
        "data": data,
        "data_err": np.sqrt(data),
        "response": response,
        "response_err": np.sqrt(mc) / thrown,
        "efficiencies": eff,
        "efficiencies_err": np.sqrt(eff * (1 - eff) / thrown),
    }


def run(method: str, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    kwargs = dict(p, ts="ks", ts_stopping=1e-300, max_iter=N_ITER)
    if method == "pyunfold":
        res = pyunfold.iterative_unfold(**kwargs)
    elif method.startswith("otinverse"):
        res = iterative_unfold(**kwargs, propagate_errors=method == "otinverse")
    else:
        out = richardson_lucy(
            p["response"],
            p["data"],
            N_ITER,
            efficiencies=p["efficiencies"],
            data_err=p["data_err"],
            efficiencies_err=p["efficiencies_err"],
            cov_type="multinomial",
            full_output=True,
        )
        res = {
            "unfolded": out.unfolded,
            "stat_err": np.sqrt(np.diag(out.stat_cov)),
            "sys_err": np.sqrt(np.diag(out.sys_cov)),
        }
    keys = ("unfolded", "stat_err", "sys_err")
    return {k: np.asarray(res[k], dtype=float) for k in keys if res[k] is not None}


def worker(method: str, bins: int, out: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    p = problem(bins)
    start = time.perf_counter()
    arrays = run(method, p)
    seconds = time.perf_counter() - start
    np.savez(out, **arrays)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


def measure(method: str, bins: int, where: Path) -> dict:
    out = where / f"{method.replace(' ', '_').replace(',', '')}_{bins}.npz"
    cmd = [sys.executable, __file__, "--worker", method, str(bins), str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_CAP_S)
    except subprocess.TimeoutExpired:
        return {"failed": f"> {TIME_CAP_S} s (stopped)"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        if "MemoryError" in last or "memory allocation" in proc.stderr:
            last = "MemoryError (8 GB cap)"
        return {"failed": last[:60]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["arrays"] = dict(np.load(out))
    return result


def max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for key in ("unfolded", "stat_err", "sys_err"):
        x, y = a[key], b[key]
        scale = np.where(np.abs(y) > 0, np.abs(y), 1.0)
        worst = max(worst, float(np.max(np.abs(x - y) / scale)))
    return worst


def cell(r: dict) -> str:
    if "failed" in r:
        return r["failed"]
    return f"{r['seconds']:.3g} s, {r['peak_bytes'] / 2**30:.2f} GB"


def main() -> None:
    lines = [
        f"| bins | {' | '.join(METHODS)} | otinverse vs pyunfold | max rel. diff |",
        "|---" * (len(METHODS) + 3) + "|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for bins in BINS:
            res = {m: measure(m, bins, Path(tmp)) for m in METHODS}
            ours, ref = res["otinverse"], res["pyunfold"]
            if "failed" in ref:
                ref, against = res["richardson_lucy"], "richardson_lucy"
            else:
                against = "pyunfold"
            ratio = (
                f"{res['pyunfold']['seconds'] / ours['seconds']:.0f}× faster"
                if "failed" not in res["pyunfold"] and "failed" not in ours
                else "–"
            )
            diff = (
                f"{max_rel_diff(ours['arrays'], ref['arrays']):.1e} (vs {against})"
                if "failed" not in ours and "failed" not in ref
                else "–"
            )
            row = [str(bins), *(cell(res[m]) for m in METHODS), ratio, diff]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    header = (
        f"# pyunfold vs otinverse (benches/bench_pyunfold.py)\n\n{N_ITER} iterations, "
        "multinomial response covariance; time and peak RSS of a fresh process per cell, "
        "8 GB address-space cap.\n\n"
    )
    (Path(__file__).parent / "results_pyunfold.md").write_text(header + table + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
