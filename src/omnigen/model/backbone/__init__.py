from omnigen.model.backbone.base import Backbone, check_backbone
from omnigen.model.backbone.hf import backbone_architecture_config, build_hf_backbone

__all__ = ["Backbone", "backbone_architecture_config", "build_hf_backbone", "check_backbone"]
