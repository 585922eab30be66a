"""Reads, by domain (mirroring ``annotator.services``): each module's functions return querysets or plain data
in a bounded number of queries, and never write.

- ``access``: who may see what (project, example and project-row lookups with their 404/403 rules).
- ``projects``: a project's counts, label names and members.
- ``examples``: the filtered example list and one example with its history.
- ``export``: the streamed JSONL/CSV export.
- ``queue``: queue counts, leased items as people see them, the answer to undo.
- ``jobs``: job lookups and lists.
- ``models``: model versions, their holdout measurement and promotion decision, curves, the stopping signal.
- ``noise``: the noise report, the detector's measured precision, settled flags.
- ``consensus``: answers of several annotators next to the consensus, and agreement rates.
- ``health``: conflicting near-duplicates, outliers and class health.
- ``drift``: drift windows and alerts.
"""
