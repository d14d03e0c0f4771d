"""OIDC bearer JWTs against a JWKS the test publishes on a real loopback HTTP server, with
key pairs the test makes (RSA for RS256, P-256 for ES256): a good token authenticates as its
claims say; an expired one, one for another audience, one from another issuer, one signed by
a key the JWKS does not hold and one with no signature are refused (401 / CLI exit 4)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gridbridge.client import Client
from gridbridge.config import OidcSettings
from gridbridge.service import Refused, Role
from gridbridge.service._oidc import OidcVerifier
from tests.service.conftest import Federation, free_port, serving
from tests.support.serving import two_site_config

ISSUER, AUDIENCE = "https://login.example.org/realms/lab", "gridbridge"


class Keys:
    """Two signing keys the JWKS publishes and one it does not."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        rs = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        es = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {"keys": [rs | {"kid": "rs1", "use": "sig", "alg": "RS256"},
                         es | {"kid": "es1", "use": "sig", "alg": "ES256"}]}

    def token(self, kid: str = "rs1", **claims: Any) -> str:
        body = {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 300,
                "preferred_username": "carol", "team": "bio", "sub": "u-123"} | claims
        key, alg = {"rs1": (self.rsa, "RS256"), "es1": (self.ec, "ES256"),
                    "zz9": (self.stranger, "RS256")}[kid]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks_url(keys: Keys) -> Iterator[str]:
    """The JWKS on a real HTTP server on loopback."""
    body = json.dumps(keys.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/certs" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/certs" else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()
    server.server_close()


def _bad_tokens(keys: Keys) -> dict[str, str]:
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 300,
                           "preferred_username": "carol", "team": "bio"}, None,
                          algorithm="none", headers={"kid": "rs1"})
    return {"has expired": keys.token(exp=time.time() - 120),
            "another audience": keys.token(aud="someone-else"),
            "another issuer": keys.token(iss="https://evil.example.org"),
            "does not publish": keys.token(kid="zz9"),
            "not valid": unsigned}


def test_the_verifier_checks_signature_issuer_audience_expiry_and_kid(
        keys: Keys, jwks_url: str, tmp_path: Path) -> None:
    verifier = OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url))
    who = verifier.identify(keys.token())
    assert (who.user, who.team, who.role) == ("carol", "bio", Role.RESEARCHER)
    assert verifier.identify(keys.token("es1", role="finance")).role is Role.FINANCE
    for why, token in _bad_tokens(keys).items():
        with pytest.raises(Refused, match=why) as refused:
            verifier.identify(token)
        assert refused.value.status == 401 and token not in str(refused.value)
    with pytest.raises(Refused, match="'team' claim"):
        verifier.identify(jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60,
             "preferred_username": "carol"}, keys.rsa, algorithm="RS256",
            headers={"kid": "rs1"}))
    with pytest.raises(Refused, match="valid identity"):
        verifier.identify(keys.token(preferred_username="x\ny"))
    with pytest.raises(Refused, match="not one role"):
        verifier.identify(keys.token(role=["operator"]))
    jwks_file = tmp_path / "jwks.json"  # the same keys from a file
    jwks_file.write_text(json.dumps(keys.jwks()))
    from_file = OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE,
                                          jwks_file=jwks_file))
    assert from_file.identify(keys.token("es1")).user == "carol"
    with pytest.raises(Refused, match="does not publish"):
        from_file.identify(keys.token("zz9"))
    with pytest.raises(ValueError, match="https"):
        OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE,
                                  jwks_url="http://keys.example.org/certs"))


@pytest.mark.slow
def test_jwts_through_the_service_and_the_cli(keys: Keys, jwks_url: str,
                                              tmp_path: Path) -> None:
    config = two_site_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["server"] = {"oidc": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks_url}}
    config.write_text(yaml.safe_dump(data))
    fed = Federation(config, f"http://127.0.0.1:{free_port()}", {}, tmp_path / "serve.log")
    with serving(config, fed.url, fed.log):
        run = fed.cli(None, "submit", "--name", "hi", "--", "true", token=keys.token("es1"))
        assert run.returncode == 0, run.stderr
        job_id = run.stdout.strip()
        assert fed.cli(None, "status", job_id, token=keys.token()).returncode == 0
        with Client(url=fed.url, token=keys.token()) as carol:
            owner = carol.store.job(job_id).spec.owner
            assert (owner.user, owner.team) == ("carol", "bio")
            assert carol.whoami()["role"] == "researcher"
        for why, token in _bad_tokens(keys).items():
            run = fed.cli(None, "status", job_id, token=token)
            assert run.returncode == 4, (why, run.stdout, run.stderr)
            [line] = run.stderr.strip().splitlines()
            assert line.startswith("error: refused") and why in line, line
