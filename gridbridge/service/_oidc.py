"""OIDC bearer JWTs: the identity an OpenID Connect issuer vouches for.

Invariant: a JWT authenticates only when its signature verifies (RS256 or ES256, never
``none`` or a shared secret) against a key of the configured issuer's JWKS named by its
``kid``, and its ``iss``, ``aud`` and unexpired ``exp`` are the configured ones; its user and
team claims must be valid names and its role one of the three. Anything else is one 401
line saying what was wrong, never the token::

    Bearer eyJ... ─> header kid ─> JWKS (jwks_url, cached; or jwks_file) ─> jwt.decode
                                                   (RS256/ES256, iss, aud, exp, leeway 10 s)
                 ─> claims[user_claim], [team_claim], [role_claim] or default_role ─> Identity
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt

from gridbridge.scheduler._access import Role, check_name

from ._rights import Identity, Refused

if TYPE_CHECKING:
    from gridbridge.config import OidcSettings

__all__ = ["ALGORITHMS", "OidcVerifier"]

ALGORITHMS = ["RS256", "ES256"]
LEEWAY_S = 10
"""Clock skew forgiven between the issuer and the service."""


def _refused(why: str) -> Refused:
    return Refused(f"refused: the bearer JWT {why} (rule: only a token the configured issuer "
                   "signed, for this audience and unexpired, authenticates)", 401)


def _plain_http_ok(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OidcVerifier:
    """Checks bearer JWTs against ``settings`` (one per service; the JWKS is cached)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._client: jwt.PyJWKClient | None = None
        if settings.jwks_url is not None:
            url = settings.jwks_url
            if not url.startswith("https://") and not (url.startswith("http://")
                                                       and _plain_http_ok(url)):
                raise ValueError(f"server.oidc.jwks_url {url!r}: give https:// (plain http "
                                 "only on loopback: the keys decide who is who)")
            self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)

    def _key(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if self._client is not None:
                return self._client.get_signing_key_from_jwt(token).key
            assert self.settings.jwks_file is not None
            keys = jwt.PyJWKSet.from_dict(json.loads(self.settings.jwks_file.read_text()))
        except jwt.PyJWKClientConnectionError:
            raise _refused("cannot be checked: the issuer's keys are unreachable") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError):
            raise _refused("names a key the issuer does not publish") from None
        except jwt.InvalidTokenError:
            raise _refused("is malformed") from None
        for key in keys.keys:
            if key.key_id == kid:
                return key.key
        raise _refused("names a key the issuer does not publish")

    def identify(self, token: str) -> Identity:
        """The identity ``token`` carries, or :class:`Refused` (401) saying why not."""
        s = self.settings
        key = self._key(token)
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=s.audience,
                                issuer=s.issuer, leeway=LEEWAY_S,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise _refused("has expired") from None
        except jwt.InvalidAudienceError:
            raise _refused("is for another audience") from None
        except jwt.InvalidIssuerError:
            raise _refused("is from another issuer") from None
        except jwt.InvalidTokenError as exc:
            raise _refused(f"is not valid ({type(exc).__name__})") from None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        s = self.settings
        role = claims.get(s.role_claim, s.default_role)
        try:
            user = check_name("user", str(claims[s.user_claim]))
            team = check_name("team", str(claims[s.team_claim]))
            who = Role(role) if isinstance(role, str) else None
        except KeyError as exc:
            raise _refused(f"has no {exc.args[0]!r} claim") from None
        except ValueError as exc:
            raise _refused(f"names no valid identity ({exc})") from None
        if who is None:
            raise _refused(f"has a {s.role_claim!r} claim that is not one role")
        subject = str(claims.get("sub", user))[:40]
        return Identity(user, team, who, f"oidc:{subject}")
