"""PDDPM super-resolution vs bicubic (and bilinear) on held-out digits: PSNR/SSIM table (Markdown) and a comparison PNG.

    python3 train/eval_upscale.py split DIR            # DIR/digits_train.npz (first 1500), DIR/digits_test.npz (last 297)
    fastgen train train/pddpm_tiny.toml --set data.name=npz --set data.path=DIR/digits_train.npz ...
    python3 train/eval_upscale.py eval RUN DIR/digits_test.npz --png comparison.png

The held-out images are brought to the model's resolution exactly as training brings its data (``load_dataset``),
downsampled by D (the block mean, the operator of the guidance term), then upsampled back by bicubic and bilinear
interpolation and by ``fastgen.api.upscale`` at each guidance strength asked for.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastgen import api
from fastgen.data import load_dataset, save_image_grid
from fastgen.diffusion import pddpm
from fastgen.metrics import psnr, ssim

TRAIN_COUNT = 1500  # of scikit-learn's 1797 digits, in its order; the remaining 297 are held out


def write_split(folder: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "digits_train.npz", images=images[:TRAIN_COUNT], labels=digits.target[:TRAIN_COUNT])
    np.savez(folder / "digits_test.npz", images=images[TRAIN_COUNT:], labels=digits.target[TRAIN_COUNT:])
    print(f"{folder}: {TRAIN_COUNT} training and {len(images) - TRAIN_COUNT} held-out digits")


def evaluate(run: Path, test_npz: Path, scales: list[int], guidances: list[float], seed: int, png: Path | None,
             options: dict) -> None:  # fmt: skip
    model = api.load_model(run, device="cpu")
    image = model.config.image
    truth = load_dataset("npz", image.resolution, image.channels, path=str(test_npz)).images
    print(f"model {model.checkpoint}, {len(truth)} held-out images at {image.resolution}x{image.resolution}, "
          f"seed {seed}, options {options}\n")  # fmt: skip
    print("| scale | method | PSNR (dB) | SSIM | ‖D x̂ − y‖² per image | seconds |")
    print("|---|---|---|---|---|---|")
    rows = []
    for scale in scales:
        low = pddpm.downsample(truth, scale)
        results = {mode: (F.interpolate(low, scale_factor=scale, mode=mode, align_corners=False).clamp(-1, 1), 0.0)
                   for mode in ("bicubic", "bilinear")}  # fmt: skip
        for guidance in guidances:
            start = time.perf_counter()
            out = api.upscale(model, low, scale, seed=seed, guidance=guidance, **options)
            results[f"PDDPM λ={guidance:g}"] = (out, time.perf_counter() - start)
        for name, (out, seconds) in results.items():
            consistency = pddpm.consistency_loss(out, low).mean().item()
            print(f"| ×{scale} | {name} | {psnr(out, truth).mean():.2f} | {ssim(out, truth).mean():.4f} | "
                  f"{consistency:.4f} | {seconds:.1f} |")  # fmt: skip
        shown = slice(0, 8)
        nearest = F.interpolate(low[shown], scale_factor=scale, mode="nearest")
        rows += [truth[shown], nearest, *(out[shown] for out, _ in results.values())]
    if png is not None:
        enlarged = F.interpolate(torch.cat(rows), scale_factor=4, mode="nearest")
        print(f"\ncomparison: {save_image_grid(enlarged, png, nrow=8)} (rows per scale: truth, input (nearest), "
              f"{', '.join(results)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="write the training / held-out digits as .npz")
    split.add_argument("folder", type=Path)
    run = commands.add_parser("eval", help="PSNR/SSIM of PDDPM super-resolution and bicubic on held-out images")
    run.add_argument("run", type=Path, help="PDDPM run or checkpoint directory")
    run.add_argument("test_npz", type=Path, help="held-out images (from `split`)")
    run.add_argument("--scales", default="2,4", help="upscaling factors, comma-separated")
    run.add_argument("--guidance", default="0,0.5,1,2", help="λ values, comma-separated (0: no guidance)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--t-s", type=int, default=None, help="T_s (default: the recipe's)")
    run.add_argument("--dt-s", type=float, default=None, help="Δt_s (default: the recipe's)")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument("--png", type=Path, default=None, help="write a comparison grid of the first 8 images here")
    args = parser.parse_args()
    if args.command == "split":
        write_split(args.folder)
        return
    torch.set_num_threads(args.threads)
    options = {name: value for name, value in (("t_s", args.t_s), ("dt_s", args.dt_s)) if value is not None}
    evaluate(args.run, args.test_npz, [int(s) for s in args.scales.split(",")],
             [float(g) for g in args.guidance.split(",")], args.seed, args.png, options)  # fmt: skip


if __name__ == "__main__":
    main()
