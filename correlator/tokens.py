"""Pure: how many tokens a model will spend reading a text, estimated without a vocabulary.

Exact tokenizers need their vocabulary, and the well-kept one (tiktoken) downloads it on first
use, which a server behind a firewall cannot do. So this counts the pieces a BPE pre-tokenizer
cuts (letter runs, digit runs of at most three, symbol runs, line breaks) and charges each piece
what cl100k_base typically charges it, rounded up. Measured against tiktoken's cl100k_base on
our summaries and on raw Jaeger JSON (tests/test_tokens.py, docs/mcp.md): it never counts fewer
tokens than the real tokenizer there, and over-counts by about a fifth, which is the margin that
lets a budget hold for other vocabularies too.
"""

from __future__ import annotations

import re

__all__ = ["estimate_tokens"]

# Letters, digits, one symbol run (with its leading space), or a line break: the pieces
# cl100k_base's pre-tokenizer produces, close enough for counting.
_PIECES = re.compile(r" ?[^\W\d_]+| ?\d+|\n+| ?[^\w\s]+|_+|[^\S\n]+")
_LETTERS_PER_TOKEN = 4  # a long word or identifier splits into ~4-letter pieces
_SYMBOLS_PER_TOKEN = 2


def _piece_tokens(piece: str) -> int:
    text = piece.lstrip(" ")
    if not text:
        return 1
    first = text[0]
    if first.isalpha():
        if not text.isascii():
            return len(text.encode()) // 2 + 1  # non-Latin scripts: ~1 token per 2 bytes
        return (len(text) + _LETTERS_PER_TOKEN - 1) // _LETTERS_PER_TOKEN
    if first.isdigit():
        # cl100k splits digit runs into groups of three, and a space before digits is a token of its own.
        return (len(text) + 2) // 3 + (len(piece) - len(text))
    if first == "\n":
        return 1
    if first.isspace():
        return 1
    # Symbols: ASCII pairs often merge ('":', '},'); multi-byte ones (→, …, ─) cost a token or two each.
    size = len(text.encode())
    return (size + _SYMBOLS_PER_TOKEN - 1) // _SYMBOLS_PER_TOKEN


def estimate_tokens(text: str) -> int:
    """Tokens a model spends on `text` (cl100k_base-like), rounded up; 0 for an empty string."""
    return sum(_piece_tokens(piece) for piece in _PIECES.findall(text))
