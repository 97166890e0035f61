"""A prefix-LM mask: the condition reads itself both ways; what is generated reads everything.

The paper's mask keeps text causal, as the LLM was pre-trained; this one lets every condition token
(text and input images) see the whole condition, so a word can gather the words after it ("a red
circle at the top left": "circle" learns where it is). The time token and the output image see the
whole sample. Nothing in the condition sees the time token or the output, so the prefix is
independent of the step and the kv-cache holds: the cacheable form of full attention.
"""

from torch import Tensor

from omnigen.model.masks.base import MaskMod, MaskStrategy, SequenceLayout, same_sample


class PrefixLMMask(MaskStrategy):
    prefix_independent = True

    def mask_mod(self, layout: SequenceLayout) -> MaskMod:
        sample, generating = same_sample(layout), layout.generating()

        def rule(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return sample(b, h, q, kv) & (generating[b, q] | ~generating[b, kv])

        return rule
