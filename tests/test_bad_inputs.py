"""Bad input, table-driven: every verb and the Python API answer it with one clear line (CLI: ``error: …`` on stderr,
exit ≠ 0; API: a FastgenError), and every file stays as it was (directory snapshots before and after).

One tiny trained UDPM run, one DDPM run and a bundle are made once per session; cases that damage a run or a bundle
work on copies. The CLI runs in-process through ``fastgen.cli.main`` (the console entry point itself).
"""

from __future__ import annotations

import json
import shlex
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fastgen import api
from fastgen.cli import main
from fastgen.errors import FastgenError
from fastgen.export import export_bundle
from fastgen.integrity import sha256_file

ROOT = Path(__file__).resolve().parents[1]
TINY = {name: ROOT / "train" / f"{name}_tiny.toml" for name in ("udpm", "ddpm")}
STEP = "step_000002"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Everything the cases point at: two trained runs, a bundle, a folder of notes, a plain file, a PNG."""
    base = tmp_path_factory.mktemp("world")
    for family in ("udpm", "ddpm"):
        api.train(TINY[family], ["run.steps=2", "run.checkpoint_every=2"], run_dir=base / family)
    export_bundle(base / "udpm", base / "bundle")
    (base / "notes").mkdir()
    (base / "notes" / "keep.txt").write_text("keep me\n")
    (base / "notes" / "text.png").write_text("not a picture\n")
    (base / "notes" / "grid.json").write_bytes(b"\x89PNG\r\n\x1a\n")
    (base / "file.txt").write_text("a plain file\n")
    (base / "recipe_latin1.toml").write_bytes("[run]\nname = \"caf\xe9\"\n".encode("latin-1"))
    return {"base": base, "run": base / "udpm", "ckpt": base / "udpm" / "checkpoints" / STEP, "ddpm": base / "ddpm",
            "bundle": base / "bundle", "notes": base / "notes", "file": base / "file.txt",
            "latin1": base / "recipe_latin1.toml", "recipe": TINY["udpm"]}  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path below ``folder``; files with their size and modification time: any write or deletion changes it.
    (Folders' own times are left out: the output guard probes a folder for writability with a file it removes.)"""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        state[str(path.relative_to(folder))] = ("dir",) if path.is_dir() and not path.is_symlink() else (info.st_size, info.st_mtime_ns)
    return state


