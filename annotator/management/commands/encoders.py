"""``python manage.py encoders``: the operator's encoder list (settings.ENCODERS) with each directory checked as a
project's save would check it, so a new entry can be tried before anyone picks it (docs/encoders.md)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.project_settings import encoder_names
from annotator.services.encoders import encoder_describe


class Command(BaseCommand):
    help = "List the encoders projects may use, with hidden size, parameters and max tokens, or why one cannot load."

    def handle(self, *args, **options) -> None:
        broken = []
        for name in encoder_names():
            info = encoder_describe(name)
            if info["error"]:
                broken.append(name)
                self.stdout.write(f"{name}\t{settings.ENCODERS[name]}\tERROR {info['error']}")
                continue
            self.stdout.write(
                f"{name}\t{settings.ENCODERS[name]}\t{info['model_type']}, hidden size {info['hidden_size']}, "
                f"{info['parameters']:,} parameters, {info['layers']} layers, at most {info['max_tokens']} tokens")
        if broken:
            raise CommandError(f"{len(broken)} listed encoder(s) cannot be used: {', '.join(broken)}")
