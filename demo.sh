#!/usr/bin/env bash
# The main job on any machine (an idle 2-core CPU: about 6 minutes): show the environment, train the tiny UDPM
# and DDPM presets on scikit-learn's digits (1500 steps each), sample them to PNG grids — UDPM in 3 network
# calls, DDPM in 1000 — export the UDPM model to an ONNX bundle and sample that too, and run the CPU bench (presets,
# then the bundle's graphs on ONNX Runtime).
# Everything lands under runs/demo/. On a GPU, the real recipes are train/*_fmnist32.toml (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
out=runs/demo
python3 -m fastgen info
for family in udpm ddpm; do
    # Run again, ./demo.sh continues its runs (finished ones train no further) instead of refusing to overwrite them.
    resume=(); [ -d "$out/$family/checkpoints" ] && resume=(--resume)
    python3 -m fastgen train "train/${family}_tiny.toml" --run-dir "$out/$family" --set run.steps=1500 "${resume[@]}"
done
python3 -m fastgen sample "$out/udpm" --n 64 --out "$out/udpm_samples.png"
python3 -m fastgen sample "$out/udpm" --interpolate --nrow 8 --out "$out/udpm_interpolation.png"
python3 -m fastgen sample "$out/ddpm" --n 64 --out "$out/ddpm_ancestral_samples.png"
python3 -m fastgen export "$out/udpm" --out "$out/udpm_bundle" --force
python3 -m fastgen sample "$out/udpm_bundle" --n 64 --out "$out/udpm_bundle_samples.png"
python3 -m fastgen bench --threads 1 --json "$out/bench.json" --plot "$out/bench.png"
python3 -m fastgen bench --checkpoint "$out/udpm_bundle" --threads 1 --json "$out/bench_bundle.json"  # its ONNX graphs
echo "demo: grids, loss curves (*/losses.png), the bundle and the bench under $out/"
