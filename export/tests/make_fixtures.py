"""Writes the step-op fixtures of the kit's GoogleTest suite, made at test time by the Python reference.

For each case: CASE.json = {"program": <program JSON>, "seed": s, "batch": b} and CASE.f32 = the program's output
as little-endian float32, from fastgen.sampling's interpreter (float32, the Philox contract) over fake sites the
C++ test implements identically: a call site is 0.9 × nearest upsampling of its input; a denoising site (x, t)
returns 0.5·x + 0.001·t. Cases: every family's program (both UDPM kernels, both blur bases, DDPM ancestral and
DDIM with clipping, PDDPM) and single-op programs for what the families leave out (γ = 3 blocks, DCT noise).
Also a real bundle, udpm_bundle/ (a tiny UDPM network with jittered fresh weights, exported), and udpm_bundle.f32:
`fastgen sample`'s images of it (2 images, seed 5, one ONNX Runtime thread), for the C API's end-to-end test.

    python3 export/tests/make_fixtures.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from fastgen import api
from fastgen.api import model_config_from_recipe
from fastgen.export import export_bundle
from fastgen.families import build_family
from fastgen.runtime import load_bundle
from fastgen.sampling.interpreter import Interpreter
from fastgen.sampling.noise import RowKeys, philox_source, seed_rows
from fastgen.sampling.program import Call, DenoiseChain, Program

FAMILIES = {  # name: (family, diffusion fields, sampler options)
    "udpm_box": ("udpm", {}, {}),
    "udpm_gaussian": ("udpm", {"kernel": "gaussian"}, {}),
    "ddpm_ancestral": ("ddpm", {"num_steps": 12}, {}),
    "ddim_clip": ("ddpm", {"num_steps": 20}, {"sampler": "ddim", "steps": 4, "eta": 0.5, "clip_x0": True}),
    "blur_fourier": ("blur", {"num_steps": 6}, {}),
    "blur_dct": ("blur", {"num_steps": 6, "basis": "dct"}, {}),
    "pddpm": ("pddpm", {"num_steps": 20, "resolutions": [4, 8, 16]}, {"t_s": 10, "dt_s": 0.4}),
}


def family_program(family: str, diffusion: dict, options: dict) -> dict:
    model = {"family": family, "resolution": 16, "channels": 3, "network": {"preset": "tiny"}}
    config = model_config_from_recipe({"model": model, "diffusion": diffusion})
    return build_family(config).program(**options).to_dict()


def single_op_programs() -> dict[str, dict]:
    generator = np.random.default_rng(0)
    taps3 = generator.uniform(0.1, 0.5, (3, 3))
    taps3 /= np.linalg.norm(taps3)
    posterior = {"op": "udpm_posterior", "x": "low", "x_hat": "high", "out": "out", "taps": taps3.tolist(), "kx": 0.9, "kp": -0.3,
                 "ky": 0.7, "ke": 0.2, "kep": 0.05, "noisy": True}  # fmt: skip
    gamma3 = {"buffers": {"low": [2, 3, 4], "high": [2, 9, 12], "out": [2, 9, 12]},
              "ops": [{"op": "noise", "out": "low", "scale": 1.0, "filter": None},
                      {"op": "noise", "out": "high", "scale": 0.5, "filter": None}, posterior], "output": "out"}  # fmt: skip
    dct = {"buffers": {"x": [1, 6, 5], "y": [1, 12, 10], "z": [1, 12, 10]},
           "ops": [{"op": "noise", "out": "x", "scale": 0.8,
                    "filter": {"basis": "dct", "values": generator.uniform(0, 1, (6, 5)).tolist()}},
                   {"op": "upsample", "x": "x", "out": "y"},
                   {"op": "renoise", "x": "y", "out": "z", "signal": 0.6, "noise_scale": 0.8}], "output": "z"}  # fmt: skip
    return {"udpm_posterior_gamma3": gamma3, "dct_noise_upsample_renoise": dct}


def fake_sites(program: Program) -> dict:
    def call(x: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor:
        factor = out_shape[-1] // x.shape[-1]
        return 0.9 * x.repeat_interleave(factor, -2).repeat_interleave(factor, -1)

    sites = {}
    for op in program.ops:
        if isinstance(op, Call):
            shape = program.buffers[op.out]
            sites[op.site] = lambda x, shape=shape: call(x, shape)
        elif isinstance(op, DenoiseChain):
            sites[op.site] = lambda x, t: 0.5 * x + 0.001 * t.to(x.dtype)[:, None, None, None]
    return sites


def bundle_fixture(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from test_export import random_checkpoint  # the export tests' checkpoints

    checkpoint = random_checkpoint("udpm", out / "udpm_run", seed=3)
    bundle = export_bundle(checkpoint, out / "udpm_bundle", batch=(1, 2, 4), overwrite=True).bundle
    api.sample(load_bundle(bundle), 2, seed=5).numpy().astype("<f4").tofile(out / "udpm_bundle.f32")


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    programs = {name: family_program(*case) for name, case in FAMILIES.items()} | single_op_programs()
    for index, (name, data) in enumerate(programs.items()):
        data = {"format": "fastgen-program", "version": 1, **data}
        program = Program.from_dict(data)
        seed, batch = 1000 + index, 2
        with torch.inference_mode():
            images = Interpreter(program, batch).run(fake_sites(program), philox_source(RowKeys.of(seed_rows(seed, batch))))
        (out / f"{name}.json").write_text(json.dumps({"program": data, "seed": seed, "batch": batch}))
        images.numpy().astype("<f4").tofile(out / f"{name}.f32")
    bundle_fixture(out)
    print(f"{len(programs)} programs and a bundle in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
