"""The Python API behind the CLI verbs: ``train`` a recipe, ``load_model`` a checkpoint, ``sample`` images,
``evaluate`` their quality.

Each function is what one ``fastgen`` verb calls, so everything the CLI does a script can do too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.families import build_family
from fastgen.families.base import check_keys
from fastgen.memory import check_fits, largest_activation, sampler_bytes
# Loading lives below the runtime, export and bench layers; the API offers it as its own (explicit re-exports).
from fastgen.models import LoadedModel as LoadedModel
from fastgen.models import load_model as load_model
from fastgen.models import model_config_from_recipe as model_config_from_recipe
from fastgen.models import parse_device as parse_device
from fastgen.models import resolve_device as resolve_device
from fastgen.outputs import NPY, PNG, RUN, TORCH_FILE, check_output, write_file
from fastgen.sampling.noise import Row, check_rows, check_seed
from fastgen.schema import all_finite, count
from fastgen.training import load_recipe
from fastgen.training import train as run_training

if TYPE_CHECKING:  # imported on use: the metrics pull in datasets and feature extractors
    from fastgen.metrics.evaluation import EvalResult

# The recipe sections a training run reads: [run] and [optim] (the engine), the rest (the model family, the data).
RECIPE_SECTIONS = {"run", "optim", "model", "diffusion", "loss", "data"}


def train(recipe: str | Path, overrides: Sequence[str] = (), *, resume: bool = False, run_dir: str | Path | None = None,
          allow_new_data: bool = False) -> Path:  # fmt: skip
    """Train what ``recipe`` (TOML) describes, with ``--set``-style ``overrides``; returns the final checkpoint dir.
    A resume refuses data whose fingerprint (source, size, content hash) differs from the run's unless ``allow_new_data``."""
    if allow_new_data and not resume:
        raise FastgenError("--allow-new-data only applies to --resume")
    from fastgen.data import BatchIterator, load_dataset

    parsed = load_recipe(recipe, overrides)
    sections = parsed.sections
    check_keys("recipe [table]", sections, RECIPE_SECTIONS)
    check_output(parsed.run.directory if run_dir is None else run_dir, RUN, inputs=[recipe])
    config = model_config_from_recipe(sections)
    family = build_family(config)
    data = dict(sections.get("data", {}))
    if "name" not in data:
        raise FastgenError("recipe [data] needs name (fashion-mnist, digits, folder or npz)")
    dataset = load_dataset(data.pop("name"), config.image.resolution, config.image.channels, **data)
    if len(dataset) < parsed.run.batch_size:
        raise FastgenError(f"dataset has {len(dataset)} images, fewer than run.batch_size = {parsed.run.batch_size}")
    # Seed before building so the initial weights are part of what the recipe's seed reproduces.
    torch.manual_seed(parsed.run.seed)
    networks = family.build_networks()
    objective = family.objective(networks, sections.get("loss", {}))
    batches = BatchIterator(dataset, parsed.run.batch_size, seed=parsed.run.seed, drop_last=True)
    return run_training(parsed, objective, batches, run_dir=run_dir, resume=resume, allow_new_data=allow_new_data)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator from a checked seed."""
    return torch.Generator().manual_seed(check_seed(seed))


def sample(model: LoadedModel | Any, n: int, *, seed: int = 0, progress: bool = False, first_image: int = 0,
           **options: Any) -> Tensor:  # fmt: skip
    """``n`` images [n, C, H, W] in [-1, 1] from ``model`` with its family's sampler ``options``; same seed, same images.

    ``model`` is a :class:`LoadedModel` or anything with its ``family``, ``sites`` and ``device`` (a runtime bundle).
    ``first_image``: the images from that index of the seed's sequence on (chunks of a larger sample are its images).
    """
    latents = options.get("latents")
    check_sample_count(model, latents.batch_size if hasattr(latents, "batch_size") else n)  # explicit latents: their batch is sampled
    check_seed(seed)
    with torch.no_grad():
        return model.family.sample(model.sites, n, seed=seed, device=model.device, progress=progress,
                                   first_image=first_image, **options)  # fmt: skip


def sample_rows(model: LoadedModel | Any, rows: Sequence[Row], *, progress: bool = False, **options: Any) -> Tensor:
    """One image per (seed, image index) row, in one batch: row r is image ``index`` of ``sample(model, ..., seed=seed)``
    bit for bit, whatever else shares the batch (what a server batching many requests needs)."""
    rows = check_rows(rows)
    check_sample_count(model, len(rows))
    with torch.no_grad():
        return model.family.sample_rows(model.sites, rows, device=model.device, progress=progress, **options)


SAMPLE_CHUNK = 256
"""Images sampled at once by :func:`sample_to_npy`: its memory is that of one chunk, whatever the count."""


def sample_to_npy(model: LoadedModel | Any, n: int, path: str | Path, *, seed: int = 0, chunk: int = SAMPLE_CHUNK,
                  progress: bool = False, **options: Any) -> Path:  # fmt: skip
    """The images :func:`sample` gives for ``n`` and ``seed``, sampled ``chunk`` at a time straight into a float32
    ``.npy`` file [n, C, H, W] (memory-mapped, written atomically): memory stays that of one chunk. The file must
    fit on its disk (checked first)."""
    import shutil

    import numpy as np

    from fastgen.progress import progress_bar

    count(chunk, "chunk")
    count(n, "the number of images")
    path = check_output(path, NPY)
    image = model.family.image
    shape = (n, image.channels, image.resolution, image.resolution)
    needed = 4 * n * image.channels * image.resolution**2
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise FastgenError(f"{n} images of {image.channels}×{image.resolution}×{image.resolution} need {needed / 2**30:.1f} GiB "
                           f"in {path}, and its disk has {free / 2**30:.1f} GiB free; ask for fewer images")  # fmt: skip
    check_sample_count(model, min(n, chunk))
    check_seed(seed)

    def write(staging: Path) -> None:
        array = np.lib.format.open_memmap(staging, mode="w+", dtype=np.float32, shape=shape)
        starts = range(0, n, chunk)
        for start in progress_bar(starts, desc="sampling", unit="chunk", disable=not progress or len(starts) == 1):
            count = min(chunk, n - start)
            array[start:start + count] = sample(model, count, seed=seed, first_image=start, **options).float().cpu().numpy()
        array.flush()
        del array

    return write_file(path, NPY, write)


def sampling_bytes(model: LoadedModel | Any, n: int) -> int:
    """Lower bound of the device memory sampling ``n`` images takes: the sampler's image-sized state, plus (torch
    networks) their largest activation, measured on one image."""
    image = model.family.image
    per_image = sampler_bytes(image.channels, image.resolution, 1)
    if isinstance(model, LoadedModel):
        sites = model.call_sites
        per_image += largest_activation([site.module for site in sites], [site.example_inputs(1, model.device) for site in sites])
    return n * per_image


def check_sample_count(model: LoadedModel | Any, n: int) -> None:
    """``n`` images are a positive number that fits in the memory of the model's device (lower-bound estimate)."""
    count(n, "the number of images")
    check_fits(sampling_bytes(model, n), model.device, f"sampling {n} images",
               "ask for fewer images (several runs with different seeds give more)")  # fmt: skip


