"""Robustness of OT_ε vs OT_{ε,ρ} WPP super-resolution to defects in the reference.

64² crops of skimage textures (gravel, grass) are degraded (×4, WPPRestorer's forward model) and
restored with a reference taken from a disjoint 256² region, once clean and once with defects
pasted in (a dark line 5 px wide and a bright disk, `add_defects`; `--disk-radius`). Reports PSNR
(6-px border removed, as Mignon et al. §III; also over the whole image and with a 16-px border, i.e.
with and without the weakly observed margin of the valid forward model), the prior-free fit (Adam
on the data term alone), the share of level-0 reference patches that overlap a defect, the mass
they receive in the plan at the returned image, and the LR residual of the restoration in units
of the noise level (1 = the data are fitted to the noise, the discrepancy principle).
`--boundary reflect` swaps in a forward model without the weak margin (diagnostic). Run by hand
(minutes per texture):

    python benches/experiment_wpp_robustness.py --max-iter 200 --n-ref 1000
"""

import argparse
import time
import warnings

import numpy as np
import skimage.data
from otinverse import WPPRestorer, add_defects
from otinverse.imaging import BlurSubsampleOperator, gaussian_kernel


class ReflectBoundaryRestorer(WPPRestorer):
    """WPPRestorer's blur and ×s subsampling with the image first mirrored at its edges (a "same"
    forward model, LR side = HR side / s), so that every HR pixel is observed with full weight.

    Diagnostic only: with the valid model the outer ~5 px are barely observed and balanced OT can
    park the defect patches there at no cost in data fidelity; this variant removes that margin.
    """

    def _pad_index(self, shape):
        s, k = int(self.scale_factor), 4 * int(self.scale_factor)
        before = (k - s) // 2
        index = np.arange(shape[0] * shape[1]).reshape(shape)
        return np.pad(index, ((before, k - s - before),) * 2, mode="symmetric")

    def _padded_blur(self, shape):
        s = int(self.scale_factor)
        return BlurSubsampleOperator(gaussian_kernel(4 * s, s / 2.0), s, shape)

    def _forward(self, image):
        padded = image.ravel()[self._pad_index(image.shape)]
        return self._padded_blur(padded.shape).apply(padded)

    def _forward_adjoint(self, residual, shape):
        index = self._pad_index(shape)
        padded = self._padded_blur(index.shape).adjoint(residual)
        return np.bincount(
            index.ravel(), weights=padded.ravel(), minlength=shape[0] * shape[1]
        ).reshape(shape)

    def high_res_shape(self, low_res_shape):
        return tuple(int(self.scale_factor) * n for n in low_res_shape)

    def _upsample(self, low, shape):
        # LR pixel r sits (k − s)/2 px further up and left than in the valid model (s·r + (s − 1)/2
        # instead of s·r + (k − 1)/2): that model's interpolation on a larger grid, cropped.
        s, k = int(self.scale_factor), 4 * int(self.scale_factor)
        before = (k - s) // 2
        wide = super()._upsample(low, (shape[0] + before, shape[1] + before))
        return wide[before:, before:]


def psnr(img, truth, border=6):
    inner = (slice(border, img.shape[0] - border), slice(border, img.shape[1] - border))
    return 10 * np.log10(1.0 / np.mean((img[inner] - truth[inner]) ** 2))


def data_only(est, low, shape):
    """Adam on λ/2 |S H x − y|² alone (same start, λ, step and iterations): the prior-free fit."""
    lam = est.default_data_weight(shape) if est.data_weight is None else est.data_weight
    x = est._initial_image(low, shape)
    m1, m2 = np.zeros_like(x), np.zeros_like(x)
    for t in range(est.max_iter):
        g = lam * est._forward_adjoint(est._forward(x) - low, shape)
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        x = x - est.learning_rate * (m1 / (1 - 0.9 ** (t + 1))) / (
            np.sqrt(m2 / (1 - 0.999 ** (t + 1))) + 1e-8
        )
    return x


