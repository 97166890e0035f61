from omnigen.flow.weighting.base import LossWeighting
from omnigen.flow.weighting.edit_region import EditRegionWeighting
from omnigen.flow.weighting.foreground import ForegroundWeighting
from omnigen.flow.weighting.uniform import UniformWeighting

__all__ = ["EditRegionWeighting", "ForegroundWeighting", "LossWeighting", "UniformWeighting"]
