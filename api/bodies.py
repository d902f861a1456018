"""Request bodies are decoded once, strictly, straight into the handler's declared type.

Litestar decodes JSON to Python objects and then converts them leniently (``1`` would become
``true`` and ``"5"`` would become ``5``); the contract refuses wrong types. Bytes that are not
JSON (invalid UTF-8, nesting deeper than the decoder recurses) are a 400; JSON that breaks a
rule (a type, a pattern, a ``Check`` of ``api.schemas``) is a 422 naming the field.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.types import Empty

from api.schemas import UNPAIRED_SURROGATE

PATH = re.compile(r" - at `\$(?:\.(?P<field>[A-Za-z0-9_]+))?[^`]*`$")
NAMED = re.compile(r"field `(?P<field>[^`]+)`")


class StrictRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is Empty:
            if (decoded := self._connection_state.json) is Empty:
                decoded = decode_body(await self.body() or b"null", _body_type(self.route_handler))
                self._connection_state.json = decoded
            self._json = decoded
        return self._json


def decode_body(body: bytes, kind: Any) -> Any:
    try:
        return _decoder(kind).decode(body)
    except msgspec.ValidationError as error:
        if _well_formed(body):  # the typed decoder stops at the first wrong value
            raise _invalid(str(error)) from error
        raise ClientException("the body is not valid JSON") from error
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        if _json_with_unpaired_surrogates(body):
            raise _invalid("text must be valid Unicode: no unpaired surrogates - at `$`") from error
        raise ClientException("the body is not valid JSON") from error


def _well_formed(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _json_with_unpaired_surrogates(body)
    return True


def _invalid(message: str) -> ValidationException:
    text, _, _ = message.rpartition(" - at ")
    path, named = PATH.search(message), NAMED.search(message)
    field = (path and path["field"]) or (named and named["field"]) or "body"
    return ValidationException(text or message, extra=[{"key": field, "message": text or message}])


def _json_with_unpaired_surrogates(body: bytes) -> bool:
    """Well-formed JSON that msgspec refuses because a string escapes a lone surrogate."""
    try:
        value = json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return False
    return UNPAIRED_SURROGATE.search(json.dumps(value, ensure_ascii=False)) is not None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@cache
def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(kind, strict=True)


def _body_type(handler: HTTPRouteHandler) -> Any:
    data = handler.parsed_fn_signature.parameters.get("data")
    return Any if data is None else data.annotation
