"""A held-out bad-input suite for issue 20: eval, upscale, UDPM latents and crafted bundles (valid, re-hashed
manifests), each case a real ``python3 -m fastgen`` process, and the C++ app ``fastgen-cpp-sample`` on the same
bundles (cases named ``app: …``; skipped where ``build/export`` has not been built).

Every case is classified by what the process did:

* clear      exit 2, one ``error: …`` line on stderr (progress lines of work already done may precede it), no traceback
* silent     exit 0: the bad input was accepted
* crash/hang killed by a signal, or still running after ``--timeout`` seconds
* traceback  a Python traceback on stderr, or any other exit code

and, separately, whether it changed any file of the world (runs, bundles, inputs) or wrote into the output folder.
A few valid inputs (``expect ok``) check that nothing is falsely refused. Usage (from the repository root)::

    PYTHONPATH=. python3 bench/bad_inputs20.py [--out bench/results/bad_inputs20.json] [--only SUBSTRING]

Its world (tiny 2-step runs, bundles) is built under a temporary folder; the cases are not the tests' cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = "step_000002"


def build_world(base: Path) -> dict[str, Path]:
    import numpy as np
    import torch
    from PIL import Image

    from fastgen import api
    from fastgen.export import export_bundle

    for family in ("udpm", "ddpm", "pddpm"):
        api.train(ROOT / "train" / f"{family}_tiny.toml", ["run.steps=2", "run.checkpoint_every=2"], run_dir=base / family)
    export_bundle(base / "udpm", base / "bundle")
    export_bundle(base / "ddpm", base / "ddpm_bundle")
    latents = base / "latents"
    latents.mkdir()
    api.save_latents(api.sample_udpm_latents(api.load_model(base / "udpm"), 2)[1], latents / "good.pt")
    good = torch.load(latents / "good.pt", weights_only=True)

    def variant(name: str, change: Callable[[dict], None]) -> None:
        data = {key: (value.clone() if torch.is_tensor(value) else [v.clone() for v in value]) for key, value in good.items()}
        change(data)
        torch.save(data, latents / name)

    variant("neg_inf_noise0.pt", lambda d: d["noises"][0].fill_(-float("inf")))
    variant("one_nan.pt", lambda d: d["x_top"].view(-1).__setitem__(0, float("nan")))
    variant("nan_half.pt", lambda d: d.update(x_top=torch.full_like(d["x_top"], float("nan")).half()))
    variant("stride0_noises.pt", lambda d: d.update(noises=[n[:1].expand(10**6, *n.shape[1:]) for n in d["noises"]],
                                                    x_top=d["x_top"][:1].expand(10**6, *d["x_top"].shape[1:])))
    variant("stride0_inner.pt", lambda d: d.update(x_top=d["x_top"][:, :, :1, :1].expand(*d["x_top"].shape)))
    variant("wrong_shape.pt", lambda d: d.update(x_top=torch.zeros(2, 1, 3, 3)))
    variant("obs_for_box.pt", lambda d: d.update(obs_noises=[n.clone() for n in d["noises"]]))
    variant("bool_map.pt", lambda d: d["noises"].__setitem__(1, d["noises"][1] > 0))
    variant("complex_map.pt", lambda d: d["noises"].__setitem__(2, d["noises"][2].to(torch.complex64)))
    (latents / "truncated.pt").write_bytes((latents / "good.pt").read_bytes()[:300])
    (latents / "json.pt").write_text('{"x_top": [1, 2]}')
    low = base / "low"
    low.mkdir()
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey, "L").quantize(8).save(low / "palette.png")
    Image.fromarray(grey, "L").save(low / "grey.png")
    Image.fromarray(np.stack([grey, 255 - grey, grey], -1), "RGB").save(low / "rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 256).save(low / "grey16.png")
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(low / "big.png")
    Image.fromarray(np.zeros((8, 4), np.uint8), "L").save(low / "narrow.png")
    (low / "notpng.png").write_text("not a picture")
    (base / "empty").mkdir()
    (base / "notes").mkdir()
    (base / "notes" / "q.md").write_text("# my own notes: keep\n")
    (base / "notes" / "q2.md").write_text("# other notes\n")
    (base / "notes" / "dir.md").mkdir()  # a folder where eval --json notes/dir.json would put its Markdown
    # 1797 random images: the size of the digits the runs were trained on, other content.
    np.savez(base / "same_size.npz", images=np.random.default_rng(0).integers(0, 256, (1797, 8, 8), dtype=np.uint8))
    return {"base": base, "run": base / "udpm", "ddpm": base / "ddpm", "pddpm": base / "pddpm", "bundle": base / "bundle",
            "ddpm_bundle": base / "ddpm_bundle", "latents": latents, "low": low, "notes": base / "notes",
            "empty": base / "empty", "recipe": ROOT / "train" / "udpm_tiny.toml"}  # fmt: skip


# --- crafting bundles: edit the manifest or the program, then record every file's hash again ---------------------------


def rehash(bundle: Path) -> None:
    from fastgen.integrity import sha256_file

    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {name: sha256_file(bundle / name) for name in manifest["files"] if (bundle / name).is_file()}
    path.write_text(json.dumps(manifest))


def manifest_edit(change: Callable[[dict], None], bundle: str = "bundle") -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        path = base / bundle / "manifest.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


def program_edit(change: Callable[[dict], None], bundle: str = "bundle", text: Callable[[str], str] | None = None) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        path = base / bundle / "program.json"
        data = json.loads(path.read_text())
        change(data)
        written = json.dumps(data)
        path.write_text(text(written) if text else written)
        rehash(base / bundle)

    return damage


def raw_file(relative: str, content: Callable[[], str], hashed: str | None = None) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        (base / relative).write_text(content())
        if hashed:
            rehash(base / hashed)

    return damage


def manifest_nested(key: str, depth: int) -> Callable[[Path], None]:
    def damage(base: Path) -> None:
        path = base / "bundle/manifest.json"
        data = json.loads(path.read_text())
        data[key] = "__NESTED__"
        path.write_text(json.dumps(data).replace('"__NESTED__"', "[" * depth + "]" * depth))

    return damage


def chain_of(steps: int) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        chain = program["ops"][1]
        for key in ("timesteps", "noise", "a", "b", "p", "q", "r", "s"):
            chain[key] = [chain[key][-1]] * steps

    return change


def set_op(index: int, **fields) -> Callable[[dict], None]:
    return lambda p: p["ops"][index].update(fields)


def set_array(index: int, key: str, value: float) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        array = program["ops"][index][key]
        while isinstance(array[0], list):
            array = array[0]
        array[0] = value

    return change


# --- the cases: (class, name, damage or None, arguments, expect) -------------------------------------------------------

CASES: list[tuple[str, str, Callable[[Path], None] | None, str, str]] = [
    # 1 non-finite numbers
    ("1 non-finite", "-inf in latents e_1", None, "sample {run} --latents {latents}/neg_inf_noise0.pt --out {out}/a.png", "bad"),
    ("1 non-finite", "one NaN in latents x_top", None, "sample {run} --latents {latents}/one_nan.pt --out {out}/a.png", "bad"),
    ("1 non-finite", "NaN float16 latents", None, "sample {run} --latents {latents}/nan_half.pt --out {out}/a.png", "bad"),
    ("1 non-finite", "NaN latents as swap partner", None, "sample {run} --latents {latents}/good.pt --swap {latents}/one_nan.pt:2 --out {out}/a.png", "bad"),
    ("1 non-finite", "NaN perturbation strength", None, "sample {run} --latents {latents}/good.pt --perturb 2:nan --out {out}/a.png", "bad"),
    ("1 non-finite", "guidance -inf", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --guidance -inf", "bad"),
    ("1 non-finite", "guidance 1e300", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --guidance 1e300", "bad"),
    ("1 non-finite", "guidance 1e6", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --guidance 1e6", "bad"),
    ("1 non-finite", "upscale dt_s nan", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --dt-s nan", "bad"),
    ("1 non-finite", "eval eta inf", None, "eval {ddpm} --sampler ddim --eta inf --n 4", "bad"),
    ("1 non-finite", "PDDPM eta nan", None, "sample {pddpm} --eta nan --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "DDPM chain a = inf", program_edit(set_array(1, "a", float("inf")), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "program taps -inf", program_edit(set_array(2, "taps", -float("inf"))), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "program kx NaN", program_edit(set_op(2, kx=float("nan"))), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "program kp 1e999 (JSON text)", program_edit(set_op(4, kp=4321.5), text=lambda t: t.replace("4321.5", "1e999")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "program ky -1e400 (JSON text)", program_edit(set_op(6, ky=4321.5), text=lambda t: t.replace("4321.5", "-1e400")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "finite kx 1e200: float32 overflow", program_edit(set_op(2, kx=1e200)), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "DDPM chain q = 1e30: diverges", program_edit(lambda p: p["ops"][1].update(q=[1e30] * len(p["ops"][1]["q"])), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "constants betas NaN in manifest", manifest_edit(lambda m: m["constants"]["betas"].__setitem__(0, float("nan")), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    # 2 sizes and counts
    ("2 sizes", "10**6 stride-0 latents rows", None, "sample {run} --latents {latents}/stride0_noises.pt --out {out}/a.png", "bad"),
    ("2 sizes", "stride-0 inside an image", None, "sample {run} --latents {latents}/stride0_inner.pt --out {out}/a.png", "bad"),
    ("2 sizes", "10**6-step chain, T = 1000", program_edit(chain_of(10**6), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "1001-step chain to .npy", program_edit(chain_of(1001), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.npy", "bad"),
    ("2 sizes", "negative timestep", program_edit(lambda p: p["ops"][1]["timesteps"].__setitem__(3, -1.0), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "fractional timestep", program_edit(lambda p: p["ops"][1]["timesteps"].__setitem__(3, 2.5), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "unread buffer 2**30 elements", program_edit(lambda p: p["buffers"].update(junk=[1, 2**15, 2**15])), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "buffer of 5 dims", program_edit(lambda p: p["buffers"].update(junk=[1, 1, 1, 1, 1])), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "buffer overflowing int64", program_edit(lambda p: p["buffers"].update(junk=[2**62, 2**62])), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "eval --n 10**15", None, "eval {ddpm} --n 1000000000000000", "bad"),
    ("2 sizes", "eval --n and --batch 10**9", None, "eval {ddpm} --n 1000000000 --batch 1000000000", "bad"),
    ("2 sizes", "DDIM steps 10**6", None, "eval {ddpm} --sampler ddim --steps 1000000 --n 4", "bad"),
    ("2 sizes", "PDDPM t_f 10**6", None, "sample {pddpm} --t-f 1000000 --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "upscale t_s 10**6", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --t-s 1000000", "bad"),
    # 3 deeply nested JSON
    ("3 nesting", "manifest model nested 300k", manifest_nested("model", 300_000), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("3 nesting", "manifest source nested 65", manifest_nested("source", 65), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("3 nesting", "program objects nested 300k", raw_file("bundle/program.json", lambda: '{"a":' * 300_000 + "0" + "}" * 300_000, "bundle"), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("3 nesting", "program unclosed 300k", raw_file("bundle/program.json", lambda: "[" * 300_000, "bundle"), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("3 nesting", "eval of a bundle with nested manifest", manifest_nested("onnx", 200_000), "eval {bundle} --n 4", "bad"),
    ("3 nesting", "run recipe.json nested", raw_file("udpm/recipe.json", lambda: "[" * 200_000 + "]" * 200_000), "train {run}/recipe.json --run-dir {out}/r", "bad"),
    # 6 program vs manifest
    ("6 program⟂manifest", "program output 4×4", program_edit(lambda p: p.update(output="x_2")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "DDPM program at 4×4 in an 8×8 bundle", program_edit(lambda p: p["buffers"].update(x=[1, 4, 4]), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "chain at a UDPM site name", program_edit(lambda p: p["ops"][1].update(site="level_1"), "ddpm_bundle"), "sample {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "call site swapped level_2/level_3", program_edit(lambda p: p["ops"][3].update(site="level_3")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "manifest program ../outside", manifest_edit(lambda m: m.update(program="../outside.json")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "manifest program absolute", manifest_edit(lambda m: m.update(program="/etc/hostname")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "eval of a bundle with an 8×8 program", program_edit(lambda p: p.update(output="x_1")), "eval {bundle} --n 4", "bad"),
    # 7 out-of-range values and enums
    ("7 range/enums", "eval --ref-n -1", None, "eval {ddpm} --ref-n -1 --n 4", "bad"),
    ("7 range/enums", "eval --n -4", None, "eval {ddpm} --n -4", "bad"),
    ("7 range/enums", "eval --batch -2", None, "eval {ddpm} --n 4 --batch -2", "bad"),
    ("7 range/enums", "precision FP32 (case)", manifest_edit(lambda m: m.update(precision="FP32")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "precision int4", manifest_edit(lambda m: m.update(precision="int4")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "input dtype int8", manifest_edit(lambda m: m["sites"][1]["inputs"][0].update(dtype="int8")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "normalisation layout NHWC", manifest_edit(lambda m: m["normalization"].update(layout="NHWC")), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "batch min 0", manifest_edit(lambda m: m["batch"].update(min=0)), "sample {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "upscale --scale 3", None, "upscale {pddpm} {low}/grey.png --scale 3 --out {out}/u.png", "bad"),
    ("7 range/enums", "upscale --t-s 0", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --t-s 0", "bad"),
    ("7 range/enums", "upscale --dt-s 2", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {out}/u.png --dt-s 2", "bad"),
    # 8 every option before any work
    ("8 options first", "eval --sampler DDIM (case)", None, "eval {ddpm} --sampler DDIM --n 4", "bad"),
    ("8 options first", "eval --eta without ddim", None, "eval {ddpm} --eta 0.5 --n 4", "bad"),
    ("8 options first", "eval --t-f for DDPM", None, "eval {ddpm} --t-f 10 --n 4", "bad"),
    ("8 options first", "eval UDPM with --sampler", None, "eval {run} --sampler ddim --n 4", "bad"),
    ("8 options first", "eval --metrics empty", None, "eval {ddpm} --metrics , --n 4", "bad"),
    ("8 options first", "eval --metrics pr,kid --n 3", None, "eval {ddpm} --metrics pr,kid --n 3", "bad"),
    ("8 options first", "eval --data bogus", None, "eval {ddpm} --data nosuchdata --n 4", "bad"),
    ("8 options first", "eval --weights best", None, "eval {ddpm} --weights best --n 4", "bad"),
    ("8 options first", "eval --backend tensorrt for a checkpoint", None, "eval {ddpm} --backend tensorrt --n 4", "bad"),
    # 9 implied outputs
    ("9 implied outputs", "eval --json beside notes q.md", None, "eval {ddpm} --json {notes}/q.json --n 4", "bad"),
    ("9 implied outputs", "eval --json into a bundle", None, "eval {ddpm} --json {bundle}/q.json --n 4", "bad"),
    ("9 implied outputs", "eval --json whose .md is a folder", None, "eval {ddpm} --json {notes}/dir.json --n 4", "bad"),
    ("9 implied outputs", "upscale folder output over an input", None, "upscale {pddpm} {low}/grey.png --scale 2 --out {low}", "bad"),
    # 10 resume into a changed world
    ("10 resume", "resume on other images of the same number", None, "train {recipe} --run-dir {copy_run} --resume --set run.steps=3 --set data.name=npz --set data.path={base}/same_size.npz", "bad"),
    ("10 resume", "resume on digits padded, not resized", None, "train {recipe} --run-dir {copy_run} --resume --set run.steps=3 --set data.fit=pad", "bad"),
    ("valid", "resume on digits with fit=resize_pad (the same images as resize here)", None, "train {recipe} --run-dir {copy_run} --resume --set run.steps=3 --set run.checkpoint_every=3 --set data.fit=resize_pad", "ok"),
    ("10 resume", "resume with --allow-new-data but no --resume", None, "train {recipe} --run-dir {out}/r --allow-new-data", "bad"),
    # other: images, inputs
    ("other", "upscale a non-PNG named .png", None, "upscale {pddpm} {low}/notpng.png --scale 2 --out {out}/u.png", "bad"),
    ("other", "upscale a 16×16 input for ×2 of 16", None, "upscale {pddpm} {low}/big.png --scale 2 --out {out}/u.png", "bad"),
    ("other", "upscale a non-square input", None, "upscale {pddpm} {low}/narrow.png --scale 2 --out {out}/u.png", "bad"),
    ("other", "upscale an RGB input for a grey model", None, "upscale {pddpm} {low}/rgb.png --scale 2 --out {out}/u.png", "bad"),
    ("other", "upscale an empty folder", None, "upscale {pddpm} {empty} --scale 2 --out {out}/u", "bad"),
    ("other", "upscale a UDPM model", None, "upscale {run} {low}/grey.png --scale 2 --out {out}/u.png", "bad"),
    ("other", "latents of the wrong shape", None, "sample {run} --latents {latents}/wrong_shape.pt --out {out}/a.png", "bad"),
    ("other", "latents with observation noise for a box kernel", None, "sample {run} --latents {latents}/obs_for_box.pt --out {out}/a.png", "bad"),
    ("other", "bool latents map", None, "sample {run} --latents {latents}/bool_map.pt --out {out}/a.png", "bad"),
    ("other", "complex latents map", None, "sample {run} --latents {latents}/complex_map.pt --out {out}/a.png", "bad"),
    ("other", "truncated latents file", None, "sample {run} --latents {latents}/truncated.pt --out {out}/a.png", "bad"),
    ("other", "JSON as a latents file", None, "sample {run} --latents {latents}/json.pt --out {out}/a.png", "bad"),
    ("other", "latents for DDPM", None, "sample {ddpm} --latents {latents}/good.pt --out {out}/a.png", "bad"),
    # valid inputs that must work
    ("valid", "upscale a grey-palette PNG", None, "upscale {pddpm} {low}/palette.png --scale 2 --out {out}/u.png", "ok"),
    ("valid", "upscale a 16-bit grey PNG", None, "upscale {pddpm} {low}/grey16.png --scale 2 --out {out}/u.png", "ok"),
    ("valid", "replay good latents", None, "sample {run} --latents {latents}/good.pt --out {out}/a.png", "ok"),
    ("valid", "sample the crafted-free bundle", None, "sample {bundle} --n 2 --out {out}/a.png", "ok"),
    ("valid", "resume on the same data", None, "train {recipe} --run-dir {copy_run} --resume --set run.steps=3 --set run.checkpoint_every=3", "ok"),
    # the C++ app (fastgen-cpp-sample, built as the README says): the same bundles and rules
    ("5 seeds", "app: seed 2**64", None, "cpp {bundle} --seed 18446744073709551616 --out {out}/a.png", "bad"),
    ("5 seeds", "app: seed -1", None, "cpp {bundle} --seed -1 --out {out}/a.png", "bad"),
    ("5 seeds", "app: seed 1e3", None, "cpp {bundle} --seed 1e3 --out {out}/a.png", "bad"),
    ("2 sizes", "app: --n 0", None, "cpp {bundle} --n 0 --out {out}/a.png", "bad"),
    ("2 sizes", "app: --n 10**12 (out of memory)", None, "cpp {bundle} --n 1000000000000 --out {out}/a.png", "bad"),
    ("2 sizes", "app: buffer overflowing int64", program_edit(lambda p: p["buffers"].update(junk=[2**62, 2**62])), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("2 sizes", "app: 10**6-step chain, T = 1000", program_edit(chain_of(10**6), "ddpm_bundle"), "cpp {ddpm_bundle} --n 1 --out {out}/a.png", "bad"),
    ("4 app outputs", "app: --out over the manifest", None, "cpp {bundle} --out {bundle}/manifest.json", "bad"),
    ("4 app outputs", "app: --npy over a graph", None, "cpp {bundle} --out {out}/a.png --npy {bundle}/level_1.onnx", "bad"),
    ("4 app outputs", "app: --out with a .jpg suffix", None, "cpp {bundle} --out {out}/a.jpg", "bad"),
    ("4 app outputs", "app: --out in a missing folder", None, "cpp {bundle} --out {out}/missing/a.png", "bad"),
    ("4 app outputs", "app: --npy named .png", None, "cpp {bundle} --out {out}/a.png --npy {out}/a.png", "bad"),
    ("3 nesting", "app: manifest nested 300k", manifest_nested("model", 300_000), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("3 nesting", "app: program unclosed 300k", raw_file("bundle/program.json", lambda: "[" * 300_000, "bundle"), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "app: program kx NaN", program_edit(set_op(2, kx=float("nan"))), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("1 non-finite", "app: program kp 1e999", program_edit(set_op(4, kp=4321.5), text=lambda t: t.replace("4321.5", "1e999")), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "app: program output 4×4", program_edit(lambda p: p.update(output="x_2")), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("6 program⟂manifest", "app: program ../outside with --no-verify", manifest_edit(lambda m: m.update(program="../outside.json")), "cpp {bundle} --no-verify --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "app: precision int4", manifest_edit(lambda m: m.update(precision="int4")), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("7 range/enums", "app: input dtype int8", manifest_edit(lambda m: m["sites"][1]["inputs"][0].update(dtype="int8")), "cpp {bundle} --n 1 --out {out}/a.png", "bad"),
    ("valid", "app: sample the bundle", None, "cpp {bundle} --n 2 --out {out}/a.png --npy {out}/a.npy", "ok"),
]
APP = ROOT / "build" / "export" / "fastgen-cpp-sample"


def classify(code: int | None, err: str, app: bool = False) -> str:
    if code is None or code < 0:
        return "crash/hang"
    if app:  # the C++ app: exit 1 (runtime) or 2 (arguments), one error line (its progress line before, usage after)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        return "silent" if code == 0 else "clear" if code in (1, 2) and len(errors) == 1 else "traceback"
    if "Traceback" in err:
        return "traceback"
    if code == 0:
        return "silent"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if code == 2 and len(errors) == 1 and lines[-1] == errors[0]:
        return "clear"
    return "traceback"  # any other exit: not the one-line contract


def snapshot(folder: Path) -> dict[str, tuple]:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON of every case's result")
    parser.add_argument("--only", default=None, help="run the cases whose name holds one of these (comma-separated)")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="bad20-") as temp:
        temp = Path(temp)
        env["FASTGEN_CACHE"] = str(temp / "cache")
        os.environ["FASTGEN_CACHE"] = env["FASTGEN_CACHE"]
        world = build_world(temp / "world")
        results = []
        for klass, name, damage, command, expect in CASES:
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            case_dir = temp / f"case{len(results)}"
            base = Path(shutil.copytree(world["base"], case_dir / "world", symlinks=True)) if damage or "{copy_run}" in command else world["base"]
            if damage:
                damage(base)
            out = case_dir / "out"
            out.mkdir(parents=True)
            paths = {**world, **({key: base / value.relative_to(world["base"]) for key, value in world.items()
                                 if key != "recipe" and value.is_relative_to(world["base"])} if base != world["base"] else {})}  # fmt: skip
            paths["base"], paths["copy_run"], paths["out"] = base, base / "udpm", out
            before, cache_before = snapshot(base), snapshot(temp / "cache") if (temp / "cache").exists() else {}
            argv = [part.format(**paths) for part in command.split()]
            if argv[0] in ("sample", "upscale", "eval"):
                argv += ["--device", "cpu"]
            app = argv[0] == "cpp"
            if app and not APP.is_file():
                print(f"-- [{klass}] {name}: skipped ({APP} not built)", flush=True)
                continue
            began = time.monotonic()
            try:
                program = [str(APP), *argv[1:]] if app else [sys.executable, "-m", "fastgen", *argv]
                done = subprocess.run(program, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=out)
                code, err = done.returncode, done.stderr
            except subprocess.TimeoutExpired as expired:
                code, err = None, (expired.stderr or b"").decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
            seconds = time.monotonic() - began
            verdict = classify(code, err, app)
            wrote = (snapshot(base) != before and expect == "bad") or (expect == "bad" and any(out.iterdir()))
            lines = [l for l in err.strip().splitlines() if l.strip()]
            line = next((l for l in lines if l.startswith("error: ")), lines[-1]) if app and lines else lines[-1] if lines else ""
            results.append({"class": klass, "case": name, "expect": expect, "verdict": verdict, "exit": code, "wrote": wrote,
                            "seconds": round(seconds, 1), "last_line": line[:300]})  # fmt: skip
            flag = "ok" if (verdict == "clear") == (expect == "bad") and (expect == "bad" or code == 0) else "!!"
            print(f"{flag} [{klass}] {name}: {verdict} (exit {code}, {seconds:.0f} s){' WROTE' if wrote else ''} | {line[:160]}", flush=True)
            if base != world["base"]:
                shutil.rmtree(case_dir / "world", ignore_errors=True)
    table: dict[str, Counter] = defaultdict(Counter)
    for result in results:
        key = result["verdict"] if result["expect"] == "bad" else ("ok" if result["exit"] == 0 else "false refusal")
        table[result["class"]][key] += 1
        table["all bad inputs" if result["expect"] == "bad" else "all valid inputs"][key] += 1
    print()
    for klass, counts in table.items():
        print(f"{klass:>22}: " + ", ".join(f"{key} {value}" for key, value in sorted(counts.items())))
    written = [r["case"] for r in results if r["wrote"]]
    print(f"{'wrote something':>22}: {len(written)} {written if written else ''}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "counts": {k: dict(v) for k, v in table.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