def _latent_family(model: Any) -> Any:
    """The model's family if it samples from explicit latents (it declares the ``latents`` sampler option)."""
    if "latents" not in model.family.sampler_options:
        raise FastgenError(f"latents (interpolation, saving, replaying, editing) are UDPM features; this model is {model.family.name!r}")
    return model.family


def sample_udpm_latents(model: LoadedModel | Any, n: int, *, seed: int = 0, interpolate: bool = False,
                        nrow: int = 8) -> tuple[Tensor, Any]:  # fmt: skip
    """UDPM images with the latents that made them: :func:`sample`'s ``n`` images of ``seed``. ``interpolate``: an
    nrow×nrow grid between the latents of that seed's first four images (udpm.md Fig. 5) instead."""
    from fastgen.diffusion import udpm

    family = _latent_family(model)
    check_sample_count(model, nrow * nrow if interpolate else n)
    check_seed(seed)
    if interpolate:
        corners = family.draw_latents(4, seed)
        weights = torch.linspace(1, 0, nrow).tolist()
        latents = udpm.interpolation_grid([corners.select(index) for index in range(4)], weights, weights)
    else:
        latents = family.draw_latents(n, seed)
    return sample(model, latents.batch_size, latents=latents.to(model.device)), latents


def save_latents(latents: Any, path: str | Path) -> Path:
    """Write UDPM latents (x_L, the per-level noises and, circulant kernel, observation noises; CPU tensors) to a
    ``.pt`` file, atomically."""
    data = {"x_top": latents.x_top.cpu(), "noises": [noise.cpu() for noise in latents.noises]}
    if latents.obs_noises is not None:
        data["obs_noises"] = [noise.cpu() for noise in latents.obs_noises]
    return write_file(path, TORCH_FILE, lambda staging: torch.save(data, staging))


