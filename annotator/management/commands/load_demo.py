from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotator.services.demo import demo_project_load


class Command(BaseCommand):
    help = "Load the BBC news demo project for a user (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="username that becomes the project's admin")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user named {options['user']!r}")
        data = demo_project_load(user=user)
        verb = "created" if data.created else "already there"
        self.stdout.write(f"demo project {data.project.id} ({data.project.name}): {verb}")
        self.stdout.write(f"{len(data.flipped)} seed labels are deliberately wrong (see docs/demo.md):")
        for row in data.flipped:
            self.stdout.write(f"  {row['external_id']}: labeled {row['given']}, really {row['true']}")
