"""Instruction + images -> token ids, image spans and the sequence layout the mask reads.

Prompts follow the released OmniGen format: input image i is written `<img><|image_i|></img>`;
the `<|image_i|>` part is replaced by that image's patch tokens, `<img>`/`</img>` stay as text.
Ids must be 1..n with no gap, one per given image (an id may repeat to reuse an image).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from omnigen.model.masks.base import SequenceLayout
from omnigen.utils.cli import UserError

IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")
WRAPPED_IMAGE_TAG = re.compile(r"<img><\|image_(\d+)\|></img>")
MALFORMED_TAG = re.compile(r"<\|image_(?!\d+\|>)[^>]*>")
DEFAULT_TEMPLATE = "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"
# The released OmniGen-v1's prompt (Phi-3 chat format); use it with the released weights.
RELEASE_TEMPLATE = (
    "<|user|>\nGenerate an image according to the following instructions\n{instruction}<|end|>\n"
    "<|assistant|>\n<|diffusion|>"
)


class PromptError(UserError):
    """An instruction and its images do not fit together; the message says how (a ValueError, as every
    UserError)."""


Grid = int | tuple[int, int]  # an image's patch tokens: their count, or its (rows, columns) of tokens


def grid_tokens(grid: Grid) -> tuple[int, int]:
    """(number of tokens, width in tokens; 0 when only the count is known)."""
    if isinstance(grid, int):
        return grid, 0
    rows, columns = grid
    return rows * columns, columns


@dataclass(frozen=True)
class Prompt:
    input_ids: list[int]
    image_spans: list[tuple[int, int, int]]  # (start, end, image index), in order of position
    image_widths: tuple[int, ...] = ()  # width in tokens of image index i (0: unknown)


@dataclass(frozen=True)
class PromptBatch:
    input_ids: Tensor  # (B, Lc) left-padded condition ids
    image_token_mask: Tensor  # (B, Lc) True where an input-image token goes
    layout: SequenceLayout  # the whole sequence [condition | time | output], (B, Lc + 1 + N)
    image_order: list[tuple[int, int]]  # (sample, image index) filling each span, row-major


@dataclass(frozen=True)
class PackedBatch:
    """Samples packed several to a row, `[cond_1 | time_1 | out_1 | cond_2 | time_2 | out_2 | ... | pad]`,
    each sample attending only to itself and with positions restarting at 0.

    Flat positions index the (R·L) tokens row-major; sample order is the order given to `pack`.
    """

    input_ids: Tensor  # (R, L) text ids; the pad id on image, time, output and padding positions
    image_token_mask: Tensor  # (R, L) True where an input-image token goes
    layout: SequenceLayout  # packed: segment_ids set, num_output_tokens 0
    image_order: list[tuple[int, int]]  # (sample, image index) filling each input span, row-major
    time_index: Tensor  # (S,) flat position of each sample's time token
    output_index: Tensor  # (ΣN,) flat positions of the output tokens, sample after sample
    output_tokens: list[int]  # N of each sample
    sample_lengths: list[int]  # tokens of each sample, [condition | time | output]

    @property
    def num_tokens(self) -> int:
        """Tokens of all samples, padding excluded."""
        return sum(self.sample_lengths)

    @property
    def padding_waste(self) -> float:
        """Share of the batch's token slots that are padding (from the lengths: no device read)."""
        rows, length = self.input_ids.shape
        return 1.0 - self.num_tokens / (rows * length)

    @property
    def unpacked_padding_waste(self) -> float:
        """The same share had the samples been padded one per row to the longest."""
        return 1.0 - self.num_tokens / (len(self.sample_lengths) * max(self.sample_lengths))


def row_compute(rows: int, length: int, pair_cost: float) -> float:
    """Estimated compute of `rows` rows of `length` tokens, in units of one token's Linear work:
    R·(L + pair_cost·L²), dense attention costing `pair_cost` per (query, key) pair."""
    return rows * (length + pair_cost * length**2)