def save_raw_images(images: Tensor, path: str | Path) -> Path:
    """Write ``images`` [N, C, H, W] as a float32 NumPy ``.npy`` file: the raw values, unquantised (the C++ kit's
    ``fastgen-cpp-sample --npy`` writes the same layout)."""
    import numpy as np

    pixels = images.detach().float().cpu().numpy()

    def write(staging: Path) -> None:
        with open(staging, "wb") as file:  # a file object: given a name, np.save would append .npy to it
            np.save(file, pixels, allow_pickle=False)

    return write_file(path, NPY, write)


def load_latents(path: str | Path) -> Any:
    """Read latents written by :func:`save_latents` (to replay, perturb or swap them)."""
    from fastgen.diffusion import udpm

    try:
        data = torch.load(path, weights_only=True)
        obs_noises = tuple(data["obs_noises"]) if "obs_noises" in data else None
        latents = udpm.UDPMLatents(data["x_top"], tuple(data["noises"]), obs_noises)
    except OSError as exc:
        raise FastgenError(f"cannot read latents file {path} ({exc.strerror or exc})") from None
    # torch.load's restricted unpickler raises many kinds of error on a file that is not its own (and its messages
    # suggest weights_only=False, which a file of tensors never needs).
    except Exception as exc:  # noqa: BLE001
        raise FastgenError(f"{path} is not a fastgen UDPM latents file ({type(exc).__name__}); write one with --save-latents") from None
    if not all(isinstance(tensor, Tensor) for tensor in latents.maps()):
        raise FastgenError(f"{path} is not a fastgen UDPM latents file (it holds no tensors); write one with --save-latents")
    for index, tensor in enumerate(latents.maps()):
        name = f"latents file {path}: map {index}"
        if not tensor.is_floating_point():
            raise FastgenError(f"{name} is {tensor.dtype}, not floating point; write the file with --save-latents")
        # A crafted file can give a tiny storage a huge shape (stride 0): its size is what the file holds, not what it claims.
        repeated = any(stride == 0 and size > 1 for stride, size in zip(tensor.stride(), tensor.shape))
        if repeated or tensor.untyped_storage().nbytes() < tensor.numel() * tensor.element_size():
            raise FastgenError(f"{name} claims shape {list(tensor.shape)} but the file holds {tensor.untyped_storage().nbytes()} "
                               "bytes of it (overlapping strides); write the file with --save-latents")  # fmt: skip
        all_finite(tensor, name, "latents are normals: write the file with --save-latents")
    return latents


def upscale(model: LoadedModel, images: Tensor, scale: int, *, seed: int = 0, progress: bool = False,
            **options: Any) -> Tensor:  # fmt: skip
    """Super-resolve ``images`` [N, C, r, r] in [-1, 1] by ``scale`` to the model's resolution (PDDPM Alg. 2: the
    upsampled image re-noised and reversed per pyramid level, with the data-consistency gradient). ``options``:
    the family's (PDDPM: ``guidance`` = λ, ``t_s``, ``dt_s``, ``eta``, ``clip_x0``). Same seed, same images."""
    size = _upscale_input_size(model, scale)
    if images.dim() != 4 or tuple(images.shape[-2:]) != (size, size):
        raise FastgenError(f"×{scale} upscaling with this model needs {size}x{size} inputs, got shape {tuple(images.shape)}")
    all_finite(images, "the low-resolution images")
    generator = seeded_generator(seed)
    upscaled = model.family.super_resolve(model.sites, images.to(model.device), generator=generator, progress=progress,
                                          **options)  # fmt: skip
    all_finite(upscaled, "upscaling diverged: the result", "lower the guidance (--guidance)")
    return upscaled


def _upscale_input_size(model: LoadedModel, scale: int) -> int:
    """The input side ×``scale`` upscaling needs; a clear error for a family that cannot super-resolve."""
    if not hasattr(model.family, "super_resolve"):
        raise FastgenError(f"upscaling needs a model whose family super-resolves (pddpm); this model is {model.family.name!r}")
    resolution = model.config.image.resolution
    if not isinstance(scale, int) or scale < 2 or resolution % scale:
        raise FastgenError(f"scale must be an integer ≥ 2 that divides the model's resolution {resolution}, got {scale!r}")
    return resolution // scale


