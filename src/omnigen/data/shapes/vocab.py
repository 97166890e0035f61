"""Closed word-level tokenizer for the Shapes-X2I grammar.

The vocabulary is derived from the grammar's templates and palettes (every family's
instruction templates: tasks.INSTRUCTION_TEMPLATES), so adding a colour or a template
updates it. Ids: the special tokens first, in SPECIAL_TOKENS order (fixed), then the
words sorted (a new word shifts the ids of the words after it). A test checks the shipped
tokenizer.json still matches (regenerate with `python -m omnigen.data.shapes.vocab`).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from omnigen.data.shapes.tasks import FILLER_PHRASES, INSTRUCTION_TEMPLATES
from omnigen.data.shapes.world import (
    BACKGROUND_COLOURS,
    LAYOUT_PHRASE,
    LIST_LAST_SEPARATOR,
    LIST_SEPARATOR,
    POSITIONS,
    SCENE_PHRASE,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    SHAPE_PHRASE,
    SIZES,
)

# Order fixes the ids; "<pad>" must be 0 because padded batches are zero-filled.
SPECIAL_TOKENS: list[str] = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|end|>", "<|assistant|>", "<img>", "</img>"]
UNK_TOKEN = "<unk>"
TOKENIZER_PATH = Path(__file__).with_name("tokenizer.json")
EXTRA_SYMBOLS: tuple[str, ...] = (",", ".", *string.digits)

# Mirrors the pre-tokenizer below: runs of letters, single digits, single punctuation marks.
_WORD = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _template_literals(template: str) -> str:
    return " ".join(literal for literal, _, _, _ in string.Formatter().parse(template))


def vocabulary() -> list[str]:
    """Every word the caption and instruction grammars can emit, plus ',' '.' and digits."""
    templates = [SHAPE_PHRASE, LAYOUT_PHRASE, SCENE_PHRASE, LIST_SEPARATOR, LIST_LAST_SEPARATOR, *INSTRUCTION_TEMPLATES]
    fillers = [*SHAPE_COLOURS, *BACKGROUND_COLOURS, *SHAPE_KINDS, *SIZES, *POSITIONS, *FILLER_PHRASES]
    words: set[str] = set(EXTRA_SYMBOLS)
    for text in [*(_template_literals(t) for t in templates), *fillers]:
        words |= _words(text)
    return sorted(words)


def build_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *vocabulary()])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    # Registered as added tokens so they match atomically, before normalisation
    # and pre-tokenisation, even with no surrounding whitespace ("<img></img>").
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    # WordPiece with no "##" words in the vocab just joins with spaces; cleanup
    # re-attaches punctuation ("circle ," -> "circle,").
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tokenizer


def load_shapes_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_PATH),
        pad_token="<pad>",
        unk_token=UNK_TOKEN,
        bos_token="<s>",
        eos_token="</s>",
    )


def main() -> None:
    build_tokenizer().save(str(TOKENIZER_PATH), pretty=True)
    print(f"wrote {TOKENIZER_PATH} ({len(SPECIAL_TOKENS) + len(vocabulary())} tokens)")


if __name__ == "__main__":
    main()
