"""Rebuild docs/benchmarks.md from the markdown sections the benchmarks wrote to bench/results/.

    python bench/collect.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = [
    "ingest",
    "loop",
    "pages",
    "scoring",
    "encoders",
    "train_modes",
    "train_modes_gpu",
    "noise",
    "noise_gpu",
    "active_learning",
    "drift",
    "labelstudio",
]
HEAD = """# Benchmarks

Every number here comes from a script in `bench/` that prints a table and writes JSON to `bench/results/`;
the command is given with each table, and `python bench/collect.py` rebuilds this page from those results.
The machine is the project's standard one: **2 CPU cores, 24 GiB, no GPU** (x86_64). Dates are UTC. Several
tables were measured while other work shared the two cores; they say so, and wherever a target is a ratio,
both sides were measured in the same run.
"""


def main() -> None:
    sections = []
    for name in ORDER:
        path = ROOT / "bench" / "results" / f"{name}.md"
        if path.exists():
            text = path.read_text().strip()
            sections.append(text if text.startswith("## ") else f"## {name}\n\n{text}")
    (ROOT / "docs" / "benchmarks.md").write_text(HEAD + "\n" + "\n\n".join(sections) + "\n")
    print(f"docs/benchmarks.md: {len(sections)} sections")


if __name__ == "__main__":
    main()
