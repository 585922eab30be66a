"""/api/schema/ (OpenAPI) and /api/docs/ (Swagger UI)."""

from __future__ import annotations

import pytest

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
