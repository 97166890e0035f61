from omnigen.model.masks.base import MaskStrategy, SequenceLayout
from omnigen.model.masks.causal import CausalMask
from omnigen.model.masks.full import FullMask
from omnigen.model.masks.omnigen import OmniGenMask
from omnigen.model.masks.prefix_lm import PrefixLMMask

__all__ = ["CausalMask", "FullMask", "MaskStrategy", "OmniGenMask", "PrefixLMMask", "SequenceLayout"]
