from omnigen.flow.weighting.base import LossWeighting
from omnigen.flow.weighting.edit_region import EditRegionWeighting
from omnigen.flow.weighting.uniform import UniformWeighting

__all__ = ["EditRegionWeighting", "LossWeighting", "UniformWeighting"]
