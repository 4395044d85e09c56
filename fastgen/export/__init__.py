"""``fastgen export``: a checkpoint becomes a deployable bundle (ONNX graphs + optional TensorRT engines + manifest).

See :mod:`fastgen.export.manifest` for the bundle layout and :mod:`fastgen.runtime` for loading one.
"""

from fastgen.export.bundle import ExportReport, SiteReport, export_bundle
from fastgen.export.check import CheckRow
from fastgen.export.command import export_command, parse_batch
from fastgen.export.manifest import (
           BatchRange,
           EngineRecord,
           Manifest,
           SiteRecord,
           read_manifest,
)
from fastgen.export.onnx_export import PRECISIONS, GraphValidation, relative_error
from fastgen.export.tensorrt import TensorRTEngine, engine_problem, import_tensorrt

__all__ = ["PRECISIONS", "BatchRange", "CheckRow", "EngineRecord", "ExportReport", "GraphValidation", "Manifest", "SiteRecord",
           "SiteReport", "TensorRTEngine", "engine_problem", "export_bundle", "export_command", "import_tensorrt", "parse_batch",
           "read_manifest", "relative_error"]  # fmt: skip
