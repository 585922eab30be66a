"""A client for the Relabel REST API v1 (docs/api.md): one method per endpoint, lists as iterators over
every page, bulk uploads in batches, retries on 429/503, and errors that carry the API's error list."""

from __future__ import annotations

from relabel_client.loop import LoopEndpoints
from relabel_client.projects import ProjectEndpoints
from relabel_client.webhooks import WebhookEndpoints

__all__ = ["Client"]


class Client(ProjectEndpoints, LoopEndpoints, WebhookEndpoints):
    """A session with one Relabel server.

    Parameters
    ----------
    url: the server (``http://127.0.0.1:8000``) or its API root (``.../api/v1/``).
    token: an API token (``Authorization: Token <key>``).
    username, password: used instead of a token: with ``auth="token"`` (default) the client asks
        ``POST /auth/token/`` for the user's token on its first request; with ``auth="session"`` it logs in
        at ``/login/`` like a browser and sends Django's CSRF token with every write.
    timeout: seconds for each HTTP request (connect and read).
    retry: when to send a request again after a 429 or 503 (:class:`RetryPolicy`); ``RetryPolicy(max_retries=0)``
        turns retries off.
    sleep: how to wait between retries (tests pass a recorder).

    The methods live by concern: the transport (requests, retries, authentication, pages) in
    :mod:`relabel_client.transport`, projects, examples and samples in :mod:`relabel_client.projects`, and the
    queue, jobs, models, noise, health and drift in :mod:`relabel_client.loop`, webhooks in
    :mod:`relabel_client.webhooks`.
    """
