"""Stepping the sans-IO core by hand: a JWT signer, a Crossmint config, and a flow driver.

Shared by the tests of :mod:`crossmint_wsgi.flows` and :mod:`crossmint_wsgi.routes`,
which run the core with no I/O at all.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Generator
from typing import Any

from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from crossmint_wsgi.config import Crossmint, build_crossmint
from crossmint_wsgi.testing._keys import mint_api_key

#: The time the stepped core lives at.
NOW = 1_800_000_000


def b64json(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


class Signer:
    """Signs RS256 JWTs for one project, as Crossmint would, with its own key ``kid``."""

    def __init__(self, kid: str = "k1", *, project: str) -> None:
        self.key = RSAKey.generate_key(2048, {"kid": kid})
        self.project = project

    def jwks(self, *others: Signer) -> dict[str, Any]:
        """The JWK Set of this signer and ``others``."""
        return {"keys": [dict(s.key.as_dict(private=False)) for s in (self, *others)]}

    def token(self, sub: str = "user-1", *, ttl: int = 600, **claims: Any) -> str:
        """A JWT for ``sub`` expiring ``ttl`` seconds after :data:`NOW`; a claim set to
        ``None`` is left out."""
        payload = {"sub": sub, "aud": self.project, "exp": NOW + ttl, **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        signing_input = f"{b64json({'alg': 'RS256', 'kid': self.key.kid})}.{b64json(payload)}"
        signature = JWSRegistry.algorithms["RS256"].sign(signing_input.encode(), self.key)
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def crossmint_of(project: str) -> Crossmint:
    """A Crossmint config for ``project``, with a key minted and checked as Crossmint's are."""
    minted = mint_api_key(project)
    return build_crossmint(minted.api_key, signing_key=minted.signing_key)


def drive(flow: Generator[Any, Any, Any], *results: Any) -> tuple[Any, list[Any]]:
    """Run ``flow``, answering its effects with ``results`` in order.

    Returns the flow's value and the effects it yielded; fails when the flow
    yields more effects than there are results, or fewer.
    """
    effects: list[Any] = []
    pending = list(results)
    try:
        effect = next(flow)
        while True:
            effects.append(effect)
            if not pending:
                raise AssertionError(f"unexpected effect {effect!r} after {effects[:-1]!r}")
            effect = flow.send(pending.pop(0))
    except StopIteration as done:
        assert not pending, f"flow ended with results left over; effects: {effects!r}"
        return done.value, effects
