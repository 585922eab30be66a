from __future__ import annotations

from functools import partial

from django.core.paginator import Paginator
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

from annotator.errors import InvalidInput


def _is_positive_int(raw: str) -> bool:
    return raw.isascii() and raw.isdigit() and int(raw) >= 1


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

    def get_page_number(self, request, paginator) -> int | str:  # noqa: ANN001
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if raw in self.last_page_strings:
            return paginator.num_pages
        if not _is_positive_int(raw):
            raise InvalidInput([{"field": "page", "message": "page must be a positive integer (or 'last')"}])
        return raw

    def get_page_size(self, request) -> int:  # noqa: ANN001
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # DRF falls back to the default for a bad value; a client that asked for a size should hear why
        # it did not get it.
        if not _is_positive_int(raw):
            raise InvalidInput([{"field": "page_size", "message": "page_size must be a positive integer"}])
        return min(int(raw), self.max_page_size)

    @classmethod
    def with_count(cls, count: int | None) -> Pagination:
        paginator = cls()
        if count is not None:
            paginator.django_paginator_class = partial(KnownCountPaginator, count=count)
        return paginator


PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="page number, from 1, or 'last' (404 past the last page)"),
    OpenApiParameter("page_size", int, description=f"rows per page (default {Pagination.page_size}, "
                                                   f"at most {Pagination.max_page_size})"),
]


def paginated(name: str, results: serializers.BaseSerializer | serializers.Field) -> serializers.Serializer:
    """The schema of a paginated answer: ``{"count", "next", "previous", "results": [...]}``."""
    return inline_serializer(name, {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": results,
    })