def run_cli(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``fastgen ARGS`` in this process: (exit code, stderr)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own; restored after
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


def assert_one_clear_line(code: int, err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


# (case, arguments, fragment of the one error line). {name} stands for a path of ``world``; {out} for a fresh folder.
CLI_CASES = [
    # A verb never writes over or deletes its inputs, a run, a checkpoint or a bundle.
    ("export over its own run", "export {run} --out {run} --force", "own input"),
    ("export into the run's checkpoints", "export {run} --out {run}/checkpoints --force", "part of the run"),
    ("export over a checkpoint", "export {run} --out {ckpt} --force", "inside the run's checkpoints folder"),
    ("export over another run", "export {run} --out {ddpm} --force", "is a run directory, not a bundle"),
    ("export over a folder of notes", "export {run} --out {notes} --force", "not a bundle"),
    ("export over a file", "export {run} --out {file} --force", "is a file"),
    ("export over a bundle without --force", "export {run} --out {bundle}", "already exists"),
    ("sample over the EMA weights", "sample {run} --out {ckpt}/ema.safetensors --n 1", "inside the checkpoint"),
    ("sample over its own run", "sample {run} --out {run} --n 1", "own input"),
    ("sample over the run's recipe", "sample {run} --out {run}/recipe.json --n 1", "part of the run"),
    ("sample over the run's log", "sample {ddpm} --out {ddpm}/log.jsonl --n 1", "part of the run"),
    ("sample into a bundle", "sample {bundle} --out {bundle}/level_1.onnx --n 1", "inside the bundle"),
    ("sample over a text file", "sample {run} --out {notes}/keep.txt --n 1", "ending in .png"),
    ("sample over text named .png", "sample {run} --out {notes}/text.png --n 1", "is not a PNG image"),
    ("latents into a checkpoint", "sample {run} --save-latents {ckpt}/l.pt --n 1", "inside the checkpoint"),
    ("bench JSON over a checkpoint's config", "bench --json {ckpt}/config.json", "inside the checkpoint"),
    ("bench JSON over the run's recipe", "bench --json {run}/recipe.json", "part of the run"),
    ("bench plot over a text file", "bench --plot {notes}/keep.txt", "ending in .png"),
    ("bench JSON over a PNG named .json", "bench --json {notes}/grid.json", "is not a JSON file"),
    ("train into its own recipe", "train {recipe} --run-dir {recipe}", "own input"),
    ("train into a checkpoint", "train {recipe} --run-dir {ckpt}", "inside the run's checkpoints folder"),
    ("train into a bundle", "train {recipe} --run-dir {bundle}", "is a bundle"),
    ("train into a folder of notes", "train {recipe} --run-dir {notes}", "not a run directory"),
    # Output paths are checked before any work.
    ("sample --out a folder", "sample {run} --out {out}", "is a folder"),
    ("sample --out below a file", "sample {run} --out {file}/grid.png", "which is a file, not a folder"),
    ("sample --out unwritable", "sample {run} --out /proc/grid.png", "cannot write in /proc"),
    ("--save-latents a folder", "sample {run} --save-latents {out}", "is a folder"),
    ("bench --json a folder", "bench --json {out}", "is a folder"),
    ("bench --plot below a file", "bench --plot {file}/plot.png", "which is a file"),
    ("bench --profile a file", "bench --profile {file}", "is a file"),
    ("train --run-dir a file", "train {recipe} --run-dir {file}", "is a file"),
    # Non-finite hyper-parameters.
    ("infinite learning rate", "train {recipe} --run-dir {out}/r --set optim.lr=inf", "optim.lr = inf is not a finite"),
    ("NaN in a family table", "train {recipe} --run-dir {out}/r --set diffusion.alphas=[nan,1.0,1.0]", "not a finite"),
    # Options that do not apply, typos, duplicates.
    ("--steps without ddim", "sample {ddpm} --steps 5 --n 1", "only apply to the DDIM sampler"),
    ("--eta without ddim", "sample {ddpm} --eta 0.5 --n 1", "only apply to the DDIM sampler"),
    ("--steps for UDPM", "sample {run} --steps 5 --n 1", "no option steps"),
    ("typo'd recipe table", "train {recipe} --run-dir {out}/r --set dffusion.levels=3", "dffusion"),
    ("unknown network field", "train {recipe} --run-dir {out}/r --set model.network.widht=3", "unknown UNetConfig keys: widht"),
    ("network not a table", "train {recipe} --run-dir {out}/r --set model.network=5", "network must be a table"),
    ("network field of the wrong type", "train {recipe} --run-dir {out}/r --set model.network.dropout=\"high\"", "dropout"),
    ("non-UTF-8 recipe", "train {latin1} --run-dir {out}/r", "not UTF-8"),
    ("empty batch item", "bench --batch 1,,2", "empty item"),
    ("repeated family", "bench --families udpm,udpm", "more than once"),
    ("repeated batch", "bench --batch 2,2", "more than once"),
    ("export empty batch item", "export {run} --out {out}/b --batch 1,,2", "--batch takes"),
    ("TensorRT options without --trt", "export {run} --out {out}/b --opt-level 2", "only apply to TensorRT"),
    # Devices and numbers out of range.
    ("unknown device", "sample {run} --device tpu --n 1", "unknown device 'tpu'"),
    ("bench on an unknown device", "bench --device tpu", "unknown device 'tpu'"),
    ("no threads", "bench --threads 0", "--threads"),
    ("negative zoom", "sample {run} --zoom -1", "--zoom"),
    ("no images", "sample {run} --n 0", "--n"),
    ("seed beyond 64 bits", f"sample {{run}} --seed {2**70} --n 1", "seed must be an integer in [0, 2^64)"),
    ("negative seed", "sample {run} --seed -1 --n 1", "seed must be"),
    ("opset from the future", "export {run} --out {out}/b --opset 99", "opset from 17 to"),
    ("opset too old", "export {run} --out {out}/b --opset 9", "opset from 17 to"),
    ("opt level out of range", "export {run} --out {out}/b --trt --opt-level 9", "--opt-level"),
    ("unknown weights", "sample {run} --weights best --n 1", "weights must be 'ema' or 'model'"),
    ("unknown sampler", "sample {ddpm} --sampler euler --n 1", "unknown DDPM sampler 'euler'"),
    ("unknown precision", "export {run} --out {out}/b --precision fp8", "fp8"),
    ("unknown family", "bench --families udpn", "udpn"),
    ("unknown verb", "smaple {run}", "No such command 'smaple'"),
    ("missing checkpoint", "sample {out}/nothing", "does not exist"),
    ("run without checkpoints", "sample {notes} --n 1", "neither a checkpoint directory"),
    # Messages are printed verbatim, brackets included.
    ("bracketed text survives", "train {recipe} --run-dir {out}/r --set model.network.preset=\"[model]\"", "'[model]'"),
    # Requests too large for memory are refused up front with the estimate.
    ("a billion images", f"sample {{run}} --n {10**9}", "GiB"),
    ("a huge resolution", "bench --res 100000", "GiB"),
]


@pytest.mark.parametrize(("args", "fragment"), [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input_is_one_line_and_writes_nothing(world, tmp_path, capsys, monkeypatch, args: str, fragment: str) -> None:
    before, outside = snapshot(world["base"]), snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)  # default outputs (samples.png) would land here
    argv = [part.format(out=tmp_path, **world) for part in shlex.split(args)]
    code, err = run_cli([*argv, *(["--device", "cpu"] if argv[0] in ("sample", "bench") and "--device" not in argv else [])],
                        capsys, monkeypatch)  # fmt: skip
    assert_one_clear_line(code, err, fragment)
    assert snapshot(world["base"]) == before, "the bad input changed a run, a bundle or a file"
    assert snapshot(tmp_path) == outside, "the bad input wrote something"


# --- damaged copies: (case, damage(copy of the world's base folder), arguments, fragment) -----------------------------


def rehash(checkpoint: Path) -> None:
    """What a careful forger does: record the damaged files' hashes, so only the deeper checks can notice."""
    hashes = {path.name: sha256_file(path) for path in checkpoint.iterdir() if path.name != "sha256.json"}
    (checkpoint / "sha256.json").write_text(json.dumps(hashes))


def flip_a_bit(base: Path) -> None:
    ema = base / "udpm/checkpoints" / STEP / "ema.safetensors"
    data = bytearray(ema.read_bytes())
    data[-100] ^= 0x01
    ema.write_bytes(bytes(data))


def other_family_config(base: Path) -> None:
    config = base / "udpm/checkpoints" / STEP / "config.json"
    config.write_text(config.read_text().replace('"family": "udpm"', '"family": "ddpm"'))


def nan_weights(base: Path) -> None:
    checkpoint = base / "udpm/checkpoints" / STEP
    weights = load_file(checkpoint / "ema.safetensors")
    save_file({name: torch.full_like(value, float("nan")) for name, value in weights.items()}, checkpoint / "ema.safetensors")
    rehash(checkpoint)


def latest_elsewhere(base: Path) -> None:
    (base / "udpm/checkpoints/latest").write_text(f"../../ddpm/checkpoints/{STEP}\n")


def latest_through_a_link(base: Path) -> None:
    (base / "udpm/checkpoints/step_000009").symlink_to(base / "ddpm/checkpoints" / STEP)
    (base / "udpm/checkpoints/latest").write_text("step_000009\n")


def other_runs_optimizer(base: Path) -> None:
    checkpoint = base / "udpm/checkpoints" / STEP
    shutil.copy(base / "ddpm/checkpoints" / STEP / "optimizer.pt", checkpoint / "optimizer.pt")
    rehash(checkpoint)


def swapped_optimizer(base: Path) -> None:
    shutil.copy(base / "ddpm/checkpoints" / STEP / "optimizer.pt", base / "udpm/checkpoints" / STEP / "optimizer.pt")


def other_runs_rng(base: Path) -> None:
    checkpoint = base / "udpm/checkpoints" / STEP
    trainer = torch.load(checkpoint / "trainer.pt", weights_only=True)
    trainer["rng"] = [{"device": "cpu", "torch": torch.zeros(7, dtype=torch.uint8), "noise": torch.zeros(3, dtype=torch.uint8)}]
    torch.save(trainer, checkpoint / "trainer.pt")
    rehash(checkpoint)


def edit_manifest(change: Callable[[dict], None], files: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        path = base / "bundle/manifest.json"
        manifest = json.loads(path.read_text())
        if files is not None:
            files(base / "bundle")
        change(manifest)
        path.write_text(json.dumps(manifest))

    return damage


def link_out_of_the_bundle(base: Path) -> None:
    graph = base / "bundle/level_1.onnx"
    outside = base / "outside.onnx"
    shutil.move(graph, outside)
    graph.symlink_to(outside)


def swap_graph(manifest: dict) -> None:
    manifest["files"]["level_1.onnx"] = manifest["files"]["level_2.onnx"]


def external_data(base: Path) -> None:
    """level_1.onnx keeps its weights in an unlisted file beside it (its own hash updated)."""
    import onnx

    graph = base / "bundle/level_1.onnx"
    model = onnx.load(str(graph))
    onnx.save_model(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)  # fmt: skip
    path = base / "bundle/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["level_1.onnx"] = sha256_file(graph)
    path.write_text(json.dumps(manifest))


def remove_site(manifest: dict) -> None:
    manifest["sites"] = manifest["sites"][:2]


def set_input(key: str, value) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        manifest["sites"][0]["inputs"][0][key] = value

    return change


DAMAGE_CASES = [
    ("flipped bit in the EMA weights", flip_a_bit, "sample {run} --n 1", "does not match its SHA-256"),
    ("config.json of another family", other_family_config, "sample {run} --n 1", "config.json does not match its SHA-256"),
    ("NaN weights, sample", nan_weights, "sample {run} --n 1", "non-finite"),
    ("NaN weights, export", nan_weights, "export {run} --out {base}/b", "non-finite"),
    ("latest names another run", latest_elsewhere, "sample {run} --n 1", "not a checkpoint folder of this run"),
    ("latest through a link", latest_through_a_link, "sample {run} --n 1", "not a checkpoint folder of this run"),
    ("resume with another run's optimizer", other_runs_optimizer, "train {recipe} --run-dir {run} --resume --set run.steps=3",
     "does not fit the run"),
    ("resume with a swapped optimizer file", swapped_optimizer, "train {recipe} --run-dir {run} --resume --set run.steps=3",
     "optimizer.pt does not match its SHA-256"),
    ("resume with another RNG state", other_runs_rng, "train {recipe} --run-dir {run} --resume --set run.steps=3",
     "does not fit the run"),
    ("bundle file links outside", link_out_of_the_bundle, "sample {bundle} --n 1", "link that leads outside"),
    ("bundle files of the wrong type", edit_manifest(lambda m: m.update(files=[])), "sample {bundle} --n 1",
     "manifest.files must be an object"),
    ("bundle site of the wrong type", edit_manifest(lambda m: m["sites"].append(3)), "sample {bundle} --n 1",
     "manifest.sites[3] must be an object"),
    ("bundle input dtype unknown", edit_manifest(set_input("dtype", "float64")), "sample {bundle} --n 1",
     "manifest.sites[0].inputs[0].dtype is 'float64'"),
    ("bundle input dtype changed", edit_manifest(set_input("dtype", "float16")), "sample {bundle} --n 1",
     "not what the udpm sampler passes"),
    ("bundle input renamed", edit_manifest(set_input("name", "image")), "sample {bundle} --n 1",
     "not what the udpm sampler passes"),
    ("bundle site removed", edit_manifest(remove_site), "sample {bundle} --n 1", "calls level_1, level_2, level_3"),
    ("bundle graph replaced", edit_manifest(swap_graph, lambda b: shutil.copy(b / "level_2.onnx", b / "level_1.onnx")),
     "sample {bundle} --n 1", "the graph was replaced"),
    ("bundle graph with unlisted external data", external_data, "sample {bundle} --n 1", "'weights.bin', which the manifest"),
    ("manifest not JSON", lambda base: (base / "bundle/manifest.json").write_text("{"), "sample {bundle} --n 1",
     "not readable JSON"),
    ("manifest of another format", edit_manifest(lambda m: m.update(format_version=99)), "sample {bundle} --n 1",
     "format version 99"),
]


@pytest.mark.parametrize(("damage", "args", "fragment"), [case[1:] for case in DAMAGE_CASES], ids=[case[0] for case in DAMAGE_CASES])
def test_damaged_runs_and_bundles_are_one_line(world, tmp_path, capsys, monkeypatch, damage, args: str, fragment: str) -> None:
    base = Path(shutil.copytree(world["base"], tmp_path / "copy", symlinks=True))
    damage(base)
    before = snapshot(base)
    monkeypatch.chdir(tmp_path)
    paths = {"base": base, "run": base / "udpm", "bundle": base / "bundle", "recipe": world["recipe"]}
    argv = [part.format(**paths) for part in shlex.split(args)]
    code, err = run_cli([*argv, *(["--device", "cpu"] if argv[0] == "sample" else [])], capsys, monkeypatch)
    assert_one_clear_line(code, err, fragment)
    assert snapshot(base) == before


# --- the Python API ----------------------------------------------------------------------------------------------------


def _udpm(world) -> api.LoadedModel:
    return api.load_model(world["run"])


API_CASES = [
    ("no images", lambda w: api.sample(_udpm(w), 0), "number of images"),
    ("seed beyond 64 bits", lambda w: api.sample(_udpm(w), 1, seed=2**70), "seed must be"),
    ("latents seed", lambda w: api.sample_udpm_latents(_udpm(w), 1, seed=-3), "seed must be"),
    ("latents of DDPM", lambda w: api.sample_udpm_latents(api.load_model(w["ddpm"]), 1), "UDPM features"),
    ("unknown device", lambda w: api.load_model(w["run"], device="tpu"), "unknown device"),
    ("absent GPU", lambda w: api.load_model(w["run"], device="cuda:3"), "cuda:3"),
    ("unknown weights", lambda w: api.load_model(w["run"], weights="best"), "weights must be"),
    ("options that do not apply", lambda w: api.sample(api.load_model(w["ddpm"]), 1, steps=3), "only apply to the DDIM"),
    ("latents into a checkpoint", lambda w: api.save_latents(api.sample_udpm_latents(_udpm(w), 1)[1], w["ckpt"] / "l.pt"),
     "inside the checkpoint"),
    ("latents that are not latents", lambda w: api.load_latents(w["file"]), "not a fastgen UDPM latents file"),
    ("train: infinite learning rate", lambda w: api.train(w["recipe"], ["optim.lr=inf"], run_dir=w["base"] / "new"), "finite"),
    ("train into a checkpoint", lambda w: api.train(w["recipe"], [], run_dir=w["ckpt"]), "inside the run's checkpoints"),
    ("export over its run", lambda w: export_bundle(w["run"], w["run"], overwrite=True), "own input"),
    ("export over notes", lambda w: export_bundle(w["run"], w["notes"], overwrite=True), "not a bundle"),
    ("load a run as a bundle", lambda w: __import__("fastgen.runtime").runtime.load_bundle(w["run"]), "not a bundle"),
    ("grid into a bundle", lambda w: __import__("fastgen.data").data.save_image_grid(torch.zeros(1, 1, 4, 4),
                                                                                      w["bundle"] / "g.png"), "inside the bundle"),
    ("bench JSON into a folder", lambda w: __import__("fastgen.bench").bench.run_bench(json_path=w["notes"], device="cpu"),
     "is a folder"),
    ("bench a duplicated family", lambda w: __import__("fastgen.bench").bench.run_bench(families=["udpm", "udpm"], device="cpu"),
     "more than once"),
]


@pytest.mark.parametrize(("call", "fragment"), [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_api_bad_input_is_a_fastgen_error_and_writes_nothing(world, call, fragment: str) -> None:
    before = snapshot(world["base"])
    with pytest.raises(FastgenError) as error:
        call(world)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)
    assert snapshot(world["base"]) == before


# --- what bad input must not break: the same kind of output is still replaced, and killed exports are cleaned up -----


def test_outputs_of_the_same_kind_are_replaced_and_killed_exports_cleaned(world, tmp_path, capsys, monkeypatch) -> None:
    grid = tmp_path / "grid.png"
    for _ in range(2):  # a second sample replaces the first grid
        code, err = run_cli(["sample", str(world["run"]), "--n", "1", "--out", str(grid), "--device", "cpu"], capsys, monkeypatch)
        assert code == 0, err
    stale = [tmp_path / ".bundle.partial-999999999-deadbeef", tmp_path / ".bundle.partial-0123abcd"]  # a dead process's, an older fastgen's
    for folder in stale:
        folder.mkdir()
        (folder / "level_1.onnx").write_bytes(b"half")
    code, err = run_cli(["export", str(world["run"]), "--out", str(tmp_path / "bundle")], capsys, monkeypatch)
    assert code == 0, err
    assert not any(folder.exists() for folder in stale)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle", "grid.png"]  # no .tmp, no .partial left


def test_a_diverging_run_stops_with_an_error(world, tmp_path) -> None:
    """A learning rate of 1e30 is finite, so the recipe passes; the run stops after a bounded number of skipped steps."""
    from fastgen.training.loop import MAX_CONSECUTIVE_SKIPS

    with pytest.warns(RuntimeWarning), pytest.raises(FastgenError, match="training diverged") as error:
        api.train(TINY["ddpm"], ["optim.lr=1e30", "optim.warmup_steps=0", "optim.grad_clip=0", "run.steps=200"],
                  run_dir=tmp_path / "run")  # fmt: skip
    assert f"{MAX_CONSECUTIVE_SKIPS} steps in a row" in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # no non-finite checkpoint was written


def test_progress_off_a_terminal_is_a_line_every_few_seconds(monkeypatch) -> None:
    import io

    from fastgen.progress import progress_bar

    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", stream)
    for _ in progress_bar(range(5000), desc="steps"):
        pass
    text = stream.getvalue()
    assert "\r" not in text
    assert 1 <= len(text.splitlines()) <= 3, text  # start and end, not one line per step
    assert "5000/5000" in text.splitlines()[-1]


def test_multi_stage_progress_off_a_terminal_logs_lines(monkeypatch) -> None:
    """export's and bench's progress: off a terminal a line at most every LOG_EVERY_SECONDS (a live bar printed
    nothing there until the end); the clock is stepped, not slept."""
    import io

    from rich.console import Console

    from fastgen import progress

    clock = iter(range(0, 1000, 2))  # each update 2 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    console = Console(file=io.StringIO(), width=100)
    assert not console.is_terminal
    with progress.task_progress(console) as bar:
        task = bar.add_task("export", total=6)
        for step in range(6):
            bar.update(task, description=f"level_{step}: onnx")
            bar.advance(task)
    lines = console.file.getvalue().splitlines()
    assert "\r" not in console.file.getvalue()
    assert lines[0] == "level_0: onnx: 0/6"
    assert 2 <= len(lines) <= 5  # 12 updates over 24 s, a line per 5 s, not one per update
    with progress.task_progress(console, disable=True) as bar:  # --no-progress: nothing
        bar.advance(bar.add_task("bench", total=1))
    assert console.file.getvalue().splitlines() == lines


def test_sixteen_bit_pngs_decode_to_their_value_and_upscaling_warns_once(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from fastgen.data import load_dataset

    for index in range(3):
        Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / f"grey16_{index}.png")  # mid-grey
    with pytest.warns(UserWarning, match="upscaled") as warned:
        dataset = load_dataset("folder", 16, 1, path=tmp_path)
    assert len([w for w in warned if "upscaled" in str(w.message)]) == 1
    assert abs(float(dataset.images.mean())) < 0.01  # mid-grey is 0 in [-1, 1]; a saturating decode gives ≈ 1


# --- issue 20: every number and file is untrusted input ---------------------------------------------------------------
# One more world beside ``world``: a PDDPM run (upscaling), a DDPM bundle (chains), UDPM latents files good and crafted,
# a grey-palette PNG, a user's Markdown notes. Cases by class of the issue; CLI and API; nothing written (snapshots,
# the metrics cache included: FASTGEN_CACHE points into the test's folder).


def _rehash_bundle(bundle: Path) -> None:
    """A careful forger's bundle: every file's hash recorded again in the manifest, so only the deeper checks can tell."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {name: sha256_file(bundle / name) for name in manifest["files"]}
    path.write_text(json.dumps(manifest))


def edit_program(change: Callable[[dict], None], bundle: str = "bundle") -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        path = base / bundle / "program.json"
        program = json.loads(path.read_text())
        change(program)
        path.write_text(json.dumps(program))
        _rehash_bundle(base / bundle)

    return damage


def write_program_text(text: str) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        (base / "bundle/program.json").write_text(text)
        _rehash_bundle(base / "bundle")

    return damage


def _save_latents(path: Path, change: Callable[[dict], None]) -> None:
    data = torch.load(path.parent / "good.pt", weights_only=True)
    change(data)
    torch.save(data, path)


@pytest.fixture(scope="session")
def world20(world: dict[str, Path]) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    base = world["base"]
    api.train(ROOT / "train" / "pddpm_tiny.toml", ["run.steps=2", "run.checkpoint_every=2"], run_dir=base / "pddpm")
    export_bundle(base / "ddpm", base / "ddpm_bundle")
    latents = base / "latents"
    latents.mkdir()
    api.save_latents(api.sample_udpm_latents(api.load_model(world["run"]), 2)[1], latents / "good.pt")
    _save_latents(latents / "nan.pt", lambda d: d["x_top"].fill_(float("nan")))
    _save_latents(latents / "inf.pt", lambda d: d["noises"][1].fill_(float("inf")))
    # 10**7 rows in a file of a few KiB: every row the same storage (stride 0).
    _save_latents(latents / "huge.pt", lambda d: d.update(x_top=d["x_top"][:1].expand(10**7, *d["x_top"].shape[1:]),
                                                          noises=[n[:1].expand(10**7, *n.shape[1:]) for n in d["noises"]]))
    _save_latents(latents / "ints.pt", lambda d: d.update(x_top=d["x_top"].long()))
    low = base / "low"
    low.mkdir()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L").quantize(16).save(low / "palette.png")  # grey palette
    (base / "notes" / "n.md").write_text("# my notes\n")
    return {**world, "pddpm": base / "pddpm", "ddpm_bundle": base / "ddpm_bundle", "latents": latents, "low": low}


ISSUE20_CLI_CASES = [
    # 1. Non-finite numbers: in explicit latents, in options; a sampler whose result diverges.
    ("NaN latents", "sample {run} --latents {latents}/nan.pt --out {out}/g.png", "non-finite"),
    ("inf latents", "sample {run} --latents {latents}/inf.pt --out {out}/g.png", "non-finite"),
    ("NaN latents, edited", "sample {run} --latents {latents}/nan.pt --perturb 2:0.5 --out {out}/g.png", "non-finite"),
    ("infinite guidance", "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png --guidance inf", "guidance (λ) must be a finite"),
    ("NaN guidance", "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png --guidance nan", "guidance (λ) must be a finite"),
    ("negative guidance", "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png --guidance -1", "guidance (λ) must be ≥ 0, got -1.0"),
    ("guidance that diverges", "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png --guidance 1e30", "upscaling diverged"),
    ("NaN eta", "sample {ddpm} --sampler ddim --eta nan --n 1 --out {out}/g.png", "eta"),
    ("infinite dt_s", "sample {pddpm} --dt-s inf --n 1 --out {out}/g.png", "renoise_fraction"),
    # 2. Sizes and counts bounded before the work.
    ("10**7 stride-0 latents rows", "sample {run} --latents {latents}/huge.pt --out {out}/g.png", "overlapping strides"),
    ("integer latents", "sample {run} --latents {latents}/ints.pt --out {out}/g.png", "not floating point"),
    ("eval of 10**12 images", f"eval {{ddpm}} --n {10**12} --device cpu", "GiB"),
    ("more DDIM steps than T", "sample {ddpm} --sampler ddim --steps 1001 --n 1 --out {out}/g.png", "num_steps must be an integer in [1, 1000]"),
    # 7. Out-of-range values refused, not remapped.
    ("no reference images", "eval {ddpm} --ref-n 0 --device cpu", "--ref-n"),
    ("negative reference images", "eval {ddpm} --ref-n -5 --device cpu", "--ref-n"),
    ("no eval batch", "eval {ddpm} --batch 0 --device cpu", "--batch"),
    ("one eval image", "eval {ddpm} --n 1 --device cpu", "--n"),
    # 8. Every option value validated before any work (reference features take minutes).
    ("eval with an unknown sampler", "eval {ddpm} --sampler bogus --device cpu", "unknown DDPM sampler 'bogus'"),
    ("eval with steps but no ddim", "eval {ddpm} --steps 5 --device cpu", "only apply to the DDIM sampler"),
    ("eval with too many DDIM steps", "eval {ddpm} --sampler ddim --steps 5000 --device cpu", "num_steps must be"),
    ("eval precision/recall of 2 images", "eval {ddpm} --n 2 --metrics pr --device cpu", "pr needs n ≥ 4"),
    ("eval with an unknown metric", "eval {ddpm} --metrics fid,bogus --device cpu", "unknown metric(s) bogus"),
    # 9. Implied outputs go through the guard.
    ("--json implies over a user's notes", "eval {ddpm} --json {notes}/n.json --n 4 --device cpu", "is not a fastgen eval Markdown file"),
    # 10. --resume into a changed world.
    ("--allow-new-data without --resume", "train {recipe} --run-dir {out}/r --allow-new-data", "only applies to --resume"),
]


AFTER_WORK = ("upscaling diverged", "sampling diverged")
"""Errors that can only come once the sampler ran (its progress lines come first): the last line is the one error."""


def assert_issue20_error(code: int, err: str, fragment: str) -> None:
    if any(marker in fragment for marker in AFTER_WORK):
        assert "Traceback" not in err, err
        err = err.strip().splitlines()[-1]
    assert_one_clear_line(code, err, fragment)


def _run_issue20_case(world20, tmp_path, capsys, monkeypatch, args: str) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTGEN_CACHE", str(tmp_path / "cache"))  # reference features, the classifier: nothing may land there
    argv = [part.format(out=tmp_path, **world20) for part in shlex.split(args)]
    return run_cli([*argv, *(["--device", "cpu"] if argv[0] in ("sample", "upscale") else [])], capsys, monkeypatch)


@pytest.mark.parametrize(("args", "fragment"), [case[1:] for case in ISSUE20_CLI_CASES], ids=[case[0] for case in ISSUE20_CLI_CASES])
def test_issue20_cli_bad_input_is_one_line_and_writes_nothing(world20, tmp_path, capsys, monkeypatch, args: str, fragment: str) -> None:
    before, outside = snapshot(world20["base"]), snapshot(tmp_path)
    code, err = _run_issue20_case(world20, tmp_path, capsys, monkeypatch, args)
    assert_issue20_error(code, err, fragment)
    assert snapshot(world20["base"]) == before, "the bad input changed a run, a bundle or a file"
    assert snapshot(tmp_path) == outside, "the bad input wrote something (an output, or reference features to the cache)"


def swap_dataset_content(base: Path) -> None:
    """Nothing to damage: the case resumes the run with the same number of images, preprocessed differently."""


def rehash_nested(base: Path) -> None:
    checkpoint = base / "udpm/checkpoints" / STEP
    (checkpoint / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    rehash(checkpoint)


def program_1e999(base: Path) -> None:
    path = base / "bundle/program.json"
    program = json.loads(path.read_text())
    program["ops"][0]["scale"] = 12345.0
    path.write_text(json.dumps(program).replace("12345.0", "1e999"))  # JSON's own spelling of a number no float holds
    _rehash_bundle(base / "bundle")


ISSUE20_DAMAGE_CASES = [
    # 1. Non-finite program constants (NaN, and 1e999, which JSON readers parse as inf); a finite constant whose result is not.
    ("NaN program constant", edit_program(lambda p: p["ops"][0].update(scale=float("nan"))), "sample {bundle} --n 1",
     "program holds the number NaN, which is not finite"),
    ("1e999 program constant", program_1e999, "sample {bundle} --n 1", "program holds the number 1e999, which is not finite"),
    ("NaN in a program array", edit_program(lambda p: p["ops"][2]["taps"][0].__setitem__(0, float("nan"))), "sample {bundle} --n 1",
     "program holds the number NaN"),
    ("finite constant, infinite result", edit_program(lambda p: p["ops"][0].update(scale=1e300)), "sample {bundle} --n 1",
     "sampling diverged: program op 0 (noise)"),
    # 2. A chain longer than the model's T, timesteps outside it, buffers larger than the images.
    ("1001-step chain for T = 1000", edit_program(lambda p: [p["ops"][1][key].append(p["ops"][1][key][-1])
                                                             for key in ("timesteps", "noise", "a", "b", "p", "q", "r", "s")],
                                                  "ddpm_bundle"), "sample {ddpm_bundle} --n 1", "runs 1001 steps; a 1000-step model"),
    ("timestep beyond T", edit_program(lambda p: p["ops"][1]["timesteps"].__setitem__(0, 5000.0), "ddpm_bundle"),
     "sample {ddpm_bundle} --n 1", "timesteps in [0, 999]"),
    ("a buffer nothing reads, huge", edit_program(lambda p: p["buffers"].update(big=[1, 40000, 40000])), "sample {bundle} --n 1",
     "buffer 'big' [1, 40000, 40000] is larger"),
    ("a buffer whose size overflows int64", edit_program(lambda p: p["buffers"].update(big=[2**40, 2**40, 2**40])),
     "sample {bundle} --n 1", "program buffers must map names to shapes"),
    # 3. Deeply nested JSON.
    ("manifest nested 300k levels", lambda base: (base / "bundle/manifest.json").write_text("[" * 300_000 + "]" * 300_000),
     "sample {bundle} --n 1", "nests 300000 levels deep"),
    ("program nested 300k levels", write_program_text("[" * 300_000 + "]" * 300_000), "sample {bundle} --n 1",
     "program nests 300000 levels deep"),
    ("checkpoint config nested", rehash_nested, "sample {run} --n 1", "nests 100000 levels deep"),
    # 6. A program that disagrees with its manifest.
    ("program output 8×8 in a 16×16 bundle", edit_program(lambda p: p.update(output="x_1")), "sample {bundle} --n 1",
     "makes images of shape [1, 8, 8], but the manifest declares [1, 16, 16]"),
    ("program calls a site the manifest lacks", edit_program(lambda p: p["ops"][1].update(site="level_9")), "sample {bundle} --n 1",
     "calls site 'level_9', which the manifest does not list"),
    ("program calls a site at another size", edit_program(lambda p: p["ops"][1].update(site="level_1")), "sample {bundle} --n 1",
     "but the manifest's site takes"),
    ("program out of the bundle", edit_manifest(lambda m: m.update(program="../outside.json")), "sample {bundle} --n 1",
     "not a file of it"),
    # 7. Every manifest enum.
    ("precision fp8", edit_manifest(lambda m: m.update(precision="fp8")), "sample {bundle} --n 1",
     "manifest.precision is 'fp8'"),
    ("an unknown output dtype", edit_manifest(lambda m: m["sites"][0]["output"].update(dtype="float8")), "sample {bundle} --n 1",
     "manifest.sites[0].output.dtype is 'float8'"),
    ("another normalisation", edit_manifest(lambda m: m["normalization"].update(range=[0.0, 1.0])), "sample {bundle} --n 1",
     "manifest.normalization"),
    # 10. Resume into a changed world: the same number of images, other content.
    ("resume on other data", swap_dataset_content, "train {recipe} --run-dir {run} --resume --set run.steps=3 --set data.fit=pad",
     "trained on other data"),
]


@pytest.mark.parametrize(("damage", "args", "fragment"), [case[1:] for case in ISSUE20_DAMAGE_CASES],
                         ids=[case[0] for case in ISSUE20_DAMAGE_CASES])  # fmt: skip
def test_issue20_crafted_bundles_and_runs_are_one_line(world20, tmp_path, capsys, monkeypatch, damage, args: str, fragment: str) -> None:
    base = Path(shutil.copytree(world20["base"], tmp_path / "copy", symlinks=True))
    damage(base)
    before = snapshot(base)
    monkeypatch.chdir(tmp_path)
    paths = {"base": base, "run": base / "udpm", "bundle": base / "bundle", "ddpm_bundle": base / "ddpm_bundle",
             "recipe": world20["recipe"]}  # fmt: skip
    argv = [part.format(**paths) for part in shlex.split(args)]
    code, err = run_cli([*argv, *(["--device", "cpu"] if argv[0] == "sample" else [])], capsys, monkeypatch)
    assert_issue20_error(code, err, fragment)
    assert snapshot(base) == before


def _grey_images(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 8, 8)


ISSUE20_API_CASES = [
    ("NaN latents", lambda w: api.load_latents(w["latents"] / "nan.pt"), "non-finite"),
    ("stride-0 latents", lambda w: api.load_latents(w["latents"] / "huge.pt"), "overlapping strides"),
    ("eval of 10**12 images", lambda w: api.evaluate(api.load_model(w["ddpm"]), 10**12), "GiB"),
    ("eval --ref-n 0", lambda w: api.evaluate(api.load_model(w["ddpm"]), 8, reference_size=0), "reference size"),
    ("eval --ref-n -5", lambda w: api.evaluate(api.load_model(w["ddpm"]), 8, reference_size=-5), "reference size"),
    ("eval of a bogus sampler", lambda w: api.evaluate(api.load_model(w["ddpm"]), 8, sampler="bogus"), "unknown DDPM sampler"),
    ("eval pr of 2 images", lambda w: api.evaluate(api.load_model(w["ddpm"]), 2, metrics="pr"), "needs n ≥ 4"),
    ("upscale NaN guidance", lambda w: api.upscale(api.load_model(w["pddpm"]), _grey_images(1), 2, guidance=float("nan")),
     "finite"),
    ("upscale a NaN image", lambda w: api.upscale(api.load_model(w["pddpm"]), _grey_images(1).fill_(float("nan")), 2),
     "low-resolution images holds 64 non-finite"),
    ("upscale that diverges", lambda w: api.upscale(api.load_model(w["pddpm"]), _grey_images(1), 2, guidance=1e30),
     "upscaling diverged"),
    ("sample explicit latents too many for memory", lambda w: api.sample(api.load_model(w["run"]), 1, latents=_many_latents(w)),
     "GiB"),
    ("resume --allow-new-data without --resume", lambda w: api.train(w["recipe"], [], run_dir=w["base"] / "new", allow_new_data=True),
     "only applies to --resume"),
    ("a deeply nested program", lambda w: __import__("fastgen.sampling.program").sampling.program.Program.from_json("[" * 10**5),
     "nests 100000 levels"),
    ("a program constant of 1e999", lambda w: _program_with_text(w, "1e999"), "holds the number 1e999, which is not finite"),
    ("a program constant of NaN, as data", lambda w: _program_dict_with(w, float("nan")), "scale must be a finite number, got nan"),
    ("a NaN in a manifest's constants", lambda w: _manifest_with_nan(w), "holds the number NaN"),
]


def _many_latents(world20):
    """Valid latents of a batch no memory holds (a view: nothing is allocated)."""
    latents = api.load_latents(world20["latents"] / "good.pt")
    return type(latents)(latents.x_top[:1].expand(10**9, *latents.x_top.shape[1:]),
                         tuple(n[:1].expand(10**9, *n.shape[1:]) for n in latents.noises))  # fmt: skip


def _program_dict_with(world20, scale: float):
    from fastgen.sampling.program import Program

    data = json.loads((world20["bundle"] / "program.json").read_text())
    data["ops"][0]["scale"] = scale
    return Program.from_dict(data)


def _manifest_with_nan(world20):
    """Numbers nothing in Python reads (the schedule constants, for runtimes outside Python) are checked too."""
    from fastgen.export.manifest import read_manifest

    copy = world20["base"].parent / "nan_constants"
    shutil.copytree(world20["bundle"], copy, dirs_exist_ok=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["constants"]["alphas"] = [float("nan")]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return read_manifest(copy, verify=False)


def _program_with_text(world20, number: str):
    from fastgen.sampling.program import Program

    text = (world20["bundle"] / "program.json").read_text()
    data = json.loads(text)
    data["ops"][0]["scale"] = 12345.0
    return Program.from_json(json.dumps(data).replace("12345.0", number))


@pytest.mark.parametrize(("call", "fragment"), [case[1:] for case in ISSUE20_API_CASES], ids=[case[0] for case in ISSUE20_API_CASES])
def test_issue20_api_bad_input_is_a_fastgen_error_and_writes_nothing(world20, tmp_path, monkeypatch, call, fragment: str) -> None:
    monkeypatch.setenv("FASTGEN_CACHE", str(tmp_path / "cache"))
    before = snapshot(world20["base"])
    with pytest.raises(FastgenError) as error:
        call(world20)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)
    assert snapshot(world20["base"]) == before
    assert not (tmp_path / "cache").exists()


def test_no_verify_skips_hashing_only(world20, tmp_path) -> None:
    """load_bundle(verify=False): an altered file is read (no hashes), a name out of the bundle never is."""
    from fastgen.runtime import load_bundle

    base = Path(shutil.copytree(world20["base"], tmp_path / "copy", symlinks=True))
    shutil.copy(base / "bundle/level_1.onnx", base / "outside.onnx")
    edit_manifest(lambda m: m["sites"][0].update(file="../outside.onnx"))(base)
    with pytest.raises(FastgenError, match="not a file of it"):
        load_bundle(base / "bundle", verify=False)
    edit_manifest(lambda m: m["sites"][0].update(file="level_1.onnx"))(base)
    edit_program(lambda p: p.update(output="x_1"))(base)
    with pytest.raises(FastgenError, match="manifest declares"):
        load_bundle(base / "bundle", verify=False)


def test_int8_precision_is_a_known_enum() -> None:
    from fastgen.export.manifest import Manifest
    from tests.test_fuzz_readers import VALID_MANIFEST

    assert Manifest.from_dict({**VALID_MANIFEST, "precision": "int8"}).precision == "int8"
    with pytest.raises(FastgenError, match="one of fp32, fp16, bf16, int8"):
        Manifest.from_dict({**VALID_MANIFEST, "precision": "fp8"})


def test_what_the_checks_must_not_refuse(world20, tmp_path, capsys, monkeypatch) -> None:
    """A grey-palette PNG upscales (it was refused as RGB); a resume on the same data, and on other data with
    --allow-new-data, continues; a second eval --json replaces its own Markdown."""
    code, err = _run_issue20_case(world20, tmp_path, capsys, monkeypatch, "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png")
    assert code == 0, err
    assert (tmp_path / "u.png").is_file()
    base = Path(shutil.copytree(world20["base"], tmp_path / "copy", symlinks=True))
    for extra in ([], ["--set", "data.fit=pad", "--allow-new-data"]):
        steps = 3 if not extra else 4
        code, err = run_cli(["train", str(world20["recipe"]), "--run-dir", str(base / "udpm"), "--resume",
                             "--set", f"run.steps={steps}", "--set", f"run.checkpoint_every={steps}", *extra], capsys, monkeypatch)  # fmt: skip
        assert code == 0, err
        assert (base / "udpm/checkpoints" / f"step_{steps:06d}").is_dir()


def test_a_sampler_result_is_checked_for_every_op(world20) -> None:
    """The interpreter names the op whose output turned non-finite (here a site that answers NaN)."""
    from fastgen.sampling import interpreter

    model = api.load_model(world20["ddpm"])
    program = model.family.program(sampler="ddim", steps=2)
    sites = {"denoiser": lambda x, t: torch.full_like(x, float("nan"))}
    with pytest.raises(FastgenError, match=r"program op 1 \(denoise_chain at site denoiser, 2 steps\) produced non-finite"):
        interpreter.sample(program, sites, 1, seed=0)