def balanced_rows(lengths: list[int], max_tokens: int | None, pair_cost: float = 0.0) -> list[list[int]]:
    """Sample indices per row: one per row without a budget; else rows of at most `max_tokens` (or
    the longest sample, if longer), each sample placed longest-first into the shortest row so the
    rows end up even (little padding).

    The number of rows minimises the estimated compute (`row_compute`) of R rows padded to L:
    per-token work (the Linear layers) against per-pair work (dense attention, `pair_cost` per
    token pair relative to one token). Merging samples removes padding but lengthens rows, so
    with pair_cost > 0 equal-length samples stay one per row."""
    if max_tokens is None:
        return [[i] for i in range(len(lengths))]
    if max_tokens < 1:
        raise ValueError(f"the packing budget must be >= 1 token per row, got {max_tokens}")
    max_tokens = max(max_tokens, *lengths)  # a sample over the budget gets a row to itself
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best: tuple[float, list[list[int]]] | None = None
    for num_rows in range(-(-sum(lengths) // max_tokens), len(lengths) + 1):
        rows: list[list[int]] = [[] for _ in range(num_rows)]
        totals = [0] * num_rows
        for i in order:
            r = totals.index(min(totals))
            rows[r].append(i)
            totals[r] += lengths[i]
        length = max(totals)
        cost = row_compute(num_rows, length, pair_cost)
        if length <= max_tokens and (best is None or cost < best[0]):
            best = (cost, [sorted(row) for row in rows if row])
    assert best is not None  # one sample per row always fits: every length <= max_tokens
    return best[1]


def placeholder_ids(instruction: str) -> list[int]:
    """The image ids of `instruction`, in order of appearance, after validating their syntax."""
    if bad := MALFORMED_TAG.search(instruction):
        raise PromptError(f"malformed image placeholder {bad.group(0)!r}: write <img><|image_1|></img>, ...")
    ids = [int(m) for m in IMAGE_TAG.findall(instruction)]
    if len(WRAPPED_IMAGE_TAG.findall(instruction)) != len(ids):
        raise PromptError(f"every <|image_i|> must be wrapped as <img><|image_i|></img> in {instruction!r}")
    return ids


def drop_text(instruction: str) -> str:
    """Keep only the image placeholders (the image-conditional CFG branch)."""
    return " ".join(m.group(0) for m in WRAPPED_IMAGE_TAG.finditer(instruction))


def drop_images(instruction: str) -> str:
    """Remove the image placeholders, keeping the text."""
    return " ".join(WRAPPED_IMAGE_TAG.sub(" ", instruction).split())


class OmniGenProcessor:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        template: str = DEFAULT_TEMPLATE,
        max_condition_tokens: int | None = None,
        add_bos: bool = True,
    ) -> None:
        if "{instruction}" not in template:
            raise ValueError(f"prompt template must contain '{{instruction}}', got {template!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token")
        self.tokenizer, self.template = tokenizer, template
        self.max_condition_tokens, self.add_bos = max_condition_tokens, add_bos

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def tokenize(self, instruction: str, image_grids: list[Grid]) -> Prompt:
        """image_grids[i]: input image i + 1's patch tokens, as their (rows, columns) or only their count
        (position schemes with image axes need the grid)."""
        image_token_counts, widths = zip(*map(grid_tokens, image_grids), strict=True) if image_grids else ((), ())
        ids = placeholder_ids(instruction)
        unique = sorted(set(ids))
        if unique != list(range(1, len(unique) + 1)):
            raise PromptError(f"image ids must be 1..n without gaps, got {unique} in {instruction!r}")
        if len(unique) != len(image_token_counts):
            raise PromptError(
                f"instruction references {len(unique)} image(s) but {len(image_token_counts)} were given: "
                f"{instruction!r}"
            )
        chunks = IMAGE_TAG.split(self.template.format(instruction=instruction))  # text, id, text, id, ..., text
        input_ids = [self.tokenizer.bos_token_id] if self.add_bos and self.tokenizer.bos_token_id is not None else []
        spans = []
        for i, chunk in enumerate(chunks):
            if i % 2 == 0:
                input_ids += self._encode(chunk)
                continue
            index = int(chunk) - 1
            start = len(input_ids)
            # The placeholder id is never embedded: these positions take the image's patch tokens.
            input_ids += [self.tokenizer.pad_token_id] * image_token_counts[index]
            spans.append((start, len(input_ids), index))
        if self.max_condition_tokens is not None and len(input_ids) > self.max_condition_tokens:
            raise PromptError(
                f"prompt has {len(input_ids)} condition tokens, over the limit of "
                f"{self.max_condition_tokens}: {instruction[:80]!r}"
            )
        return Prompt(input_ids, spans, tuple(widths))

    def batch(self, prompts: list[Prompt], output: Grid, device: torch.device | str = "cpu") -> PromptBatch:
        """Left-pad the prompts and describe the full `[condition | time | output]` sequence; `output`:
        the output image's tokens (every sample's), as a grid or a count."""
        if not prompts:
            raise ValueError("cannot batch zero prompts")
        num_output_tokens, output_width = grid_tokens(output)
        prefix = max(len(p.input_ids) for p in prompts)
        length = prefix + 1 + num_output_tokens
        input_ids = torch.full((len(prompts), prefix), self.tokenizer.pad_token_id, dtype=torch.long)
        image_mask = torch.zeros(len(prompts), prefix, dtype=torch.bool)
        span_ids = torch.zeros(len(prompts), length, dtype=torch.long)
        widths = torch.zeros(len(prompts), length, dtype=torch.long)
        valid = torch.ones(len(prompts), length, dtype=torch.bool)
        order = []
        for b, prompt in enumerate(prompts):
            pad = prefix - len(prompt.input_ids)
            input_ids[b, pad:] = torch.tensor(prompt.input_ids, dtype=torch.long)
            valid[b, :pad] = False
            for k, (start, end, index) in enumerate(prompt.image_spans, start=1):
                image_mask[b, pad + start : pad + end] = True
                span_ids[b, pad + start : pad + end] = k
                widths[b, pad + start : pad + end] = prompt.image_widths[index] if prompt.image_widths else 0
                order.append((b, index))
            span_ids[b, prefix + 1 :] = len(prompt.image_spans) + 1  # the output image is the last span
            widths[b, prefix + 1 :] = output_width
        layout = SequenceLayout(span_ids.to(device), valid.to(device), num_output_tokens, span_widths=widths.to(device))
        return PromptBatch(input_ids.to(device), image_mask.to(device), layout, order)

    def pack(
        self,
        prompts: list[Prompt],
        outputs: list[Grid],
        max_tokens: int | None = None,
        device: torch.device | str = "cpu",
        pair_cost: float = 0.0,
    ) -> PackedBatch:
        """Pack `[condition | time | output]` of each prompt into rows of at most `max_tokens`
        (None: one sample per row; `pair_cost`: see `balanced_rows`); rows are right-padded to the longest.
        `outputs`: each sample's output tokens, as a grid or a count."""
        if not prompts or len(prompts) != len(outputs):
            raise ValueError(
                f"pack needs one output size per prompt, got {len(prompts)} prompts and {len(outputs)} sizes"
            )
        output_tokens, output_widths = (list(column) for column in zip(*map(grid_tokens, outputs), strict=True))
        if min(output_tokens) < 1 or pair_cost < 0:
            raise ValueError(f"output_tokens must all be >= 1 and pair_cost >= 0, got {output_tokens} and {pair_cost}")
        lengths = [len(p.input_ids) + 1 + n for p, n in zip(prompts, output_tokens, strict=True)]
        rows = balanced_rows(lengths, max_tokens, pair_cost)
        length = max(sum(lengths[i] for i in row) for row in rows)
        shape = (len(rows), length)
        input_ids = torch.full(shape, self.tokenizer.pad_token_id, dtype=torch.long)
        image_mask, valid = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
        span_ids, segment_ids = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
        widths = torch.zeros(shape, dtype=torch.long)
        time_index, outputs, order = [0] * len(prompts), [torch.empty(0, dtype=torch.long)] * len(prompts), []
        for r, row in enumerate(rows):
            start, span = 0, 0
            for segment, i in enumerate(row, start=1):
                prompt, end = prompts[i], start + lengths[i]
                condition_end = start + len(prompt.input_ids)
                input_ids[r, start:condition_end] = torch.tensor(prompt.input_ids, dtype=torch.long)
                for first, last, index in prompt.image_spans:
                    span += 1
                    image_mask[r, start + first : start + last] = True
                    span_ids[r, start + first : start + last] = span
                    widths[r, start + first : start + last] = prompt.image_widths[index] if prompt.image_widths else 0
                    order.append((i, index))
                span += 1
                span_ids[r, condition_end + 1 : end] = span  # the output image
                widths[r, condition_end + 1 : end] = output_widths[i]
                valid[r, start:end], segment_ids[r, start:end] = True, segment
                time_index[i] = r * length + condition_end
                outputs[i] = torch.arange(condition_end + 1, end) + r * length
                start = end
        layout = SequenceLayout(span_ids.to(device), valid.to(device), 0, segment_ids.to(device), widths.to(device))
        return PackedBatch(
            input_ids.to(device),
            image_mask.to(device),
            layout,
            order,
            torch.tensor(time_index, device=device),
            torch.cat(outputs).to(device),
            list(output_tokens),
            lengths,
        )


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a local directory (the shipped Shapes-X2I one: omnigen.data.shapes.load_shapes_tokenizer)."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path} (tokenizers load from local paths only)")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def tokenizer_to_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, bytes]:
    """The tokenizer's saved files as {name: bytes} (some are binary, e.g. sentencepiece), for a checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def tokenizer_from_files(files: dict[str, bytes]) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)
