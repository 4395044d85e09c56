#!/usr/bin/env bash
# The main job on any machine (an idle 2-core CPU: 6 min 37 s on a first run): show the environment, then two chains
# side by side, one core each — UDPM: train train/udpm_tiny.toml on scikit-learn's digits, sample it to PNG grids in 3
# network calls, export it to an ONNX bundle, sample and bench that, score it; DDPM: train train/ddpm_tiny.toml,
# sample it (1000 steps), score it — and last, alone on the machine, the CPU bench (presets at batch 1). It ends with
# how good the samples are: `fastgen eval` of both models with the digits classifier (class coverage, confidently
# classified fraction). Everything lands under runs/demo/. On a GPU, the real recipes are train/*_fmnist32.toml
# (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
out=runs/demo
python3 -m fastgen info
# One thread per process: these tiny networks gain little from a second thread, so the two chains share the 2 cores.
fastgen() { OMP_NUM_THREADS=1 python3 -m fastgen "$@"; }
train() {  # Run again, ./demo.sh continues its runs (finished ones train no further) instead of refusing to overwrite them.
    local resume=(); [ -d "$out/$1/checkpoints" ] && resume=(--resume)
    fastgen train "train/$1_tiny.toml" --run-dir "$out/$1" "${resume[@]}"
}
udpm() {
    train udpm
    fastgen sample "$out/udpm" --n 64 --out "$out/udpm_samples.png"
    fastgen sample "$out/udpm" --interpolate --nrow 8 --out "$out/udpm_interpolation.png"
    fastgen export "$out/udpm" --out "$out/udpm_bundle" --force
    fastgen sample "$out/udpm_bundle" --n 64 --out "$out/udpm_bundle_samples.png"
    fastgen bench --checkpoint "$out/udpm_bundle" --threads 1 --json "$out/bench_bundle.json"  # its ONNX graphs
    # How good the samples are: digit-classifier class coverage and confidence of 500 samples.
    fastgen eval "$out/udpm" --metrics classifier --n 500 --json "$out/udpm_eval.json"
}
ddpm() {
    train ddpm
    fastgen sample "$out/ddpm" --n 64 --out "$out/ddpm_ancestral_samples.png"
    # Scored with 100 strided ancestral steps (DDIM, η = 1): as good as all 1000 here and 10× quicker to score.
    fastgen eval "$out/ddpm" --metrics classifier --n 500 --sampler ddim --steps 100 --eta 1 --json "$out/ddpm_eval.json"
}
mkdir -p "$out"
ddpm > "$out/ddpm.log" 2>&1 &
ddpm_chain=$!
udpm
echo "waiting for the DDPM chain (its log: $out/ddpm.log) …"
wait "$ddpm_chain" || { tail -n 5 "$out/ddpm.log"; exit 1; }
fastgen bench --batch 1 --threads 1 --json "$out/bench.json" --plot "$out/bench.png"  # last: alone on the machine
echo "demo: grids, loss curves (*/losses.png), the bundle, the bench and the evals (*_eval.json) under $out/"
echo; echo "How good the samples are (fastgen eval --metrics classifier, 500 samples each):"
cat "$out/udpm_eval.md" "$out/ddpm_eval.md"
