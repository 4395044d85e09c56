"""UDPM latent editing figures (udpm.md Figs. 6 and 10) from a trained model, with the size of each edit measured.

    python3 train/udpm_edit_figure.py RUN --perturb-png fig6.png --swap-png fig10.png

Perturbation (Fig. 6): per image one row per latent map — x_L ("top"), e_L, …, e_1 — holding the original and
variants whose map is √(1-s²)·map + s·fresh noise. Swap (Fig. 10): per pair one row per map — [A, A with B's map,
B with A's map, B]. Printed: per map, the mean and the largest absolute pixel change the edit caused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from fastgen import api
from fastgen.data import save_image_grid


def level_names(levels: int) -> list[str]:
    """Coarse to fine: the top map, then the step noises e_L … e_1."""
    return ["top", *(str(level) for level in range(levels, 0, -1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="UDPM run or checkpoint directory")
    parser.add_argument("--n", type=int, default=2, help="images (perturbation) and pairs (swap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strength", type=float, default=0.5, help="perturbation strength s")
    parser.add_argument("--variants", type=int, default=7)
    parser.add_argument("--perturb-png", type=Path, required=True)
    parser.add_argument("--swap-png", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = api.load_model(args.run, device="cpu")
    names = level_names(model.family.schedule.levels)
    latents = model.family.draw_latents(args.n, args.seed)
    perturb = [(name, args.strength) for name in names]
    images, columns = api.edit_udpm_latents(model, latents, perturb=perturb, variants=args.variants, seed=args.seed)
    rows = images.reshape(args.n, len(names), columns, *images.shape[1:])
    change = (rows[:, :, 1:] - rows[:, :, :1]).abs()  # each variant against its row's original
    print(f"model {model.checkpoint}; {args.n} images × {args.variants} variants, strength {args.strength}")
    print("| map perturbed | mean abs pixel change | max abs pixel change |")
    print("|---|---|---|")
    for index, name in enumerate(names):
        values = change[:, index]
        print(f"| {name} | {values.mean():.4f} | {values.max():.3g} |")
    zoom = max(1, 64 // images.shape[-1])
    print(f"perturbation grid: {save_image_grid(F.interpolate(images, scale_factor=zoom), args.perturb_png, nrow=columns)}")

    if args.swap_png is not None:
        partners = model.family.draw_latents(args.n, args.seed + 1)
        swapped, columns = api.edit_udpm_latents(model, latents, swap=[(partners, name) for name in names])
        rows = swapped.reshape(args.n, len(names), columns, *swapped.shape[1:])
        print("| map swapped | mean abs change of A (A with B's map vs A) |")
        print("|---|---|")
        for index, name in enumerate(names):
            print(f"| {name} | {(rows[:, index, 1] - rows[:, index, 0]).abs().mean():.4f} |")
        grid = F.interpolate(swapped, scale_factor=zoom)
        print(f"swap grid: {save_image_grid(grid, args.swap_png, nrow=columns)}")


if __name__ == "__main__":
    main()
