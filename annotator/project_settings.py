"""Project settings: one typed definition of every setting (name, type, default, validation, one-line doc) that
the model (``Project.setting``), the services (``services.projects``) and the API read, and that
``docs/api.md``'s settings table is checked against (``tests/annotator/test_project_settings.py``).

A project row stores only what its admins changed (``Project.settings``); every other setting reads its default
from here, so a changed default reaches every project that did not set its own value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings

from annotator.errors import InvalidInput
from annotator.text import unicode_problem
from training.modes import MODES as TRAIN_MODES

QUEUE_REASONS = ("uncertain", "suspect", "drift", "random")
QUERY_STRATEGIES = ("entropy", "margin", "least_confidence", "random")
DRIFT_REFERENCES = ("pool", "production_baseline")
PROMOTION_POLICIES = ("auto", "manual")
#: training.encoder.POOLINGS, repeated so that reading settings needs no PyTorch (a test keeps them equal).
POOLINGS = ("mean", "cls")
GUIDELINES_MAX = 50_000


@dataclass(frozen=True)
class Setting:
    """One project setting. ``kind`` decides the validation: ``integer`` (``low``..``high``), ``boolean``,
    ``choice`` (one of ``choices``), ``encoder`` (a name from the operator's allow-list, settings.ENCODERS;
    services.encoders checks the directory itself), ``text`` (at most ``max_chars``, storable Unicode) or ``queue_mix``
    (a share from 0 to 1 per queue reason, not all 0)."""

    name: str
    kind: str
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    max_chars: int | None = None

    def errors(self, value: Any, field: str) -> list[dict[str, Any]]:
        """The 400 errors for ``value`` (empty when it is valid), each naming ``field``."""
        if self.kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool) or not self.low <= value <= self.high:
                return [{"field": field, "message": f"must be an integer from {self.low} to {self.high}"}]
        elif self.kind == "boolean":
            if not isinstance(value, bool):
                return [{"field": field, "message": "must be true or false"}]
        elif self.kind == "choice":
            if value not in self.choices:
                return [{"field": field, "message": f"must be one of {', '.join(self.choices)}"}]
        elif self.kind == "encoder":
            names = encoder_names()
            if not isinstance(value, str) or value not in names:
                return [{"field": field, "message": f"must be one of the encoders the operator lists: {', '.join(names)} "
                                                    "(a name, not a path; docs/encoders.md says how to add one)"}]
        elif self.kind == "text":
            if not isinstance(value, str) or len(value) > self.max_chars:
                return [{"field": field, "message": f"must be a string of at most {self.max_chars:,} characters"}]
            if unicode_problem(value):
                return [{"field": field, "message": "must not contain NUL characters or lone surrogates"}]
        elif self.kind == "queue_mix":
            return _queue_mix_errors(value, field)
        return []

    @property
    def type_doc(self) -> str:
        """The accepted values, as ``docs/api.md`` writes them."""
        if self.kind == "integer":
            return f"integer, {self.low:,} to {self.high:,}"
        if self.kind == "choice":
            return "one of " + ", ".join(f"`{c}`" for c in self.choices)
        if self.kind == "encoder":
            return "a name from the operator's encoder list (docs/encoders.md)"
        if self.kind == "text":
            return f"text, at most {self.max_chars:,} characters"
        if self.kind == "queue_mix":
            return "object: a share from 0 to 1 per reason (" + ", ".join(f"`{r}`" for r in QUEUE_REASONS) + "), not all 0"
        return "true or false"

    @property
    def default_doc(self) -> str:
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, dict):
            return ", ".join(f"{k} {v}" for k, v in self.default.items())
        if isinstance(self.default, int):
            return f"{self.default:,}"
        return f"`{self.default}`" if self.default else "empty"


def encoder_names() -> list[str]:
    """The encoders projects may name, sorted (settings.ENCODERS: the bundled MiniLM and the operator's)."""
    return sorted(django_settings.ENCODERS)


def _queue_mix_errors(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not value:
        return [{"field": field, "message": f"must be an object of shares for {', '.join(QUEUE_REASONS)}"}]
    errors = []
    for reason, share in value.items():
        if reason not in QUEUE_REASONS:
            errors.append({"field": f"{field}.{reason}", "message": f"unknown reason; use {', '.join(QUEUE_REASONS)}"})
        elif (not isinstance(share, int | float) or isinstance(share, bool) or not math.isfinite(share)
              or not 0 <= share <= 1):
            errors.append({"field": f"{field}.{reason}", "message": "must be a number from 0 to 1"})
    if not errors and sum(value.values()) <= 0:
        errors.append({"field": field, "message": "at least one share must be above 0"})
    return errors


SETTINGS: tuple[Setting, ...] = (
    Setting("max_text_chars", "integer", 20_000, "Longest text accepted at import and push (characters).",
            low=1, high=1_000_000),
    Setting("lease_seconds", "integer", 600, "How long a leased queue item stays with one annotator.",
            low=10, high=7 * 24 * 3600),
    Setting("drift_window_size", "integer", 200, "Production samples per drift window.", low=5, high=100_000),
    Setting("drift_reference", "choice", "pool",
            "What production windows are compared with: the pool the version scored, or the first production "
            "window it checked (services/drift_reference.py).", choices=DRIFT_REFERENCES),
    Setting("overlap", "integer", 1, "How many annotators see each queued item (more than 1 measures agreement).",
            low=1, high=10),
    Setting("retrain_after_labels", "integer", 0, "Retrain automatically after this many new labels; 0 turns it off.",
            low=0, high=10_000_000),
    Setting("show_suggestions", "boolean", True, "Annotators see the model's suggestion (and a suspect item's "
                                                 "suggested label)."),
    Setting("queue_size", "integer", 500, "Items kept ready in the queue after each scoring.", low=0, high=1_000_000),
    Setting("queue_mix", "queue_mix", {"uncertain": 0.6, "suspect": 0.25, "drift": 0.1, "random": 0.05},
            "Shares of the queue by reason (the suspect share adapts to the detector's measured precision)."),
    Setting("query_strategy", "choice", "entropy",
            "How the uncertain share is ranked (training.query); entropy is still stored and shown for every item.",
            choices=QUERY_STRATEGIES),
    Setting("diversity", "boolean", True,
            "Spread each uncertain batch over embedding space (k-means over the top candidates)."),
    Setting("train_mode", "choice", "auto", "The training mode; `auto` picks it by labeled-set size.",
            choices=tuple(TRAIN_MODES)),
    Setting("promotion", "choice", "auto",
            "`auto`: a new version serves unless a paired bootstrap on the holdout shows it worse than the serving "
            "one; `manual`: only people promote (the first version still serves).", choices=PROMOTION_POLICIES),
    Setting("encoder", "encoder", "minilm",
            "The encoder the next version trains from (services.encoders checks its directory on save); a change "
            "starts fresh: embeddings are cached per encoder fingerprint."),
    Setting("pooling", "choice", "mean", "How token vectors become one text vector: masked mean or [CLS].",
            choices=POOLINGS),
    Setting("max_length", "integer", 256,
            "Model input length: texts are truncated to this many tokens (at most the encoder's positions).",
            low=8, high=8192),
    Setting("webhook_queue_low", "integer", 20,
            "Webhooks subscribed to `queue.low` are told when the pending queue falls below this many items "
            "(once per crossing); 0 turns it off.", low=0, high=1_000_000),
    Setting("guidelines", "text", "", "Labeling guidelines shown to annotators on the annotate page.",
            max_chars=GUIDELINES_MAX),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def default(name: str) -> Any:
    """The default of setting ``name`` (a copy: a caller may change it)."""
    return copy.deepcopy(BY_NAME[name].default)


def effective_settings(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every setting, in definition order: the stored value where a project changed it, else the default."""
    stored = stored or {}
    return {s.name: copy.deepcopy(stored[s.name]) if s.name in stored else default(s.name) for s in SETTINGS}


def validate_settings(raw: Any) -> dict[str, Any]:
    """The changes in ``raw`` (a JSON object of setting -> value), or InvalidInput naming each bad field
    (``settings.<name>``, ``settings.queue_mix.<reason>``)."""
    if not isinstance(raw, dict):
        raise InvalidInput([{"field": "settings", "message": "settings must be an object"}])
    errors: list[dict[str, Any]] = []
    for name, value in raw.items():
        field = f"settings.{name}"
        setting = BY_NAME.get(name)
        if setting is None:
            errors.append({"field": field, "message": f"unknown setting; known settings: {', '.join(sorted(BY_NAME))}"})
        else:
            errors.extend(setting.errors(value, field))
    if errors:
        raise InvalidInput(errors)
    return dict(raw)


def stored_settings(stored: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """What a project row keeps after ``changes`` (validated): only values that differ from their default
    (setting a value back to its default removes it, so the project follows the default again)."""
    merged = {**(stored or {}), **changes}
    return {name: value for name, value in merged.items() if name not in BY_NAME or value != BY_NAME[name].default}


def documentation_table() -> str:
    """The settings table of ``docs/api.md``, written from the definition."""
    lines = ["| setting | accepted values | default | what it does |", "| --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {s.type_doc} | {s.default_doc} | {s.doc} |" for s in SETTINGS]
    return "\n".join(lines) + "\n"
