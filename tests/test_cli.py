"""The CLI shell: `fastgen info` reports this machine truthfully; bad input is one line, not a traceback."""

import json
import subprocess
import sys

import torch
from typer.testing import CliRunner

from fastgen.cli import app

runner = CliRunner()


def test_info_json_reports_installed_versions() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    versions = {c["name"]: c["version"] for c in report["components"]}
    assert versions["torch"] == torch.__version__
    assert len(report["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for flavour in report["tensorrt_flavours"]:
        assert flavour in ("tensorrt", "tensorrt_rtx")
        assert versions[flavour] is not None
    try:
        import onnxruntime
    except ImportError:
        assert versions["onnxruntime"] is None
    else:
        assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()


def test_info_table_names_every_component() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for name in ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "nvcc", "TensorRT flavour"):
        assert name in result.output


def test_unknown_verb_is_a_usage_error_not_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "fastgen", "no-such-verb"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_fastgens_own_warnings_are_one_line(tmp_path) -> None:
    """`--resume` on a fresh run directory warns; the console shows it like an error, without file and source line."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parent.parent / "train" / "udpm_tiny.toml"
    proc = subprocess.run([sys.executable, "-m", "fastgen", "train", str(recipe), "--run-dir", str(tmp_path / "run"),
                           "--set", "run.steps=1", "--resume"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"warning: --resume: {tmp_path / 'run'} has no checkpoint yet, starting from step 0" in proc.stderr
    assert "UserWarning" not in proc.stderr and "loop.py" not in proc.stderr
