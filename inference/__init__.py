"""TensorFlow-free inference core: decoding, preprocessing, ONNX Runtime sessions, registry, batching.

Imports only numpy, Pillow and onnxruntime (a test enforces that TensorFlow never loads from here).
"""

from .errors import ImgServeError, InvalidInput, NotFound, Overloaded
from .metadata import ModelCard, Preprocessing, TensorSpec
from .registry import Registry

__all__ = [
    "ImgServeError",
    "InvalidInput",
    "ModelCard",
    "NotFound",
    "Overloaded",
    "Preprocessing",
    "Registry",
    "TensorSpec",
]
