"""Benchmark of the WPP patch kernels. Run by hand: `python benches/bench_wpp.py`.

1. Patch-pair evaluations per second of one softmin pass
   `−ε log Σ_j exp((g_j − |x_i − y_j|²)/ε)` (6×6 patches, d = 36): the fused Rust kernel
   (tiled x·yᵀ + streaming log-sum-exp, never storing C) vs a NumPy implementation
   (|x|² + |y|² − 2 x@yᵀ with BLAS, then a max-shifted log-sum-exp).
2. Wall time of one WPPRestorer restoration at 64² and 128² (grass texture, ×4), with the
   truncated patch kernel (``sinkhorn_kernel="auto"``) and the online one (``"log"``, every pass
   over all pairs) in the same run.
"""

import argparse
import os
import time

import numpy as np
from otinverse import WPPRestorer, _core
from otinverse._core import testing


def numpy_softmin(x, y, col, eps):
    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    np.maximum(cost, 0.0, out=cost)
    z = (col[None, :] - cost) / eps
    zmax = z.max(axis=1, keepdims=True)
    return -eps * (zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1)))


def best_of(fn, reps):
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_kernel(reps):
    rng = np.random.default_rng(0)
    eps = 4e-4
    rows = []
    for n, m in [(3481, 2000), (15129, 2000), (3481, 10000)]:
        # Patches of a smooth random field in [0, 1] so that costs resemble real patch costs.
        x = np.clip(0.5 + 0.1 * rng.standard_normal((n, 36)), 0, 1)
        y = np.clip(0.5 + 0.1 * rng.standard_normal((m, 36)), 0, 1)
        col = 0.01 * rng.random(m)
        ref = numpy_softmin(x, y, col, eps)
        t_np, _ = best_of(lambda x=x, y=y, col=col: numpy_softmin(x, y, col, eps), reps)
        # Shift = the previous potential, as inside Sinkhorn.
        t_rs, out = best_of(
            lambda x=x, y=y, col=col, ref=ref: testing.patch_softmin(x, y, col, eps, ref), reps
        )
        err = np.max(np.abs(out - ref))
        pairs = n * m
        rows.append((n, m, pairs / t_np / 1e6, pairs / t_rs / 1e6, t_np / t_rs, err))
    print("\nSoftmin pass, 6×6 patches (d = 36), ε = 4e-4, threads:", os.cpu_count())
    print(
        f"{'n':>6} {'m':>6} {'NumPy Mpair/s':>14} {'Rust Mpair/s':>13} {'speed-up':>9} "
        f"{'max |Δ|':>9}"
    )
    for n, m, a, b, r, e in rows:
        print(f"{n:>6} {m:>6} {a:>14.1f} {b:>13.1f} {r:>8.1f}× {e:>9.1e}")


def bench_restoration(sizes, max_iter, n_ref, kernels):
    import skimage.data

    texture = skimage.data.grass().astype(np.float64) / 255.0
    reference = texture[256:, 256:]
    print(f"\nRestoration ×4, grass, {n_ref} reference patches per scale, reach=0.01, reg=4e-4")
    print(
        f"{'HR size':>8} {'kernel':>6} {'iterations':>10} {'wall s':>8} {'s/iter':>7} "
        f"{'PSNR bicubic':>13} {'PSNR WPP':>9} {'vs log':>7}"
    )
    for size in sizes:
        truth = texture[:size, :size]
        times = {}
        for kernel in kernels:
            est = WPPRestorer(
                n_reference_patches=n_ref, max_iter=max_iter, random_state=0, sinkhorn_kernel=kernel
            )
            low = est.degrade(truth)
            est.fit(reference)
            t = time.perf_counter()
            x = est.predict(low)
            times[kernel] = dt = time.perf_counter() - t
            ratio = f"{times['log'] / dt:>6.1f}×" if "log" in times else f"{'':>7}"
            print(
                f"{size:>6}² {kernel:>6} {max_iter:>10} {dt:>8.1f} {dt / max_iter:>7.3f} "
                f"{psnr(est.upsample(low), truth):>13.2f} {psnr(x, truth):>9.2f} {ratio}",
                flush=True,
            )


def psnr(img, truth, border=6):
    """PSNR with a ``border``-pixel margin removed (Mignon et al. §III)."""
    inner = (slice(border, -border), slice(border, -border))
    return 10 * np.log10(1.0 / np.mean((img[inner] - truth[inner]) ** 2))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--n-ref", type=int, default=2000)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--skip-restoration", action="store_true")
    p.add_argument("--kernels", nargs="+", default=["log", "auto"], choices=["log", "auto"])
    args = p.parse_args()
    print("simd:", _core.simd_level(), "| load average:", os.getloadavg())
    bench_kernel(args.reps)
    if not args.skip_restoration:
        bench_restoration(args.sizes, args.max_iter, args.n_ref, args.kernels)