def upscale_files(model: LoadedModel, inputs: Sequence[str | Path], out: str | Path, scale: int, *, seed: int = 0,
                  progress: bool = False, **options: Any) -> list[Path]:  # fmt: skip
    """:func:`upscale` PNG/JPEG files (a folder: every image under it) as one batch. ``out`` ending in ``.png`` is the
    file for a single input; otherwise a folder that gets ``<input name>.png`` per input. Returns the files written."""
    from fastgen.data import save_image_grid
    from fastgen.data.images import read_image_files
    from fastgen.families.base import CHANNEL_KINDS

    size = _upscale_input_size(model, scale)
    files, images = read_image_files(inputs)
    out = Path(out)
    if out.suffix.lower() == ".png":
        if len(files) != 1:
            raise FastgenError(f"--out {out} names one PNG file but there are {len(files)} inputs; give a folder")
        targets = [out]
    else:
        targets = [out / f"{file.stem}.png" for file in files]
        if len(set(targets)) != len(targets):
            raise FastgenError(f"two inputs share a file name, so their outputs in {out} would collide; rename one")
    for target in targets:  # before the work: no output may replace an input, a run's files or another kind of file
        check_output(target, PNG, inputs=files)
    channels = model.config.image.channels
    for file, image in zip(files, images, strict=True):
        if image.shape[0] != channels:
            raise FastgenError(f"{file} is {CHANNEL_KINDS[image.shape[0]]} but the model makes {CHANNEL_KINDS[channels]} "
                               "images; convert it first")  # fmt: skip
        if image.shape[1:] != (size, size):
            raise FastgenError(f"{file} is {image.shape[2]}x{image.shape[1]} pixels; ×{scale} upscaling with this "
                               f"{size * scale}x{size * scale} model needs {size}x{size}")  # fmt: skip
    upscaled = upscale(model, torch.stack(images), scale, seed=seed, progress=progress, **options)
    return [save_image_grid(image[None], target, nrow=1, padding=0) for image, target in zip(upscaled, targets, strict=True)]


def latent_level(model: LoadedModel | Any, level: int | str) -> int:
    """A UDPM latent map by level: 1 … L name the noise e_l of the step x_l → x_{l-1}, ``"top"`` the white noise
    that makes x_L (returned as L + 1, the index :meth:`fastgen.diffusion.udpm.UDPMLatents.latent_maps` takes)."""
    levels = _latent_family(model).schedule.levels
    if level == "top":
        return levels + 1
    try:
        number = int(level)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= levels:
        raise FastgenError(f"latent level must be 1 … {levels} (the noise of that step) or top (the noise of x_{levels}), got {level!r}")
    return number


def edit_udpm_latents(model: LoadedModel | Any, latents: Any = None, *, n: int = 1, seed: int = 0,
                      perturb: Sequence[tuple[int | str, float]] = (), swap: Sequence[tuple[Any, int | str]] = (),
                      variants: int = 7) -> tuple[Tensor, int]:  # fmt: skip
    """UDPM latent editing (udpm.md Figs. 6 and 10): images laid out in rows that show each edit, and the row width.

    ``latents`` (e.g. :func:`load_latents`), or ``n`` drawn from ``seed``. Per image and per edit, one row:
    ``perturb`` (level, strength): the original, then ``variants`` images whose map at that level is
    √(1-s²)·map + s·fresh noise (the fresh noise from ``seed``); ``swap`` (other latents of the same batch size,
    level): [this image, it with the other's map at that level, the other with this one's, the other image].
    Levels as in :func:`latent_level`; editing level l leaves x_L … x_l unchanged and changes x_{l-1} … x_0.
    """
    from fastgen.diffusion import udpm

    family = _latent_family(model)
    if bool(perturb) == bool(swap):
        raise FastgenError("give perturbations or swaps (one kind per grid, so that its rows have one width)")
    if perturb and (not isinstance(variants, int) or variants < 1):
        raise FastgenError(f"perturbation needs ≥ 1 variant per row, got {variants!r}")
    perturb = [(latent_level(model, level), strength) for level, strength in perturb]
    swap = [(other, latent_level(model, level)) for other, level in swap]
    generator = seeded_generator(seed)
    base = latents if latents is not None else family.draw_latents(n, seed)
    for other, _ in swap:
        if other.batch_size != base.batch_size:
            raise FastgenError(f"swap latents hold {other.batch_size} images, the edited ones {base.batch_size}; they must match")
    rows = []
    for index in range(base.batch_size):
        image = base.select(index)
        for level, strength in perturb:
            repeated = udpm.concat_latents([image] * variants)
            rows += [image, udpm.perturb_noise(repeated, level, strength, generator)]
        for other, level in swap:
            partner = other.select(index)
            rows += [image, *udpm.swap_noise(image, partner, level), partner]
    edited = udpm.concat_latents(rows)
    return sample(model, edited.batch_size, latents=edited.to(model.device)), 1 + variants if perturb else 4


