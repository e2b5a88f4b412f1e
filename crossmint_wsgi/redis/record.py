"""The Redis coordinator's refresh records: sealed as :mod:`crossmint_wsgi.sealing` seals them."""

from __future__ import annotations

from ..sealing import HKDF_INFO, HKDF_SALT, Outcome, RecordCipher, unwrap

__all__ = ["HKDF_INFO", "HKDF_SALT", "Outcome", "RecordCipher", "unwrap"]
