"""Lets torchvision import beside a torch build its compiled operators were not made for.

PyPI serves torchvision 0.28.0 built against CUDA torch 2.13.0; beside the CPU-only
torch==2.13.0+cpu of the test command its `_C.so` cannot load (it links `libc10_cuda.so`),
and torchvision's Python package then fails at import, registering fake kernels for its
`nms` / `qnms` operators that do not exist ("operator torchvision::nms does not exist").
timm imports torchvision (`timm.layers` takes `FrozenBatchNorm2d` from it), and so does
transformers' default image processor backend. Declaring the two operators' schemas lets
the Python package import; the ViT code under test (timm's `VisionTransformer`, its
`.npz` loader, its eval transforms on PIL images) calls no torchvision operator, and a
call to one of them raises (no kernel is registered).
"""

import importlib.util
import os

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None


def declare_missing_torchvision_ops():
    """Declares torchvision's `nms` / `qnms` schemas when its compiled operators cannot load; True if it did."""
    global _library
    spec = importlib.util.find_spec("torchvision")
    if spec is None or _library is not None:
        return False
    import torch

    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
        return False
    except OSError:
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
        return True
