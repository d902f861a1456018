"""The library's JSON format, decoded faster.

Stored events keep exactly the library's JSON (``{"_type_": name, "_data_": ...}`` for custom
types), written by the library's encoder. Reading parses with msgspec (C) and revives the custom
types in one pass, instead of ``json`` with a Python ``object_hook`` on every object: decoding is
what every projection and every aggregate load pays first.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError, UUIDAsHex

_decoder = msgspec.json.Decoder()
_NESTED = (dict, list)


class FastJSONTranscoder(JSONTranscoder):
    def decode(self, data: bytes) -> Any:
        return self._revive(_decoder.decode(data))

    def _revive(self, value: Any) -> Any:
        """Custom types revived, depth first; scalars (most leaves) and boxed scalars (most
        custom values: identifiers, moments) are handled without a call of their own."""
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._unbox(value)
            revived = {}
            for key, item in value.items():
                if type(item) is dict and len(item) == 2 and "_type_" in item and "_data_" in item:
                    revived[key] = self._unbox(item)
                elif type(item) in _NESTED:
                    revived[key] = self._revive(item)
                else:
                    revived[key] = item
            return revived
        if kind is list:
            return [self._revive(item) if type(item) in _NESTED else item for item in value]
        return value

    def _unbox(self, box: dict[str, Any]) -> Any:
        try:
            transcoding = self.names[box["_type_"]]
        except KeyError:
            raise TranscodingNotRegisteredError(f"no transcoding for {box['_type_']!r}") from None
        data = box["_data_"]
        return transcoding.decode(self._revive(data) if type(data) in _NESTED else data)


class UUIDAsHexParsedOnce(UUIDAsHex):
    """The library's ``uuid_hex``, each distinct value parsed once: the same actors, keys and
    credentials recur in event after event, and parsing a UUID costs more than the rest of it."""

    def decode(self, data: str) -> UUID:
        return parsed_uuid(data)


@lru_cache(maxsize=65536)
def parsed_uuid(text: str) -> UUID:
    """A UUID from its text, each distinct text parsed once."""
    return UUID(text)
