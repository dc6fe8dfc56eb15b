"""Bounded fuzzing of the function's HTTP API: validly signed POST /v1/analyze with arbitrary
bodies, and requests with arbitrary headers, never get a 5xx (apart from the documented 502/504
fetch outcomes, which need a reachable target: here every name resolves to a refused address,
so no request ever leaves the machine) and always get the JSON error shape."""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.keys import encode_public_key
from protocol.models import ErrorResponse
from protocol.request_auth import (
    HEADER_CALLER,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    RequestSigner,
)
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

KEY = SigningKey(b"\x09" * 32)
PATH = "/v1/analyze"
SIGNER = RequestSigner("node-fuzz", KEY)


async def _loopback_only(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]  # production mode refuses loopback: blocked_address, no traffic


APP = create_app(
    FunctionSettings(
        decode_isolation="thread",
        authorized_keys={"node-fuzz": encode_public_key(KEY.verify_key)},
        rate_limit_per_second=1e6,
        rate_limit_burst=1_000_000,
        auth_max_nonces=1_000_000,
    ),
    resolver=_loopback_only,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
urls = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "ftp", "data", "HTTP", "file", ""]),
        st.text(max_size=40),
        st.text(max_size=40),
    ),
    st.sampled_from(["data:image/png;base64,AAAA", "data:,", "http://[::1]/", "http://0x7f.1/"]),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(
        lambda url, dihedral, extra: json.dumps(
            {"url": url, "dihedral": dihedral, **extra}
        ).encode(),
        urls,
        json_values,
        st.dictionaries(st.text(max_size=8), json_values, max_size=2),
    ),
)
header_names = st.sampled_from(
    [
        HEADER_CALLER,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Expect",
        "X-Other",
    ]
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


async def _post(content: bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://function.test") as client:
        return await client.post(PATH, content=content, headers=headers)


def _check(response: httpx.Response) -> None:
    # 502/504 are fetch outcomes of real targets; with every address refused they cannot occur.
    assert response.status_code < 500, response.text
    ErrorResponse.model_validate(response.json())


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_signed_arbitrary_bodies_never_5xx(body: bytes) -> None:
    headers = {**SIGNER.headers("POST", PATH, body), "Content-Type": "application/json"}
    _check(asyncio.run(_post(body, headers)))


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=100),
    overrides=st.dictionaries(header_names, header_values, max_size=5),
    keep=st.booleans(),
)
def test_arbitrary_headers_never_5xx(body: bytes, overrides: dict[str, str], keep: bool) -> None:
    headers = SIGNER.headers("POST", PATH, body) if keep else {}
    headers.update(overrides)
    _check(asyncio.run(_post(body, headers)))
