"""Robustness of OT_ε vs OT_{ε,ρ} WPP super-resolution to defects in the reference (issue 5).

64² crops of skimage textures (gravel, grass) are degraded (×4, the issue's forward model) and
restored with a reference taken from a disjoint 256² region, once clean and once with defects
pasted in (a dark line 5 px wide and a bright disk, `add_defects`). Reports PSNR (6-px border
removed) and the share of mass the defect patches receive. Run by hand (minutes per texture):

    python benches/experiment_wpp_robustness.py --max-iter 200 --n-ref 1000
"""

import argparse
import time

import numpy as np
import skimage.data

from otinverse import WPPRestorer, add_defects


def psnr(img, truth, border=6):
    b = border
    return 10 * np.log10(1.0 / np.mean((img[b:-b, b:-b] - truth[b:-b, b:-b]) ** 2))


def defect_patch_mask(est, mask):
    """Which level-0 reference patches overlap the defect mask."""
    p = est.patch_size
    rows, cols = est.reference_positions_[0].T
    return np.array([mask[r : r + p, c : c + p].any() for r, c in zip(rows, cols)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--textures", nargs="+", default=["grass", "gravel"])
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--n-ref", type=int, default=1000)
    ap.add_argument("--sinkhorn-iter", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"max_iter={args.max_iter} n_reference_patches={args.n_ref} sinkhorn_max_iter={args.sinkhorn_iter} "
          f"seed={args.seed}")
    print(f"{'texture':>8} {'method':>9} {'bicubic':>8} {'clean':>7} {'defects':>8} {'Δ dB':>6} "
          f"{'defect share':>13} {'defect mass':>12} {'s':>6}", flush=True)
    for name in args.textures:
        texture = getattr(skimage.data, name)().astype(np.float64) / 255.0
        truth = texture[:64, :64]
        reference = texture[256:, 256:]
        defective, mask = add_defects(reference)
        for label, reach in [("OT_eps", None), ("OT_eps,rho", 0.01)]:
            scores, mass = [], None
            t = time.perf_counter()
            for ref in (reference, defective):
                est = WPPRestorer(reach=reach, n_reference_patches=args.n_ref, max_iter=args.max_iter,
                                  sinkhorn_max_iter=args.sinkhorn_iter, random_state=args.seed)
                low = est.degrade(truth)
                est.fit(ref)
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    x = est.predict(low)
                scores.append(psnr(x, truth))
                bicubic = psnr(est._initial_image(low, truth.shape), truth)
                if ref is defective:
                    sel = defect_patch_mask(est, mask)
                    share, mass = sel.mean(), est.received_mass_[0][sel].sum()
            print(f"{name:>8} {label:>9} {bicubic:>8.2f} {scores[0]:>7.2f} {scores[1]:>8.2f} "
                  f"{scores[1] - scores[0]:>+6.2f} {share:>13.3f} {mass:>12.2e} {time.perf_counter() - t:>6.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
