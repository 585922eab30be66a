"""Job lookups and lists (a job row is the one source of progress, stage, message and result)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from annotator.models import Job, Project, Role
from annotator.selectors.access import project_row_for


def job_for(user: AbstractBaseUser, job_id: Any, *, role: str = Role.ANNOTATOR) -> Job:
    return project_row_for(Job, user, job_id, role=role, what="job")


def job_in_project(project: Project, job_id: int) -> Job | None:
    return Job.objects.filter(project=project, pk=job_id).first()


def job_by_id(job_id: int) -> Job:
    return Job.objects.get(pk=job_id)


def project_jobs(project: Project) -> QuerySet[Job]:
    """Every job of the project, newest first."""
    return Job.objects.filter(project=project).order_by("-id")


def recent_jobs(project: Project, *, limit: int = 8) -> list[Job]:
    """The project's newest top-level jobs (a train job's scoring children show through their parent)."""
    return list(
        Job.objects.filter(project=project, parent__isnull=True)
        .defer("log", "params", "timings")
        .order_by("-id")[:limit]
    )


def running_job_ids(project: Project) -> set[int]:
    return set(Job.objects.filter(project=project).exclude(status__in=Job.FINISHED).values_list("id", flat=True))
