from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError

from annotator.errors import ServiceError
from annotator.models import Project, Role
from annotator.selectors.access import role_of
from annotator.services import formats
from annotator.services.files import ColumnMap


class Command(BaseCommand):
    help = ("Import a file of examples into a project, all or nothing, idempotent on external_id: CSV, JSONL, "
            "Label Studio JSON, Parquet (Hugging Face datasets) or a directory written by Dataset.save_to_disk. "
            "A broken encoding or a bad row is reported with its line (task, row) and nothing is written.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="a file, or a saved Hugging Face dataset directory")
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--user", required=True, help="username recorded on imported labels (a project member)")
        parser.add_argument("--format", choices=formats.IMPORT_FORMATS,
                            help="default: from the file name (.json starting with '[' is Label Studio; a "
                                 "directory is hf_dataset)")
        parser.add_argument("--source", default="import", help="source of rows that do not name one")
        parser.add_argument("--text-column", default="text", help="for Label Studio: the data key of the text")
        parser.add_argument("--label-column", default="label")
        parser.add_argument("--id-column", default="external_id")

    def handle(self, *args, **options) -> None:
        path = Path(options["path"])
        if not path.is_file() and not path.is_dir():
            raise CommandError(f"no such file or directory: {path}")
        project = Project.objects.filter(pk=options["project"]).first()
        user = get_user_model().objects.filter(username=options["user"]).first()
        if project is None or user is None:
            raise CommandError("unknown project or user")
        role = role_of(user, project)
        if role not in (Role.ADMIN, Role.REVIEWER):
            raise CommandError(f"{user.username} must be an admin or reviewer of project {project.id}")
        columns = ColumnMap(text=options["text_column"], label=options["label_column"], external_id=options["id_column"])
        try:
            fmt = options["format"] or ("hf_dataset" if path.is_dir() else
                                        formats.guess_format(path.name, _head(path)))
            parsed = formats.file_rows(project=project, user=user, fmt=fmt, path=path, columns=columns,
                                       limit_unpacked=False)
            result = formats.examples_import_file(project=project, user=user, parsed=parsed,
                                                  default_source=options["source"], allow_history=role == Role.ADMIN)
        except ServiceError as error:
            for problem in error.errors:
                self.stderr.write(_describe(problem))
            raise CommandError(f"nothing was imported from {path} ({len(error.errors)} problem(s))") from None
        except (OperationalError, InterfaceError) as error:
            # The import is one transaction: a connection lost half-way rolled all of it back.
            raise CommandError(f"the database connection was lost ({str(error).strip()}); nothing was imported "
                               f"from {path}. Run the command again (it is idempotent on external_id).") from None
        self.stdout.write(f"{path}: {result.created} created, {result.unchanged} unchanged, {result.updated} updated")


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(64)


def _describe(problem: dict) -> str:
    message = problem["message"]
    if "line" in problem and not message.startswith("line "):
        message = f"line {problem['line']}: {message}"
    return message
