"""/api/schema/ (OpenAPI) and /api/docs/ (Swagger UI)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from schemathesis.core.failures import Failure

from tests.annotator.openapi import COMPONENT, assert_answer_matches_schema, generated_schema, operations

V1_PATHS = [
    "/api/v1/health/",
    "/api/v1/auth/token/",
    "/api/v1/auth/token/revoke/",
    "/api/v1/users/",
    "/api/v1/projects/",
    "/api/v1/projects/{project_id}/",
    "/api/v1/projects/{project_id}/members/",
    "/api/v1/projects/{project_id}/examples/",
    "/api/v1/projects/{project_id}/export/",
    "/api/v1/examples/{example_id}/",
    "/api/v1/examples/{example_id}/annotations/",
]


@pytest.mark.django_db
def test_schema_as_json_lists_every_api_path(api_client):
    response = api_client().get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(V1_PATHS) <= set(schema["paths"])
    assert "post" in schema["paths"]["/api/v1/projects/{project_id}/examples/"]
    assert "get" in schema["paths"]["/api/v1/projects/{project_id}/examples/"]


@pytest.mark.django_db
def test_docs_page_is_served(api_client):
    response = api_client().get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


# Streamed JSONL or CSV files: their bodies are text, described by the media type and docs/api.md.
FILE_DOWNLOADS = {("GET", "/api/v1/projects/{project_id}/export/")}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"].removeprefix(COMPONENT)]
        elif len(schema.get("allOf", [])) == 1:  # drf-spectacular's wrapper of a nullable nested serializer
            schema = schema["allOf"][0]
        else:
            return schema


def _declares_its_shape(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """Named fields for an object, a typed item for a list; a bare ``{"type": "object"}`` says nothing."""
    schema = _resolve(schema, components)
    if "items" in schema:
        return _declares_its_shape(schema["items"], components)
    if schema.get("type") == "object" or "additionalProperties" in schema:
        return bool(schema.get("properties"))
    return "type" in schema or "oneOf" in schema or "enum" in schema


def test_every_json_answer_of_every_operation_declares_its_fields():
    schema = generated_schema()
    components = schema["components"]["schemas"]
    bare, downloads = [], set()
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            for media_type, content in (response.get("content") or {}).items():
                if media_type != "application/json":
                    downloads.add((method, path))
                elif not _declares_its_shape(content.get("schema", {}), components):
                    bare.append(f"{method} {path} {status}")

    assert bare == [], "answers declared as a bare object (give the view a serializer in annotator/api/)"
    assert downloads == FILE_DOWNLOADS


def test_a_bare_object_answer_is_caught():
    components = {"Open": {"type": "object", "additionalProperties": {}},
                  "Job": {"type": "object", "properties": {"id": {"type": "integer"}}}}

    assert not _declares_its_shape({"$ref": f"{COMPONENT}Open"}, components)
    assert not _declares_its_shape({"type": "array", "items": {"$ref": f"{COMPONENT}Open"}}, components)
    assert _declares_its_shape({"allOf": [{"$ref": f"{COMPONENT}Job"}], "nullable": True}, components)


@pytest.mark.django_db
def test_an_undeclared_field_in_an_answer_fails_the_strict_check(api_client):
    response = api_client().get("/api/v1/health/")
    assert_answer_matches_schema(response, "GET", "/api/v1/health/")

    response.content = json.dumps({**response.json(), "uptime": 3}).encode()
    with pytest.raises(Failure, match="uptime"):
        assert_answer_matches_schema(response, "GET", "/api/v1/health/")
