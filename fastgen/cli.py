"""The ``fastgen`` command line: one thin verb per Python API (``fastgen --help`` lists them)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fastgen.errors import FastgenError, one_line

app = typer.Typer(
    name="fastgen",
    help="Train, export, sample and benchmark fast image diffusion models (UDPM, PDDPM, blur diffusion, DDPM/DDIM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
error_console = Console(stderr=True)
# click's base of usage errors (bad option values, missing arguments): typer vendors click in recent versions.
_USAGE_ERROR = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


@app.callback()
def _root() -> None:
    """fastgen: fast image diffusion models, from training to TensorRT engines.

    Every verb is a thin layer over a Python API of the same name in the ``fastgen`` package.
    """


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables.")) -> None:
    """Show what this machine offers: torch/ONNX/ONNX Runtime versions, GPUs and their compute capability,
    which TensorRT flavour imports (tensorrt, tensorrt_rtx or none), ONNX Runtime providers, cuda-python, nvcc."""
    from fastgen.info import collect_environment

    env = collect_environment()
    if as_json:
        console.print_json(json.dumps(env.to_dict()))
        return
    table = Table(title="fastgen environment")
    for column in ("component", "version", "detail"):
        table.add_column(column)
    for component in env.components:
        version = component.version or "[red]not available[/red]"
        table.add_row(component.name, version, component.detail)
    console.print(table)
    if env.gpus:
        gpus = Table(title="CUDA devices")
        for column in ("index", "name", "compute capability", "memory (GiB)"):
            gpus.add_column(column)
        for gpu in env.gpus:
            gpus.add_row(str(gpu.index), gpu.name, gpu.compute_capability, f"{gpu.memory_gib:.1f}")
        console.print(gpus)
    else:
        console.print("CUDA devices: none visible to torch")
    console.print(f"TensorRT flavour: {', '.join(env.tensorrt_flavours) or 'none'}")
    console.print(f"ONNX Runtime providers: {', '.join(env.onnxruntime_providers) or 'none'}")


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Training recipe (TOML), e.g. train/udpm_fmnist32.toml.", exists=True, dir_okay=False),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: --set optim.lr=2e-4 --set run.steps=100 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory from its latest checkpoint."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where checkpoints and logs go (default: run.out_dir/run.name)."),
    allow_new_data: bool = typer.Option(False, "--allow-new-data", help="With --resume: continue on data other than the run's (its recorded fingerprint differs)."),
) -> None:
    """Train the model a recipe describes. Checkpoints (safetensors + config JSON + optimizer state) are written
    atomically every run.checkpoint_every steps; --resume continues exactly where the run stopped. Under
    torchrun the same command trains with DistributedDataParallel. Loss curves go to RUN_DIR/losses.png."""
    import os

    from fastgen import api
    from fastgen.training.plots import plot_losses

    final = api.train(recipe, set_, resume=resume, run_dir=run_dir, allow_new_data=allow_new_data)
    _say(f"final checkpoint: {final}")
    if os.environ.get("RANK", "0") == "0":  # one plot per run, not one per torchrun process
        _say(f"loss curves: {plot_losses(final.parents[1])}")


# Options shared by the verbs that sample (`sample`, `eval`): defined once, read by both.
SOURCE_ARGUMENT = typer.Argument(..., help="A checkpoint directory, a run directory (its latest checkpoint) or an exported bundle.",
                                 exists=True)  # fmt: skip
DEVICE_OPTION = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda, cuda:1 …")
WEIGHTS_OPTION = typer.Option("ema", "--weights", help="ema (default) or model (the raw, non-averaged weights).")
BACKEND_OPTION = typer.Option(None, "--backend", help="torch (checkpoints), onnxruntime (bundles' default) or tensorrt.")
SAMPLER_OPTION = typer.Option(None, "--sampler", help="DDPM/PDDPM-style families: ancestral (all T steps) or ddim.")
STEPS_OPTION = typer.Option(None, "--steps", min=1, help="DDIM steps (with --sampler ddim).")
ETA_OPTION = typer.Option(None, "--eta", help="DDIM eta: 0 deterministic, 1 ancestral-like.")
CLIP_X0_OPTION = typer.Option(False, "--clip-x0", help="DDPM/PDDPM: clamp each step's clean-image estimate to [-1, 1] (steadies short DDIM chains of young models).")
T_F_OPTION = typer.Option(None, "--t-f", min=1, help="PDDPM: steps of the full reverse at the coarsest resolution.")
T_S_OPTION = typer.Option(None, "--t-s", min=1, help="PDDPM: steps of the scaled schedule at the finer resolutions.")
DT_S_OPTION = typer.Option(None, "--dt-s", help="PDDPM: CCDF restart point as a fraction of T_s (0 < dt_s ≤ 1).")
ADDRESS_OPTION = typer.Option(None, "--address", help="Ray cluster to join: auto (the one `ray start` made here) or HOST:PORT of its head; default: start a local one.")


def sampler_options(sampler: str | None, steps: int | None, eta: float | None, clip_x0: bool, t_f: int | None,
                    t_s: int | None, dt_s: float | None) -> dict[str, Any]:  # fmt: skip
    """The sampler options given on the command line (those left out keep the family's defaults)."""
    given = dict(sampler=sampler, steps=steps, eta=eta, t_f=t_f, t_s=t_s, dt_s=dt_s, clip_x0=clip_x0 or None)
    return {name: value for name, value in given.items() if value is not None}


@app.command()
def sample(
    checkpoint: Path = SOURCE_ARGUMENT,
    n: int = typer.Option(64, "--n", min=1, help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same images."),
    out: Path = typer.Option(Path("samples.png"), "--out", help="PNG grid to write; a path ending in .npy gets the raw float32 images [N, C, H, W] instead."),
    nrow: int = typer.Option(8, "--nrow", min=1, help="Images per row of the grid."),
    device: str = DEVICE_OPTION,
    weights: str = WEIGHTS_OPTION,
    sampler: str | None = SAMPLER_OPTION,
    steps: int | None = STEPS_OPTION,
    eta: float | None = ETA_OPTION,
    clip_x0: bool = CLIP_X0_OPTION,
    t_f: int | None = T_F_OPTION,
    t_s: int | None = T_S_OPTION,
    dt_s: float | None = DT_S_OPTION,
    save_latents: Path | None = typer.Option(None, "--save-latents", help="UDPM: save the latents (x_L and per-level noises: the seed's own draws, so the images are those of the seed) as .pt."),
    interpolate: bool = typer.Option(False, "--interpolate", help="UDPM: an interpolation grid between the latents of the seed's first four images (paper Fig. 5)."),
    latents_file: Path | None = typer.Option(None, "--latents", help="UDPM: replay (or, with --perturb/--swap, edit) latents saved by --save-latents; --n is then the file's.", exists=True, dir_okay=False),
    perturb: list[str] = typer.Option([], "--perturb", help="UDPM: LEVEL:STRENGTH, e.g. 2:0.3 (repeatable): per image a row of the original and nrow-1 variants whose level-LEVEL noise is √(1-s²)·e + s·fresh (paper Fig. 6). LEVEL l = 1 … L is the noise e_l of the step x_l → x_(l-1), with its observation noise e'_l for a Gaussian kernel (level 1 has no effect: exact posterior); top is the noise that makes x_L."),
    swap: list[str] = typer.Option([], "--swap", help="UDPM: FILE:LEVEL (repeatable): per image a row [it, it with FILE's map at LEVEL, FILE's image with its map, FILE's image] (paper Fig. 10); FILE from --save-latents, same batch size."),
    backend: str | None = BACKEND_OPTION,
    zoom: int = typer.Option(0, "--zoom", min=0, help="Enlarge each image by this factor in the grid (0: enough for ≥ 64 px)."),
    ray: bool = typer.Option(False, "--ray", help="Sample on Ray (Data): --out is a folder of shard-<first>.npy files written by a pool of samplers; the same command again resumes (finished shards are skipped)."),
    address: str | None = ADDRESS_OPTION,
    shard: int = typer.Option(256, "--shard", min=1, help="With --ray: images per shard."),
    actors: int | None = typer.Option(None, "--actors", min=1, help="With --ray: samplers in the pool (default: one per GPU, else one per CPU less one)."),
    png: bool = typer.Option(False, "--png", help="With --ray: also a PNG per image, in a folder beside each shard."),
) -> None:
    """Sample a trained model (checkpoint, run directory or exported bundle) to a PNG grid. The same seed gives
    the same images from a checkpoint and from its bundle. Options a family does not have are an error. With --ray
    a large sample is written as shards by a Ray cluster (local, or --address): their union is the same images."""
    import torch

    from fastgen import api
    from fastgen.memory import check_fits, grid_bytes
    from fastgen.outputs import NPY, PNG, TORCH_FILE, check_output
    from fastgen.runtime import load_for_sampling

    if ray:
        stray = [name for name, given in (("--interpolate", interpolate), ("--save-latents", save_latents), ("--latents", latents_file),
                                          ("--perturb", perturb), ("--swap", swap)) if given]  # fmt: skip
        if stray:
            raise FastgenError(f"{', '.join(stray)} do not combine with --ray, which writes a seed's images as shards")
        _sample_on_ray(checkpoint, n, seed, out, address, shard, actors, png, backend, device,
                       sampler_options(sampler, steps, eta, clip_x0, t_f, t_s, dt_s))  # fmt: skip
        return
    stray = [name for name, given in (("--address", address), ("--actors", actors), ("--png", png)) if given]
    if stray:
        raise FastgenError(f"{', '.join(stray)} only apply with --ray")
    check_output(out, NPY if out.suffix == ".npy" else PNG, inputs=[checkpoint])  # before any work: a bad path must not cost a whole sample
    if save_latents is not None:
        check_output(save_latents, TORCH_FILE, inputs=[checkpoint])
    options = sampler_options(sampler, steps, eta, clip_x0, t_f, t_s, dt_s)
    model = load_for_sampling(checkpoint, backend=backend, device=api.resolve_device(device), weights=weights)
    size = model.family.image.resolution
    zoom = zoom or max(1, -(-64 // size))
    count = nrow * nrow if interpolate else n
    streamed = out.suffix == ".npy" and not (interpolate or save_latents or latents_file or perturb or swap)
    if streamed:  # sampled in chunks straight to the file: memory is one chunk's
        count = min(count, api.SAMPLE_CHUNK)
    host = 0 if out.suffix == ".npy" else grid_bytes(count, model.family.image.channels, zoom * size)
    if model.device.type == "cpu":  # the sampler's memory comes on top of the grid's
        host += api.sampling_bytes(model, count)
    check_fits(host, torch.device("cpu"), f"{count} images in a grid of {zoom * size}-pixel images",
               "ask for fewer images or a smaller --zoom")  # fmt: skip
    if latents_file is not None or perturb or swap:
        if interpolate or save_latents is not None:
            raise FastgenError("--interpolate and --save-latents make new latents; they do not combine with --latents, --perturb or --swap")
        model.family.check_sampler_options(options)
    base = api.load_latents(latents_file) if latents_file is not None else None
    if perturb or swap:
        edits = dict(perturb=[_pair(text, "LEVEL:STRENGTH", float) for text in perturb],
                     swap=[(api.load_latents(file), level) for file, level in (_pair(text, "FILE:LEVEL") for text in swap)])
        images, nrow = api.edit_udpm_latents(model, base, n=n, seed=seed, variants=nrow - 1, **edits)
    elif base is not None:
        images = api.sample(model, n, latents=base.to(model.device))
    elif interpolate or save_latents is not None:
        images, latents = api.sample_udpm_latents(model, n, seed=seed, interpolate=interpolate, nrow=nrow)
        if save_latents is not None:
            api.save_latents(latents, save_latents)
            _say(f"latents: {save_latents}")
    elif streamed:
        _say(f"{n} images → {api.sample_to_npy(model, n, out, seed=seed, progress=True, **options)}")
        return
    else:
        images = api.sample(model, n, seed=seed, progress=True, **options)
    if out.suffix == ".npy":
        _say(f"{images.shape[0]} images → {api.save_raw_images(images, out)}")
        return
    _save_grid(images, out, nrow=nrow, zoom=zoom)
    _say(f"{images.shape[0]} images → {out}")


def _sample_on_ray(source: Path, n: int, seed: int, out: Path, address: str | None, shard: int, actors: int | None,
                   png: bool, backend: str | None, device: str, options: dict[str, Any]) -> None:  # fmt: skip
    from fastgen.serve.shards import sample_shards

    report = sample_shards(source, n, out, seed=seed, shard_size=shard, png=png, address=address, actors=actors,
                           backend=backend, device=device, **options)  # fmt: skip
    done = f"{report.written} shard(s) written ({report.images} images, {report.images_per_second:.1f} img/s on {len(report.nodes)} node(s))"
    _say(f"{done}, {report.skipped} already there → {report.folder}")


def _save_grid(images: Any, out: Path, *, nrow: int, zoom: int) -> None:
    """A PNG grid of images in [-1, 1], each enlarged ``zoom`` times (0: enough for ≥ 64 px)."""
    from torch.nn.functional import interpolate as resize

    from fastgen.data import save_image_grid

    zoom = zoom or max(1, -(-64 // images.shape[-1]))
    save_image_grid(resize(images.float().cpu(), scale_factor=zoom, mode="nearest"), out, nrow=nrow)


@app.command("eval")
def eval_(
    source: Path = SOURCE_ARGUMENT,
    n: int = typer.Option(1000, "--n", help="Number of images to generate and score."),
    batch: int = typer.Option(250, "--batch", help="Images generated per chunk (memory stays constant in --n)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the samples (and of KID's subsets)."),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma-separated: fid, kid, pr (precision/recall), classifier. Default: all that apply to the dataset."),
    data: str | None = typer.Option(None, "--data", help="Dataset to compare with (digits, fashion-mnist …) when the source does not record its training data."),
    reference_size: int | None = typer.Option(None, "--ref-n", help="Real training-split images in the reference: a fixed random subset (default: the whole split, capped at fastgen.metrics.evaluation.REFERENCE_SIZE)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the result as JSON here (and as Markdown beside it, unless --md is given)."),
    md: Path | None = typer.Option(None, "--md", help="Write the result as a Markdown table here."),
    grid: Path | None = typer.Option(None, "--grid", help="Write a PNG grid of the first 64 scored samples here."),
    device: str = DEVICE_OPTION,
    weights: str = WEIGHTS_OPTION,
    backend: str | None = BACKEND_OPTION,
    sampler: str | None = SAMPLER_OPTION,
    steps: int | None = STEPS_OPTION,
    eta: float | None = ETA_OPTION,
    clip_x0: bool = CLIP_X0_OPTION,
    t_f: int | None = T_F_OPTION,
    t_s: int | None = T_S_OPTION,
    dt_s: float | None = DT_S_OPTION,
) -> None:
    """Measure sample quality: generate --n images (in chunks) from a checkpoint, run or bundle and compare them with
    the training split of the dataset the model was trained on. FID, KID (± std over subsets) and precision/recall
    (k=3) on standard TF-Inception pool3 features; for labelled datasets (digits, fashion-mnist) a domain classifier
    (trained once on the training split, cached in $FASTGEN_CACHE or ~/.cache/fastgen) gives its feature Fréchet
    distance, class coverage, class entropy and the share of confidently classified samples. The real test split,
    scored the same way, is the floor. Reference features are computed once and cached."""
    from fastgen import api
    from fastgen.outputs import EVAL_MARKDOWN, JSON, MARKDOWN, PNG, check_output
    from fastgen.runtime import load_for_sampling

    implied = md is None and json_path is not None  # the Markdown beside --json: it may only replace an earlier one of eval's
    md = json_path.with_suffix(".md") if implied else md
    for path, kind in ((json_path, JSON), (md, EVAL_MARKDOWN if implied else MARKDOWN), (grid, PNG)):  # before any work: a bad path must not cost it
        if path is not None:
            check_output(path, kind, inputs=[source])
    model = load_for_sampling(source, backend=backend, device=api.resolve_device(device), weights=weights)
    result = api.evaluate(model, n, batch=batch, seed=seed, metrics=metrics, data=data, reference_size=reference_size,
                          progress=True, **sampler_options(sampler, steps, eta, clip_x0, t_f, t_s, dt_s))  # fmt: skip
    table = Table(title=result.title())
    for column in ("score (↓ lower / ↑ higher is better)", "model", f"real test split ({result.floor_n} images)"):
        table.add_column(column)
    for row in result.rows():
        table.add_row(*row)
    console.print(table)
    for note in [f"sampling: {result.sampling_seconds:.1f} s for {result.n} images", *result.notes]:
        _say(f"  {note}")
    if json_path is not None:
        _say(f"JSON: {result.write_json(json_path)}")
    if md is not None:
        _say(f"Markdown: {result.write_markdown(md)}")
    if grid is not None and result.samples is not None:
        _save_grid(result.samples, grid, nrow=8, zoom=0)
        _say(f"grid: {grid}")


@app.command()
def upscale(
    checkpoint: Path = typer.Argument(..., help="A PDDPM checkpoint directory, or a run directory (its latest checkpoint).", exists=True),
    inputs: list[Path] = typer.Argument(..., help="Low-resolution PNG/JPEG files or folders (every image under them), grey or RGB as the model."),
    scale: int = typer.Option(..., "--scale", help="Upscaling factor, 2 or 4: inputs must be (model resolution)/scale pixels square."),
    out: Path = typer.Option(..., "--out", help="A .png file (one input) or a folder that gets <input name>.png per input."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the re-noising and reverse steps: same seed, same images."),
    t_s: int | None = typer.Option(None, "--t-s", help="Steps of the scaled schedule per level (default: the recipe's, else 100)."),
    dt_s: float | None = typer.Option(None, "--dt-s", help="CCDF restart point as a fraction of T (0 < dt_s ≤ 1; default: the recipe's, else 0.3)."),
    guidance: float | None = typer.Option(None, "--guidance", help="λ of the data-consistency gradient (PDDPM eq. 10), ≥ 0; 0 turns it off (default: fastgen.diffusion.pddpm.DEFAULT_GUIDANCE). λ ≈ f²/2 pulls a level f× the input's size fully onto it; ×4 passes a ×2 level first, so well above 2 diverges."),
    device: str = DEVICE_OPTION,
    weights: str = WEIGHTS_OPTION,
) -> None:
    """Super-resolve images with a trained PDDPM (paper Alg. 2): each input is upsampled ×2 per pyramid level,
    re-noised to dt_s·T (CCDF) and reversed, every step pulled towards agreeing with the input when downsampled."""
    if scale not in (2, 4):
        raise FastgenError(f"--scale must be 2 or 4, got {scale}")
    from fastgen import api

    model = api.load_model(checkpoint, device=api.resolve_device(device), weights=weights)
    options = {name: value for name, value in dict(t_s=t_s, dt_s=dt_s, guidance=guidance).items() if value is not None}
    written = api.upscale_files(model, inputs, out, scale, seed=seed, progress=True, **options)
    _say(f"{len(written)} image(s) ×{scale} → {out}")


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint directory, or a run directory (its latest checkpoint).", exists=True),
    out: Path = typer.Option(..., "--out", help="Bundle directory to create (manifest.json + one ONNX graph per call site)."),
    trt: bool = typer.Option(False, "--trt", help="Also build one TensorRT engine per graph (tensorrt or tensorrt_rtx, whichever imports)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or bf16: the graphs' own precision (strongly typed)."),
    batch: str = typer.Option("1,8,32", "--batch", help="Engine batch profile MIN,OPT,MAX (or MIN:OPT:MAX), or one size N."),
    check: bool = typer.Option(False, "--check", help="Compare every graph with Polygraphy (onnxruntime, and TensorRT where it runs)."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default 17; 22 for bf16)."),
    flavour: str | None = typer.Option(None, "--flavour", help="TensorRT flavour: auto (default), tensorrt or tensorrt_rtx (with --trt)."),
    opt_level: int | None = typer.Option(None, "--opt-level", min=0, max=5, help="TensorRT builder optimisation level 0-5 (default 3; with --trt)."),
    timing_cache: Path | None = typer.Option(None, "--timing-cache", help="TensorRT timing cache file, reused across builds (with --trt)."),
    compute_capability: list[str] = typer.Option([], "--compute-capability", help="TensorRT-RTX target, e.g. 8.9 (repeatable; with --trt)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle directory."),
    weights: str = typer.Option("ema", "--weights", help="ema (default) or model."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Fold constants and static shapes with onnxslim (default on)."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: static QDQ graphs for ONNX Runtime, calibrated on the model's own sampling inputs."),
    calibrate: int | None = typer.Option(None, "--calibrate", help="Seeds the int8 calibration samples (default 16; with --quantize)."),
) -> None:
    """Export a checkpoint to a deployable bundle: ONNX graphs (checked against torch through ONNX Runtime),
    manifest.json with every schedule constant and SHA-256 hashes, and optionally TensorRT engines."""
    from fastgen.export import export_command

    export_command(checkpoint, out, precision=precision, batch=batch.replace(":", ","), opset=opset, trt=trt, flavour=flavour,
                   opt_level=opt_level, timing_cache=timing_cache, compute_capability=compute_capability, check=check,
                   force=force, weights=weights, simplify=simplify, quantize=quantize, calibrate=calibrate,
                   console=console)  # fmt: skip


@app.command()
def serve(
    source: Path = SOURCE_ARGUMENT,
    replicas: int = typer.Option(1, "--replicas", min=1, help="Model replicas (Ray Serve spreads requests over them; one GPU each where the cluster has GPUs)."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Most images one batch packs (and one request may ask for)."),
    batch_wait_ms: float = typer.Option(10.0, "--batch-wait-ms", min=0, help="How long a replica waits for more requests to fill a batch."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the HTTP server listens on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of the HTTP server."),
    address: str | None = ADDRESS_OPTION,
    cpus: float = typer.Option(1.0, "--cpus-per-replica", min=0, help="CPUs Ray reserves per replica (and torch threads, rounded down)."),
    backend: str | None = BACKEND_OPTION,
    device: str = DEVICE_OPTION,
) -> None:
    """Serve a model over HTTP on Ray Serve until Ctrl-C: POST /generate {"n": 4, "seed": 7, "format": "png"|"npy",
    "options": {...}} returns the images `fastgen sample --seed 7` gives (a zip of PNGs or one float32 .npy),
    whatever else they were batched with; GET /health; GET /info (family, shape, precision, sampler options, batch
    sizes reached). Concurrent requests are packed into batches of up to --max-batch images per replica. Bad
    requests get a 4xx with a one-line JSON error. Needs Ray: pip install 'fastgen\\[serve]'."""
    from fastgen.serve.cluster import require_ray

    require_ray()
    from fastgen.serve.deployment import ServeSettings, serve_until_stopped

    def ready(server: Any) -> None:
        _say(f"serving {source} at {server.url} ({replicas} replica(s), batches of ≤ {max_batch}); Ctrl-C stops")
        _say(f"  curl -X POST {server.url}/generate -d '{{\"n\": 4, \"seed\": 0, \"format\": \"png\"}}' -o images.zip")

    settings = ServeSettings(str(source), replicas=replicas, max_batch=max_batch, batch_wait_ms=batch_wait_ms, backend=backend,
                             device=device, cpus_per_replica=cpus)  # fmt: skip
    serve_until_stopped(settings, on_ready=ready, host=host, port=port, address=address)


def _pair(text: str, form: str, tail_type: type = str) -> tuple[str, Any]:
    """``"A:B"`` → ("A", tail_type("B")), split at the last colon (paths may hold colons); for FILE:LEVEL options."""
    head, colon, tail = text.rpartition(":")
    try:
        if head and colon:
            return head, tail_type(tail)
    except ValueError:
        pass
    raise FastgenError(f"expected {form}, got {text!r}")


def _csv(option: str, text: str | None, cast: type = str) -> list | None:
    """``"1,64,256"`` → [1, 64, 256]; None stays None (the bench's per-device default). An empty or repeated item is an
    error: ``1,,2`` is a typo, and ``udpm,udpm`` would bench the same thing twice."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise FastgenError(f"{option} {text!r} has an empty item; give a comma-separated list like {option} a,b")
    try:
        values = [cast(part) for part in parts]
    except ValueError:
        raise FastgenError(f"{option} expects a comma-separated list of {cast.__name__} values, got {text!r}") from None
    repeated = sorted({str(value) for value in values if values.count(value) > 1})
    if repeated:
        raise FastgenError(f"{option} lists {', '.join(repeated)} more than once; give each item once")
    return values


@app.command()
def bench(
    res: int | None = typer.Option(None, "--res", help="Image resolution (default 64)."),
    batch: str | None = typer.Option(None, "--batch", help="Batch sizes, e.g. 1,64,256 (default: 1,8 on CPU; 1,64,256 on GPU)."),
    backend: str | None = typer.Option(None, "--backend", help="Any of torch, graph (whole sample in one CUDA graph), onnxruntime, tensorrt (networks exported to ONNX / engines), e.g. torch,onnxruntime."),
    families: str | None = typer.Option(None, "--families", help="Any of udpm,ddpm,pddpm,blur (default: all)."),
    preset: str | None = typer.Option(None, "--preset", help="tiny (CPU default) or paper (the papers' 64×64 networks, random weights)."),
    precision: str | None = typer.Option(None, "--precision", help="fp32 (default), bf16 or fp16 (network weights; the diffusion state stays fp32). A bundle's own by default."),
    repeats: int | None = typer.Option(None, "--repeats", help="Timed repeats per row (median reported)."),
    warmup: int | None = typer.Option(None, "--warmup", help="Untimed warm-up runs per row."),
    max_calls: int | None = typer.Option(None, "--max-calls", help="Longer samplers are timed over this many calls and scaled (the row says so)."),
    ddim_steps: int = typer.Option(50, "--ddim-steps", min=0, help="DDIM steps of the DDPM DDIM row (0: no DDIM row)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks."),
    kernels: str = typer.Option("auto", "--kernels", help="Graph backend steps: auto, fused (CUDA kernels) or reference (torch)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last", help="Memory format of the networks (GPU default on)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Bench this trained model instead of presets, or an exported bundle (its ONNX graphs / TensorRT engines)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch (timings on a shared CPU are steadier with 1)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the rows as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG plot (images/s vs batch, GFLOPs per image) here."),
    profile: Path | None = typer.Option(None, "--profile", help="Also write a torch.profiler op table of one eager sample per row into this folder."),
    bandwidth: bool = typer.Option(False, "--bandwidth", help="Instead: the fused step kernels' GB/s against a device-to-device copy (GPU)."),
) -> None:
    """Benchmark every family's sampler: GFLOPs per image (FlopCounterMode, 2 per MAC), median latency and
    images/s (CUDA events after warm-up on GPU, wall clock on CPU), printed as a table, optionally JSON + PNG.

    With --bandwidth: the memory-bound fused step kernels on 4096 float32 images of --res (default 64), each as
    GB/s (fewest bytes over median time) and as a fraction of a 1 GiB copy_ measured in the same run."""
    import torch

    from fastgen.bench import run_bench

    if threads is not None:
        torch.set_num_threads(threads)
    if bandwidth:
        from fastgen.bench import kernel_bandwidth, print_bandwidth, write_json
        from fastgen.outputs import JSON, check_output

        if json_path is not None:
            check_output(json_path, JSON)
        rows = kernel_bandwidth(res=res or 64, device="cuda" if device == "auto" else device)
        print_bandwidth(rows, console)
        if json_path is not None:
            _say(f"JSON: {write_json(rows, json_path)}")
        return
    run_bench(res, _csv("--batch", batch, int), _csv("--backend", backend), _csv("--families", families), preset, precision, repeats, warmup, json_path, plot,
              device=device, max_calls=max_calls, ddim_steps=ddim_steps or None, channels_last=channels_last,
              compile=compile_, kernels=kernels, checkpoint=checkpoint, profile_dir=profile, console=console)  # fmt: skip


_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_python_showwarning = warnings.showwarning


def _say(text: str) -> None:
    """A line of fastgen's own output, printed verbatim: paths and messages may hold [brackets] that are not markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _report(label: str, style: str, message: str) -> None:
    """One line on stderr, ``label: message``; the message verbatim (never read as rich markup), line breaks escaped."""
    error_console.print(Text.assemble((f"{label}:", style), " ", one_line(str(message))), highlight=False, soft_wrap=True)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:  # fmt: skip
    """fastgen's own warnings as one line on stderr, like its errors; other libraries' as Python prints them."""
    if str(Path(filename).resolve()).startswith(_PACKAGE_DIR):
        _report("warning", "yellow", str(message))
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(args: list[str] | None = None) -> None:
    """Console entry point: bad input becomes one line on stderr (exit 2), never a traceback. ``args``: the
    command line without the program name (default ``sys.argv[1:]``)."""
    warnings.showwarning = _show_warning
    try:
        code = app(args=args, prog_name="fastgen", standalone_mode=False)
    except FastgenError as exc:
        _report("error", "bold red", str(exc))
        sys.exit(2)
    except _USAGE_ERROR as exc:  # a bad option value, a missing argument, an unknown verb
        where = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
        _report("error", "bold red", " ".join(exc.format_message().split()) + where)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _report("error", "bold red", "interrupted")
        sys.exit(130)
    if isinstance(code, int) and code:  # e.g. 130 after Ctrl-C inside a verb
        sys.exit(code)
