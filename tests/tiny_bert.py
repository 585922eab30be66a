"""A tiny BERT model directory built on the fly (no download): 32 hidden, 2 layers, 2 heads, a WordPiece vocabulary
of a few dozen words (``vocab.txt`` and ``tokenizer.json``), saved with ``save_pretrained`` like any Hugging Face model directory.

Tests use it where an encoder other than the bundled MiniLM is needed (the per-project encoder setting): it loads
in milliseconds and embeds on the CPU at once. Different ``seed`` values give different weights, hence different
encoder fingerprints.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: The words the tiny vocabulary knows (anything else becomes [UNK]); the loop tests' texts are made of them.
WORDS = [
    "the", "a", "team", "won", "match", "goal", "coach", "league", "scored", "final",
    "chef", "baked", "bread", "soup", "kitchen", "cooked", "pasta", "sauce", "spicy", "garlic",
    "laptop", "chip", "software", "update", "server", "crashed", "faster", "memory", "cloud", "data",
    "today", "again", "new", "old", "big", "small", "very", "and", "with", "after",
]


def tiny_bert(directory: Path, *, seed: int = 0, max_positions: int = 64, weights: bool = True,
              tokenizer: bool = True) -> Path:
    """Write a tiny BERT model directory (``config.json``, ``model.safetensors``, tokenizer files) to ``directory``.

    ``weights=False`` or ``tokenizer=False`` leave those files out (a broken directory for the validation tests).
    Returns ``directory``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=len(SPECIAL_TOKENS) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=max_positions)
    torch.manual_seed(seed)
    model = BertModel(config)
    if weights:
        model.save_pretrained(directory, safe_serialization=True)
    else:
        config.save_pretrained(directory)
    if tokenizer:
        tokens = SPECIAL_TOKENS + WORDS
        (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")  # what BERT's slow tokenizer reads
        BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True).save_pretrained(
            directory)
    return directory


def parameter_count(directory: Path) -> int:
    """Parameters of the tiny model saved in ``directory`` (loaded the ordinary way, for comparison)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(directory, local_files_only=True)
    return sum(p.numel() for p in model.parameters())
