#!/usr/bin/env bash
# The main job on any machine (CPU: about two minutes): show the environment, train the tiny UDPM and DDPM
# presets on scikit-learn's digits, and sample them to PNG grids under runs/demo/.
# On a GPU, the real recipes are train/*_fmnist32.toml (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
out=runs/demo
python3 -m fastgen info
for family in udpm ddpm; do
    python3 -m fastgen train "train/${family}_tiny.toml" --run-dir "$out/$family" --set run.steps=400
done
python3 -m fastgen sample "$out/udpm" --n 64 --out "$out/udpm_samples.png"
python3 -m fastgen sample "$out/udpm" --interpolate --nrow 8 --out "$out/udpm_interpolation.png"
python3 -m fastgen sample "$out/ddpm" --n 64 --sampler ddim --steps 50 --out "$out/ddpm_ddim50_samples.png"
echo "demo: grids in $out/"
