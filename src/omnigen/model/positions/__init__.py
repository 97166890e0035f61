from omnigen.model.positions.base import PositionScheme
from omnigen.model.positions.omni import AxialRotary, OmniPositions
from omnigen.model.positions.sequential import SequentialPositions

__all__ = ["AxialRotary", "OmniPositions", "PositionScheme", "SequentialPositions"]
