"""Strict JSON decoding of bytes that came from a peer (control messages, compression HELLO/END frames).

``json.loads`` accepts more than JSON and can fail with errors no caller expects: ``NaN``/``Infinity``
literals, ``1e400`` (which becomes ``inf``), integers of any size (4301 digits raise ``ValueError``, smaller
ones reach ``struct.pack`` or an allocation later), nesting deep enough to raise ``RecursionError``, UTF-16
input, duplicate keys (the last silently wins) and ``\\ud800`` escapes (a lone surrogate that fails later,
when the string is encoded for a path or a log line). :func:`loads_untrusted` refuses all of these and
turns every failure into the caller's own error type, so a decoder raises nothing but that type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

# deep enough for any message we send (a manifest is 4 levels, a service spec a few more)
MAX_JSON_DEPTH = 32
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1


class _Refused(ValueError):
    """Raised while decoding or checking; :func:`loads_untrusted` converts it to the caller's error."""


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not JSON (numbers must be finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key[:64]!r}")
            seen.add(key)
    return obj


# Integers and floats are checked after parsing, not by parse_int/parse_float hooks: a Python call per
# number makes a large manifest several times slower to decode. Integers longer than Python's digit limit
# (4300 by default) already fail inside the parser with a ValueError.
_DECODER = json.JSONDecoder(parse_constant=_parse_constant, object_pairs_hook=_object)


def _check_tree(obj: Any, max_depth: int) -> None:
    """Depth, number and string check, level by level without recursion (the tree may be as deep as the
    parser allowed)."""
    level: list[Any] = [obj]
    depth = 0
    while level:
        depth += 1
        below: list[Any] = []
        for node in level:
            t = type(node)
            if t is str:
                if not node.isascii():
                    node.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
            elif t is int:
                if not MIN_JSON_INT <= node <= MAX_JSON_INT:
                    raise _Refused(f"integer of {len(str(abs(node)))} digits is outside the 64-bit range")
            elif t is float:
                if not math.isfinite(node):
                    raise _Refused(f"number {node} is not finite")
            elif t is list or t is dict:
                if depth > max_depth:
                    raise _Refused(f"nested deeper than {max_depth} levels")
                if t is dict:
                    below.extend(node)
                    below.extend(node.values())
                else:
                    below.extend(node)
        level = below


def loads_untrusted(
    data: bytes | bytearray | memoryview,
    error: Callable[[str], Exception],
    what: str,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Decode UTF-8 JSON from a peer; any problem raises ``error(f"{what}: ...")`` and nothing else.

    Integers must fit in 64 bits (signed), numbers must be finite, objects may not repeat a key, containers
    nest at most ``max_depth`` levels and strings must be valid Unicode (no lone surrogates).
    """
    try:
        text = str(data, "utf-8")
        obj = _DECODER.decode(text)
        _check_tree(obj, max_depth)
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply") from None
    except UnicodeError as exc:
        raise error(f"{what}: payload is not valid UTF-8 text ({exc.reason})") from None
    except _Refused as exc:
        raise error(f"{what}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and int/float conversion limits
        raise error(f"{what}: payload is not JSON ({exc})") from None
    return obj
