"""A learned image-text reward, for data without programmatic ground truth: a CLIP-style model from a
local directory (transformers: a model with `get_image_features` / `get_text_features`, its tokenizer and
image processor, as `save_pretrained` writes them). The reward of an image is the cosine similarity of its
embedding and its instruction's, mapped from [−1, 1] to [0, 1]; the instruction's image placeholders
(`<img><|image_i|></img>`) are dropped, since the text model cannot read them.

    reward = ClipReward("/models/clip-vit-b32")
    values = reward(["a red circle at the top left"], [pixels])  # (B,) in [0, 1]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from omnigen.processor import WRAPPED_IMAGE_TAG
from omnigen.rl.rewards import RolloutSample
from omnigen.utils.cli import UserError, missing_path


class ClipReward:
    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        path = Path(path)
        if not path.is_dir():
            raise missing_path(path, "a directory holding a CLIP-style model, its tokenizer and image processor")
        try:  # local files only: nothing downloads at run time
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise UserError(f"{path} cannot be loaded as a CLIP-style reward model ({error})") from error
        if not all(hasattr(self.model, name) for name in ("get_image_features", "get_text_features")):
            raise UserError(f"{path} holds a {type(self.model).__name__}, which embeds no images and texts together")
        self.device = device

    @torch.no_grad()
    def __call__(self, instructions: list[str], images: list[np.ndarray]) -> Tensor:
        """(B,) rewards in [0, 1] for B (H, W, 3) uint8 images and their instructions."""
        if len(instructions) != len(images):
            raise ValueError(f"{len(instructions)} instructions for {len(images)} images")
        texts = [" ".join(WRAPPED_IMAGE_TAG.sub(" ", text).split()) for text in instructions]
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        text = embedding(
            self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        )
        image = embedding(self.model.get_image_features(pixel_values=pixels))
        cosine = torch.nn.functional.cosine_similarity(image, text, dim=-1)  # (B,)
        return ((cosine + 1) / 2).float().cpu()

    def score_batch(self, samples: list[RolloutSample], images: list[np.ndarray]) -> tuple[list[float], list[dict]]:
        """The reward plugin interface (omnigen.rl.rewards.ShapesReward.score_batch): reward and metrics per image."""
        values = self([s.instruction for s in samples], images).tolist()
        return values, [{"clip_score": value} for value in values]


def embedding(output: Tensor | object) -> Tensor:
    """The projected embedding, whether the model returns it as a tensor or inside an output object."""
    return output if isinstance(output, Tensor) else output.pooler_output
