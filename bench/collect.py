"""Rebuild docs/benchmarks.md and docs/reliability.md from the sections the benchmarks wrote to bench/results/.

docs/reliability.md is bench/results/reliability_summary.md (the summary, written by hand) followed by
the results of the load, race, fault, hostile-input and security checks.

    python bench/collect.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = [
    "ingest",
    "loop",
    "rescore",
    "rebuild",
    "pages",
    "webhooks",
    "scoring",
    "encoders",
    "encoder_sizes",
    "train_modes",
    "train_modes_gpu",
    "noise",
    "noise_gpu",
    "active_learning",
    "al_sim",
    "al_sim_full",
    "drift",
    "drift_queue",
    "labelstudio",
    "formats",
]
HEAD = """# Benchmarks

Every number here comes from a script in `bench/` that prints a table and writes JSON to `bench/results/`;
the command is given with each table, and `python bench/collect.py` rebuilds this page from those results.
The machine is the project's standard one: **2 CPU cores, 24 GiB, no GPU** (x86_64). Dates are UTC. Several
tables were measured while other work shared the two cores; they say so, and wherever a target is a ratio,
both sides were measured in the same run.
"""


RELIABILITY_ORDER = ["load", "races", "faults", "hostile", "schemathesis", "security"]
RELIABILITY_HEAD = ROOT / "bench" / "results" / "reliability_summary.md"


def _sections(names: list[str]) -> list[str]:
    sections = []
    for name in names:
        path = ROOT / "bench" / "results" / f"{name}.md"
        if path.exists():
            text = path.read_text().strip()
            if text.startswith("# "):  # a page of its own: one level down under this page's title
                text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
            sections.append(text if text.startswith("## ") else f"## {name}\n\n{text}")
    return sections


def main() -> None:
    sections = _sections(ORDER)
    (ROOT / "docs" / "benchmarks.md").write_text(HEAD + "\n" + "\n\n".join(sections) + "\n")
    print(f"docs/benchmarks.md: {len(sections)} sections")
    if RELIABILITY_HEAD.exists():
        sections = _sections(RELIABILITY_ORDER)
        (ROOT / "docs" / "reliability.md").write_text(
            RELIABILITY_HEAD.read_text().strip() + "\n\n" + "\n\n".join(sections) + "\n"
        )
        print(f"docs/reliability.md: {len(sections)} sections")


if __name__ == "__main__":
    main()
