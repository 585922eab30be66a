from __future__ import annotations

from functools import partial

from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination


class KnownCountPaginator(Paginator):
    """A paginator told its count (e.g. a maintained counter) instead of running COUNT(*)."""

    def __init__(self, *args, count: int, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._known_count = count

    @property
    def count(self) -> int:
        return self._known_count


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000

    @classmethod
    def with_count(cls, count: int | None) -> Pagination:
        paginator = cls()
        if count is not None:
            paginator.django_paginator_class = partial(KnownCountPaginator, count=count)
        return paginator
