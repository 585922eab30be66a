"""The data of bench/al_sim.py: the BBC corpora (articles and headlines) split into a pool and an outside test
set, the seed labels with some flipped, and the simulated annotator."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from training.data import BBC_LABELS, load_bbc_news, stratified_split

LABELS = list(BBC_LABELS)
MAX_TEXT_CHARS = 20_000  # the product's default max_text_chars


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def load_corpus(name: str, *, test_fraction: float, pool_limit: int, test_limit: int) -> dict[str, Any]:
    """Deduplicated texts of one corpus split into a fixed pool and a fixed stratified test set."""
    texts, labels = load_bbc_news()
    if name == "headlines":
        texts = [first_line(t) for t in texts]
    elif name == "full":
        texts = [t[:MAX_TEXT_CHARS] for t in texts]
    else:
        raise SystemExit(f"unknown corpus {name!r}: full or headlines")
    seen: set[str] = set()
    items: list[tuple[str, str]] = []
    for text, label in zip(texts, labels, strict=True):
        if text and text not in seen:
            seen.add(text)
            items.append((text, label))
    rest, held = stratified_split([label for _, label in items], test_fraction, seed=0)
    pool = [items[i] for i in rest]
    test = [items[i] for i in held]
    rng = random.Random(f"subsample:{name}")
    if pool_limit and len(pool) > pool_limit:
        pool = rng.sample(pool, pool_limit)
    if test_limit and len(test) > test_limit:
        test = rng.sample(test, test_limit)
    return {"name": name, "n_articles": len(texts), "n_unique": len(items), "pool": pool, "test": test}


def other_label(rng: random.Random, label: str) -> str:
    return rng.choice([name for name in LABELS if name != label])


def seed_labels(pool: list[tuple[str, str]], n: int, flip: float, seed: int) -> tuple[dict[int, str], list[int]]:
    """About n / k seeds per class (the rest at random) -> {pool index: given label}, and the flipped ones."""
    rng = random.Random(f"seeds:{seed}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(pool):
        by_class[label].append(i)
    chosen: list[int] = []
    for label in LABELS:
        members = by_class[label]
        chosen += rng.sample(members, min(len(members), n // len(LABELS)))
    rest = sorted(set(range(len(pool))) - set(chosen))
    chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
    given = {i: pool[i][1] for i in chosen}
    flipped = sorted(rng.sample(sorted(chosen), round(flip * len(chosen))))
    for i in flipped:
        given[i] = other_label(rng, pool[i][1])
    return given, flipped


class Annotator:
    """The simulated annotator: the true label with probability ``accuracy``, another one otherwise. Its k-th
    answer on a pool example is a function of (seed, example, k) alone, so both arms hear the same answers."""

    def __init__(self, accuracy: float, seed: int) -> None:
        self.accuracy = accuracy
        self.seed = seed
        self.answers: Counter[int] = Counter()

    def answer(self, index: int, true_label: str) -> str:
        k = self.answers[index]
        self.answers[index] += 1
        rng = random.Random(f"annotator:{self.seed}:{index}:{k}")
        return true_label if rng.random() < self.accuracy else other_label(rng, true_label)

