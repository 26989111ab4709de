"""Batch neural style transfer: Gatys et al. over VGG-19 features, optimized with L-BFGS.

Data path: decode -> frames -> stylize (engine) -> encode.
"""

from pipeline.errors import StylizeError
from pipeline.settings import StyleSettings

__all__ = ["StyleSettings", "StylizeError"]
