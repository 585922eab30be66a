"""Token authentication for clients (API.md: ``Authorization: Token <key>``), DRF's, with the lookup of the
token and its user written as one statement (``selectors.access.token_with_user``): it runs on every API
request, and the ORM's queryset for it costs several times what the database spends answering it. Nothing is
cached between requests, so a revoked token or a deactivated user is refused on the next request."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from annotator.selectors.access import token_with_user


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        found = token_with_user(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
