"""The library's JSON format, decoded faster.

Stored events keep exactly the library's JSON (``{"_type_": name, "_data_": ...}`` for custom
types), written by the library's encoder. Reading parses with msgspec (C) and revives the custom
types in one pass, instead of ``json`` with a Python ``object_hook`` on every object: decoding is
what every projection and every aggregate load pays first.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

_decoder = msgspec.json.Decoder()
_NESTED = (dict, list)


class FastJSONTranscoder(JSONTranscoder):
    def decode(self, data: bytes) -> Any:
        return self._revive(_decoder.decode(data))

    def _revive(self, value: Any) -> Any:
        """Custom types revived, depth first; scalars (most leaves) are passed over without a call."""
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                try:
                    transcoding = self.names[value["_type_"]]
                except KeyError:
                    raise TranscodingNotRegisteredError(f"no transcoding for {value['_type_']!r}") from None
                data = value["_data_"]
                return transcoding.decode(self._revive(data) if type(data) in _NESTED else data)
            return {key: self._revive(item) if type(item) in _NESTED else item for key, item in value.items()}
        if kind is list:
            return [self._revive(item) if type(item) in _NESTED else item for item in value]
        return value
