from omnigen.flow.timesteps.base import TimestepSampler
from omnigen.flow.timesteps.logit_normal import LogitNormalTimesteps
from omnigen.flow.timesteps.uniform import UniformTimesteps

__all__ = ["LogitNormalTimesteps", "TimestepSampler", "UniformTimesteps"]
