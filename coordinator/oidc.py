"""OIDC bearer mode: accept access tokens (JWTs) issued by the federation's identity provider.

The JWT's signature is checked against the provider's JWKS (fetched over HTTPS and cached by
PyJWT), together with issuer, audience and expiry; the role comes from one claim. Nodes never
use OIDC: the ``node`` role is refused here (nodes hold coordinator node tokens).
"""

from __future__ import annotations

from typing import Any

import jwt

from .auth import ROLE_SCOPES, Principal, Role
from .errors import Forbidden, Unauthenticated

OIDC_ROLES = (Role.ADMIN, Role.VIEWER, Role.AUDITOR)


class OidcVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        role_claim: str,
        algorithms: list[str],
        leeway_s: float = 30.0,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._role_claim = role_claim
        self._algorithms = algorithms
        self._leeway = leeway_s
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)

    def principal(self, token: str) -> Principal:
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientError as exc:
            raise Unauthenticated(f"OIDC token: signing key not available ({exc})") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"OIDC token rejected: {exc}") from exc
        role = _role_of(claims.get(self._role_claim))
        if role is None:
            raise Forbidden(
                f"OIDC token carries no coordinator role in claim {self._role_claim!r} "
                f"(one of {', '.join(r.value for r in OIDC_ROLES)})"
            )
        return Principal(name=f"oidc:{claims['sub']}", role=role, scopes=ROLE_SCOPES[role])


def _role_of(value: Any) -> Role | None:
    """The strongest coordinator role named in the claim (a string or a list of strings)."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for role in OIDC_ROLES:  # strongest first
        if role.value in names:
            return role
    return None
