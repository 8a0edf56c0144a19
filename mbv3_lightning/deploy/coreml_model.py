"""Core ML: a network as an ``.mlpackage`` (ML program) for iOS and macOS apps.

coremltools converts anywhere, but only macOS can run the result, so off macOS the export is
written unverified and says so. Core ML's default precision for ML programs (float16, what
the Neural Engine runs) is kept; the model metadata also goes into the package's
``user_defined_metadata``, where Xcode shows it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from mbv3_lightning.deploy.predictor import ModelInfo
from mbv3_lightning.extras import require_extra

log = logging.getLogger(__name__)

SUFFIX = ".mlpackage"
INPUT_NAME, OUTPUT_NAME = "images", "logits"
# iOS 17 / macOS 14: the oldest target whose ML programs take a torch.export graph.
MINIMUM_TARGET = "iOS17"


def write_mlpackage(net: torch.nn.Module, info: ModelInfo, path: Path) -> None:
    """Convert the network (input ``images``, ``(1, 3, S, S)`` float) and save it at ``path``."""
    require_extra("mobile", "format=coreml", ("coremltools",))
    import coremltools as ct

    example = torch.zeros(1, 3, info.input_size, info.input_size)
    with torch.no_grad():
        program = torch.export.export(net.eval(), (example,)).run_decompositions({})
    model = ct.convert(
        program,
        inputs=[ct.TensorType(name=INPUT_NAME, shape=example.shape)],
        outputs=[ct.TensorType(name=OUTPUT_NAME)],
        minimum_deployment_target=getattr(ct.target, MINIMUM_TARGET),
    )
    model.user_defined_metadata.update(info.to_metadata())
    # An .mlpackage is a folder: built beside the target, then moved over it.
    partial = path.with_name(f".partial-{path.name}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save(str(partial))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
