#!/usr/bin/env bash
# The main job on any machine (an idle 2-core CPU: 6 min 30 s on a first run): show the environment, train the tiny
# UDPM and DDPM presets on scikit-learn's digits (train/{udpm,ddpm}_tiny.toml, both at once, one core each); while the
# DDPM run still trains, sample UDPM to PNG grids in 3 network calls, export it to an ONNX bundle, sample and bench
# that, and score it; then sample DDPM (1000 steps), run the CPU bench (presets at batch 1) and score DDPM. It ends
# with how good the samples are: `fastgen eval` of both models with the digits classifier (class coverage,
# confidently classified fraction). Everything lands under runs/demo/. On a GPU, the real recipes are
# train/*_fmnist32.toml (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
out=runs/demo
python3 -m fastgen info
train() {  # Run again, ./demo.sh continues its runs (finished ones train no further) instead of refusing to overwrite them.
    local resume=(); [ -d "$out/$1/checkpoints" ] && resume=(--resume)
    # One thread each: these tiny networks gain little from a second thread, so the two runs share the 2 cores.
    OMP_NUM_THREADS=1 python3 -m fastgen train "train/$1_tiny.toml" --run-dir "$out/$1" "${resume[@]}"
}
mkdir -p "$out"
train ddpm > "$out/ddpm_train.log" 2>&1 &
ddpm=$!
train udpm
# UDPM's part on this core while the DDPM run still trains on the other.
python3 -m fastgen sample "$out/udpm" --n 64 --out "$out/udpm_samples.png"
python3 -m fastgen sample "$out/udpm" --interpolate --nrow 8 --out "$out/udpm_interpolation.png"
python3 -m fastgen export "$out/udpm" --out "$out/udpm_bundle" --force
python3 -m fastgen sample "$out/udpm_bundle" --n 64 --out "$out/udpm_bundle_samples.png"
python3 -m fastgen bench --checkpoint "$out/udpm_bundle" --threads 1 --json "$out/bench_bundle.json"  # its ONNX graphs
# How good the samples are: digit-classifier class coverage and confidence of 500 samples.
python3 -m fastgen eval "$out/udpm" --metrics classifier --n 500 --json "$out/udpm_eval.json"
echo "waiting for the DDPM run (its log: $out/ddpm_train.log) …"
wait "$ddpm" || { tail -n 5 "$out/ddpm_train.log"; exit 1; }
python3 -m fastgen sample "$out/ddpm" --n 64 --out "$out/ddpm_ancestral_samples.png"
python3 -m fastgen bench --batch 1 --threads 1 --json "$out/bench.json" --plot "$out/bench.png"
# DDPM scored with 100 strided ancestral steps (DDIM, η = 1): as good as all 1000 here and 10× quicker to score.
python3 -m fastgen eval "$out/ddpm" --metrics classifier --n 500 --sampler ddim --steps 100 --eta 1 --json "$out/ddpm_eval.json"
echo "demo: grids, loss curves (*/losses.png), the bundle, the bench and the evals (*_eval.json) under $out/"
echo; echo "How good the samples are (fastgen eval --metrics classifier, 500 samples each):"
cat "$out/udpm_eval.md" "$out/ddpm_eval.md"
