"""The generated OpenAPI schema as the tests read it: strict about answers, and a check that one API answer is
what its operation declares.

drf-spectacular leaves objects open (a client must accept fields it does not know, API.md); the tests close
every object an answer declares with named fields (``additionalProperties: false``), so a field a view
returns but its serializer does not declare fails the check, as a missing or mistyped one does. Open maps
(``DictField``: per-label figures, test statistics, stored records) stay open.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from schemathesis.core.transport import Response

COMPONENT = "#/components/schemas/"


@cache
def generated_schema() -> dict[str, Any]:
    """``/api/schema/`` as JSON, generated in-process (no request, no database)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path, operation)`` for every operation of the schema."""
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield method.upper(), path, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(COMPONENT):
            yield ref.removeprefix(COMPONENT)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(roots: list[Any], components: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [name for root in roots for name in _refs(root)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(components[name]))
    return seen


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def strict_answers(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose answers admit no undeclared field; request bodies stay as they are."""
    schema = copy.deepcopy(schema)
    components = schema["components"]["schemas"]
    answers = [content["schema"] for _, _, operation in operations(schema)
               for response in operation["responses"].values()
               for content in (response.get("content") or {}).values() if "schema" in content]
    requests_ = [operation.get(key) for _, _, operation in operations(schema)
                 for key in ("requestBody", "parameters")]
    answered, asked = _reachable(answers, components), _reachable(requests_, components)
    # COMPONENT_SPLIT_REQUEST gives requests components of their own; one shared with answers would be closed
    # for generated requests too.
    assert not answered & asked, f"components both asked and answered: {sorted(answered & asked)}"
    for node in [*answers, *(components[name] for name in answered)]:
        _close(node)
    return schema


@cache
def strict_schema() -> Any:
    return schemathesis.openapi.from_dict(strict_answers(generated_schema()))


def assert_answer_matches_schema(response: Any, method: str, path: str) -> None:
    """The body of a test client's ``response`` to ``METHOD path`` (the schema's path template, e.g.
    ``/api/v1/projects/{project_id}/drift/``, a query string allowed) is what the operation declares for its
    status code."""
    path = path.partition("?")[0]
    operation = strict_schema()[path][method.lower()]
    answer = Response(
        status_code=response.status_code,
        headers={name.lower(): [value] for name, value in response.headers.items()},
        content=response.content,
        request=requests.Request(method.upper(), f"http://testserver{path}").prepare(),
        elapsed=0.0,
        verify=False,
    )
    operation.validate_response(answer)