def defect_patch_mask(est, mask):
    """Which level-0 reference patches overlap the defect mask."""
    p = est.patch_size
    rows, cols = est.reference_positions_[0].T
    return np.array([mask[r : r + p, c : c + p].any() for r, c in zip(rows, cols, strict=True)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--textures", nargs="+", default=["grass", "gravel"])
    ap.add_argument("--size", type=int, default=64, help="side of the crop (16 + 4·m)")
    ap.add_argument(
        "--methods", nargs="+", default=["OT_ε", "OT_{ε,ρ}"], choices=["OT_ε", "OT_{ε,ρ}"]
    )
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--n-ref", type=int, default=1000)
    ap.add_argument(
        "--data-weight", type=float, default=None, help="λ (default: the estimator's rule)"
    )
    ap.add_argument("--sinkhorn-iter", type=int, default=None, help="default: the estimator's")
    ap.add_argument(
        "--eps-scaling",
        type=float,
        default=None,
        help="per-step annealing factor (default: warm start)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--disk-radius",
        type=int,
        default=None,
        help="of the bright defect disk (default: add_defects')",
    )
    ap.add_argument(
        "--boundary",
        choices=["valid", "reflect"],
        default="valid",
        help="forward model at the edges: WPPRestorer's valid correlation, or mirrored "
        "(diagnostic)",
    )
    ap.add_argument("--save", default=None, help="save the restorations to this .npz file")
    args = ap.parse_args()
    extra = {} if args.sinkhorn_iter is None else {"sinkhorn_max_iter": args.sinkhorn_iter}
    print(
        f"size={args.size} max_iter={args.max_iter} n_reference_patches={args.n_ref} "
        f"data_weight={args.data_weight} eps_scaling={args.eps_scaling} {extra} seed={args.seed} "
        f"boundary={args.boundary} disk_radius={args.disk_radius}"
    )
    print(
        "| texture | method | bicubic | data only | clean ref | defective ref | Δ dB "
        "| Δ dB (whole image) | Δ dB (16-px border) | defect share | defect mass "
        "| residual/σ (clean, defects) | s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    saved = {}
    for name in args.textures:
        texture = getattr(skimage.data, name)().astype(np.float64) / 255.0
        truth = texture[: args.size, : args.size]
        reference = texture[256:, 256:]
        defective, mask = add_defects(reference, disk_radius=args.disk_radius)
        cls = ReflectBoundaryRestorer if args.boundary == "reflect" else WPPRestorer
        for label, reach in [(m, {"OT_ε": None, "OT_{ε,ρ}": 0.01}[m]) for m in args.methods]:
            scores, whole, inner, residuals, notes = [], [], [], [], []
            t = time.perf_counter()
            for ref in (reference, defective):
                est = cls(
                    reach=reach,
                    n_reference_patches=args.n_ref,
                    max_iter=args.max_iter,
                    data_weight=args.data_weight,
                    sinkhorn_eps_scaling=args.eps_scaling,
                    random_state=args.seed,
                    **extra,
                )
                low = est.degrade(truth)
                est.fit(ref)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    restored = est.restore(low)
                x = restored.image
                notes += [f"warning: {w.message}" for w in caught]
                scores.append(psnr(x, truth))
                whole.append(psnr(x, truth, border=0))
                inner.append(psnr(x, truth, border=16))
                saved[f"{name}/{label}/{'defects' if ref is defective else 'clean'}"] = x
                residuals.append(np.sqrt(np.mean((est._forward(x) - low) ** 2)) / est.noise_std)
                bicubic = psnr(est.upsample(low), truth)
                plain = psnr(data_only(est, low, truth.shape), truth)
                if ref is defective:
                    sel = defect_patch_mask(est, mask)
                    share, mass = sel.mean(), restored.received_mass[0][sel].sum()
            print(
                f"| {name} | {label} | {bicubic:.2f} | {plain:.2f} | {scores[0]:.2f} "
                f"| {scores[1]:.2f} | {scores[1] - scores[0]:+.2f} | {whole[1] - whole[0]:+.2f} "
                f"| {inner[1] - inner[0]:+.2f} | {share:.3f} | {mass:.1e} "
                f"| {residuals[0]:.1f}, {residuals[1]:.1f} | "
                f"{time.perf_counter() - t:.0f} |",
                flush=True,
            )
            for n in notes:
                print(f"  ({name} {label}) {n}", flush=True)
            if args.save:
                np.savez_compressed(args.save, **saved)


if __name__ == "__main__":
    main()
