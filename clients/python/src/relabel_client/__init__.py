"""Python client for the Relabel REST API v1.

    from relabel_client import Client
    client = Client("http://127.0.0.1:8000", token="...")
    project = client.create_project("Reviews", ["positive", "negative"])
    client.import_examples(project["id"], [{"text": "Great!", "label": "positive"}])
"""

from relabel_client.client import Client
from relabel_client.errors import (
    APIError,
    Conflict,
    Forbidden,
    InvalidRequest,
    JobFailed,
    JobTimeout,
    NotFound,
    RelabelError,
    ServerError,
    Throttled,
    TooLarge,
    TransportError,
    Unauthenticated,
    Unavailable,
)
from relabel_client.retry import RetryPolicy
from relabel_client.webhooks import verify_webhook

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "JobFailed",
    "JobTimeout",
    "NotFound",
    "RelabelError",
    "RetryPolicy",
    "ServerError",
    "Throttled",
    "TooLarge",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "verify_webhook",
]