def evaluate(model: LoadedModel | Any, n: int = 1000, *, batch: int = 250, seed: int = 0, metrics: str | Sequence[str] | None = None,
             data: str | Mapping[str, Any] | None = None, reference_size: int | None = None, preview: int = 64,
             progress: bool = False, **options: Any) -> EvalResult:  # fmt: skip
    """Sample ``n`` images from ``model`` in chunks of ``batch`` (sampler ``options`` as in :func:`sample`) and score them
    against the dataset it was trained on; returns a :class:`fastgen.metrics.evaluation.EvalResult`.

    ``model``: a :class:`LoadedModel` or a runtime bundle. ``data``: the dataset to compare with (a name, or a recipe
    ``[data]`` table) when the model does not record one. ``metrics``: any of fid, kid, pr, classifier (default: all
    that apply). The reference is the dataset's training split (≤ ``reference_size`` images, default
    :data:`~fastgen.metrics.evaluation.REFERENCE_SIZE`), the floor its test split scored like the samples.
    """
    import time

    import numpy as np

    from fastgen.data import has_splits, load_dataset
    from fastgen.metrics.evaluation import MIN_IMAGES, REFERENCE_SIZE, EvalResult, MetricSuite, feature_bytes, parse_metrics
    from fastgen.progress import progress_bar

    # Every argument before any work (reference features take minutes): counts, metric names, sampler option values.
    count(n, "the number of images to evaluate (--n)", low=2)
    count(batch, "the batch (--batch)")
    if reference_size is not None:
        count(reference_size, "the reference size (--ref-n)", unit=" (leave it out for the default)")
    requested = parse_metrics(metrics, labelled=True)  # names only; whether the data has labels is checked below
    least = max(MIN_IMAGES[name] for name in requested)
    if n < least:
        raise FastgenError(f"{', '.join(name for name in requested if MIN_IMAGES[name] == least)} needs n ≥ {least} images, "
                           f"got n={n}; ask for more")  # fmt: skip
    check_fits(feature_bytes(requested, n), torch.device("cpu"), f"the features of {n} samples",
               "evaluate fewer images (--n)")  # fmt: skip
    check_sample_count(model, min(n, batch))
    model.family.sampling_program(**options)  # builds and so checks every sampler option value
    spec = dict({"name": data} if isinstance(data, str) else (data if data is not None else model.data))
    name = spec.pop("name", None)
    if not name:
        raise FastgenError("this model does not record the dataset it was trained on (a bundle from an older fastgen); "
                           "name it with --data (e.g. --data digits)")  # fmt: skip
    image = model.family.image
    fit = spec.pop("fit", "resize")
    if has_splits(name):
        spec.pop("split", None)
        reference = load_dataset(name, image.resolution, image.channels, fit, split="train", **spec)
        held_out = load_dataset(name, image.resolution, image.channels, fit, split="test", **spec)
    else:
        reference, held_out = load_dataset(name, image.resolution, image.channels, fit, **spec), None
    chosen = parse_metrics(metrics, labelled=reference.labels is not None and held_out is not None)
    reference_size = REFERENCE_SIZE if reference_size is None else reference_size
    suite = MetricSuite(reference, held_out, chosen, reference_size=reference_size, device=model.device, progress=progress)
    parts: list[dict[str, Any]] = []
    kept: list[Tensor] = []
    sampling_seconds = 0.0
    with progress_bar(total=n, desc="sampling + features", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch):
            began = time.perf_counter()
            images = sample(model, min(batch, n - start), seed=seed, first_image=start, **options)
            if images.is_cuda:  # GPU work is asynchronous: time it to the end
                torch.cuda.synchronize(images.device)
            sampling_seconds += time.perf_counter() - began
            parts.append(suite.features_of(images))
            if sum(map(len, kept)) < preview:
                kept.append(images[: preview - sum(map(len, kept))].float().cpu())
            bar.update(len(images))
    features = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    floor, floor_n = suite.floor(n, seed)
    source = str(getattr(model, "directory", None) or model.checkpoint)
    return EvalResult(
        source=source, family=model.family.name, backend=getattr(model, "backend", "torch"), sampler=dict(options), n=n,
        seed=seed, dataset=f"{reference.info.source} ({len(suite.reference_images)} images at {image.resolution}×{image.resolution})",
        reference_size=len(suite.reference_images), metrics=chosen, scores=suite.scores(features, seed), floor=floor,
        floor_n=floor_n, classifier_accuracy=suite.classifier.accuracy if suite.classifier is not None else None,
        sampling_seconds=sampling_seconds, samples=torch.cat(kept) if kept else None,
    )  # fmt: skip
