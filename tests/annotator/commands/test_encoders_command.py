"""``manage.py encoders``: the operator tries the list before projects pick from it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command


def test_the_list_shows_each_encoders_figures(settings, tiny_encoder_dirs):
    settings.ENCODERS = {"minilm": settings.ENCODERS["minilm"], "tiny": tiny_encoder_dirs["tiny"]}
    out = io.StringIO()

    call_command("encoders", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("minilm\t") and "hidden size 384, 22,713,216 parameters, 6 layers" in lines[0]
    assert lines[1] == (f"tiny\t{tiny_encoder_dirs['tiny']}\tbert, hidden size 32, 21,760 parameters, 2 layers, "
                        "at most 64 tokens")


def test_a_broken_entry_is_named_and_the_command_fails(settings, tiny_encoder_dirs):
    settings.ENCODERS = {"minilm": settings.ENCODERS["minilm"], "no-weights": tiny_encoder_dirs["no-weights"]}
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 listed encoder.s. cannot be used: no-weights"):
        call_command("encoders", stdout=out)

    assert "no-weights\t" in out.getvalue() and "ERROR encoder 'no-weights' cannot be used: no weights" in out.getvalue()
