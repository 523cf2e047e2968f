"""The bad-input catalogue: every hostile and broken request, in one table, each with its exact problem.

Each case names its request and the whole problem+json answer it must get: the exact status,
``type``/``title``/``status``/``detail`` (and ``errors`` with ``loc`` for a 422), so the message
that names what is wrong is checked word for word. Both endpoints, both transports (JSON and
NPZ), the JSON fast path (bodies of 64 KiB or more) beside the reference path, field by field
(shape, range, label, option and type errors naming field, row and column). The table runs twice:
against the app in-process and against one real ``xent serve``. Over a raw socket come what only
a real connection can do: lie about Content-Length, stream past the limit, stall or hang up
halfway. After the whole catalogue the same app and the same server still score the reference
example exactly, and the server has not answered a single 500.
"""

import asyncio
import gzip
import json
import pickle
import socket
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from hostile_server import raw_exchange, running_server
from npz_bodies import (
    ZipMember,
    bzip2_zeros,
    deflated,
    deflated_zeros,
    hand_zip,
    lzma_zeros,
    npy,
    npy_with_header,
    npz,
    stored_zip,
)
from whole_answers import REFERENCE_ANSWER, REFERENCE_BODY

from service.api.app import create_app
from service.settings import Settings

CE = "/v1/cross-entropy"
BCE = "/v1/binary-cross-entropy"
SEQ = "/v1/sequence-cross-entropy"
SEQ_COMPARE = "/v1/sequence-cross-entropy/compare"
SEQ_FORMS = "token_logprobs, completions, chat, prompt_logprobs, tgi_details"
JSON = "application/json"
NPZ = "application/x-npz"
PROBLEM = "application/problem+json"
TINY_CALIBRATION_WEIGHTS = (
    "the smallest positive weight is below 2^-1000 (9.3e-302), too small for the weighted sums calibration_bins "
    "adds up to keep float64's precision; only the weights' ratios matter, so multiply them all by a common factor"
)


def weights_too_far_apart(options: str) -> str:
    return (
        f"the smallest positive weight is below 2^-1000 times the largest: {options} add up weighted sums per "
        "slice, and one of only the smallest weights would fall short of float64's precision; give such rows "
        "weight 0, or bring the weights closer"
    )


#: 4 MiB: a 10^6-character string fits, and over-the-limit bodies stay cheap to send.
LIMIT = 4 * 2**20
#: Seconds a body may take to arrive; short, so the stalled-body cases take seconds.
BODY_TIMEOUT = 2
#: The in-process app gets the settings the real server gets from its environment (no API keys either).
SETTINGS = Settings(max_body_bytes=LIMIT, body_timeout_seconds=BODY_TIMEOUT)
REFERENCE = REFERENCE_BODY
ROWS = [[0.228, 0.619, 0.153]]
MEDIA_HINT = (
    "send JSON with Content-Type: application/json (curl --json '{...}' does both), "
    "or a NumPy .npz archive with Content-Type: application/x-npz"
)
CE_FIELDS = (
    "predictions, labels, compat, prediction_type, classes, label_smoothing, class_weights, sample_weights, "
    "ignore_index, epsilon, normalization, tolerance, unit, per_sample, gradient, confidence, cluster_ids, groups, "
    "per_class, calibration_bins"
)
BCE_FIELDS = (
    "predictions, labels, compat, prediction_type, pos_weight, label_smoothing, sample_weights, epsilon, unit, "
    "per_sample, gradient, confidence, cluster_ids, groups, calibration_bins"
)
NOT_ZIP = (
    "the body is not a readable .npz archive: it does not start with a zip signature (PK\\x03\\x04), as np.savez writes"
)
TOO_LARGE = f"the request body is larger than the limit of {LIMIT} bytes (XENT_MAX_BODY_BYTES)"
OUTSIDE = 'is outside [0, 1] (for scores, set prediction_type to "logits")'
GRADIENT_NEEDS_PER_SAMPLE = "needs per_sample true: the gradient is returned among the per-sample arrays"


def problem(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    """A problem document without ``errors``."""
    return {"type": f"urn:xent:problem:{slug}", "title": title, "status": status, "detail": detail}


def malformed_json(detail: str) -> dict[str, Any]:
    """The 400 answer to a body that is not JSON."""
    return problem(400, "malformed-json", "Malformed JSON", detail)


def malformed_npz(detail: str) -> dict[str, Any]:
    """The 400 answer to a body that is not a readable .npz archive."""
    return problem(400, "malformed-npz", "Malformed NPZ", detail)


def unsupported_media_type(detail: str) -> dict[str, Any]:
    """The 415 answer to a Content-Type or Content-Encoding the service does not read."""
    return problem(415, "unsupported-media-type", "Unsupported media type", detail)


def invalid(where: str, loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    """The whole 422 answer for one error at ``loc``; ``where`` is how the detail names it."""
    return {
        "type": "urn:xent:problem:invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": f"{where}: {msg}",
        "errors": [{"loc": loc, "msg": msg, "type": kind}],
    }


@dataclass(frozen=True)
class BadRequest:
    """One request of the catalogue: a POST of ``body`` (with no Content-Type when ``content_type`` is None)."""

    path: str
    body: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""

    @property
    def url(self) -> str:
        """The path with the query, if any."""
        return self.path + (f"?{self.query}" if self.query else "")

    @property
    def sent_headers(self) -> dict[str, str]:
        """Content-Type (unless None) and the other headers."""
        declared = {} if self.content_type is None else {"content-type": self.content_type}
        return {**declared, **self.headers}


def case(
    name: str,
    path: str,
    body: bytes,
    expected: dict[str, Any],
    *,
    content_type: str | None = JSON,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Any:
    """A catalogue entry: the request and the whole answer it must get."""
    return pytest.param(BadRequest(path, body, content_type, headers or {}, query), expected, id=name)


def with_bad_crc() -> bytes:
    """A valid archive with one byte of the predictions member flipped."""
    data = bytearray(npz(labels=np.array([1]), predictions=np.array(ROWS)))
    data[data.rfind(np.array(ROWS).tobytes())] ^= 0xFF
    return bytes(data)


def big_rows(n: int, last: bytes | None = None, extra: bytes = b"") -> bytes:
    """A JSON body of ``n`` reference rows (88 kB for 4000: the fast path), ``last`` replacing the last row."""
    rows = b",".join([b"[0.228,0.619,0.153]"] * (n - 1) + [last or b"[0.228,0.619,0.153]"])
    return b'{"labels":[' + b",".join([b"1"] * n) + b'],"predictions":[' + rows + b"]" + extra + b"}"


def inflating_past_its_size(method: int, data: bytes) -> bytes:
    """An archive whose predictions member declares 128 bytes but inflates to ``data``'s far more (zeros)."""
    return hand_zip(ZipMember("predictions.npy", data, method, size=128, crc=0), ZipMember("labels.npy", npy(ONE)))


def with_predictions(content: bytes, method: int = zipfile.ZIP_STORED, flags: int = 0) -> bytes:
    """An archive of labels [1] and a predictions member holding ``content`` (deflated if ``method`` says so)."""
    data = deflated(content) if method == zipfile.ZIP_DEFLATED else content
    member = ZipMember("predictions.npy", data, method, size=len(content), crc=zlib.crc32(content), flags=flags)
    return hand_zip(ZipMember("labels.npy", npy(ONE)), member)


def header_of(shape: str, length: int = 0) -> str:
    """A .npy header of float64 ``shape`` (as Python writes the tuple), padded to ``length`` with its newline."""
    return f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".ljust(length - 1) + "\n"


def not_read(member: str, reason: str) -> dict[str, Any]:
    """The 400 answer to an archive one of whose members is refused for ``reason``."""
    return malformed_npz(f"the body is not a readable .npz archive: member {member!r}: {reason}")


ONE = np.array([1])
VALID_NPZ = npz(labels=ONE, predictions=np.array(ROWS))
LONG_NAME = "x" * 60_000
UNREAD_METHOD = (
    "it is compressed with zip method {}, which is not read: send it stored (np.savez), "
    "deflated (np.savez_compressed), or compressed with bzip2 or lzma"
)
INFLATES_PAST = "it inflates to more than the 128 bytes the archive declares for it"
BINARY_NPZ = npz(labels=np.array([1]), predictions=np.array([0.5]))
M = 10**6

MERGE = "/v1/merge"
#: A real state (the reference example's answer's), forged below one value at a time.
STATE = REFERENCE_ANSWER["state"]


def merge_body(*states: Any, **fields: Any) -> bytes:
    """The body of a merge request of ``states``."""
    return json.dumps({"states": list(states), **fields}).encode()


def forged(path: tuple[str, ...], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    """STATE with the value at ``path`` replaced by ``value`` (or deleted)."""
    state = json.loads(json.dumps(STATE))
    parent = state
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return state


def bad_state(where: str, loc: list[Any], msg: str) -> dict[str, Any]:
    """The 422 answer to a state that cannot be merged (``where``: ``states[0].n``)."""
    return invalid(where, ["body", "states", *loc], msg, "state_error")


CATALOGUE = [
    # --- malformed and truncated JSON
    case(
        "json trailing comma",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],}',
        malformed_json("the body is not valid JSON: trailing comma at line 1 column 41"),
    ),
    case(
        "json single quotes",
        BCE,
        b"{'labels':[1],'predictions':[0.5]}",
        malformed_json("the body is not valid JSON: key must be a string at line 1 column 2"),
    ),
    case(
        "json comment",
        CE,
        b'{"labels":[1] /* one */,"predictions":[[0.5,0.5]]}',
        malformed_json("the body is not valid JSON: expected `,` or `}` at line 1 column 15"),
    ),
    case(
        "json truncated mid-number",
        BCE,
        b'{"labels":[1],"predictions":[0.',
        malformed_json("the body is not valid JSON: EOF while parsing a value at line 1 column 31"),
    ),
    case(
        "json truncated large body on the fast path",
        CE,
        big_rows(4000)[:-7],
        malformed_json("the body is not valid JSON: EOF while parsing a list at line 1 column 88021"),
    ),
    case(
        "json two documents",
        CE,
        REFERENCE + REFERENCE,
        malformed_json("the body is not valid JSON: trailing characters at line 1 column 51"),
    ),
    case(
        "json bare NaN body",
        BCE,
        b"NaN",
        problem(422, "invalid-input", "Invalid input", "the body must be a JSON object with the request's fields"),
    ),
    case(
        "json truncated in a list",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]',
        malformed_json("the body is not valid JSON: EOF while parsing a list at line 1 column 38"),
    ),
    case(
        "json double comma",
        CE,
        b'{"labels":[0],,}',
        malformed_json("the body is not valid JSON: key must be a string at line 1 column 15"),
    ),
    case("empty body", CE, b"", malformed_json("the body is empty")),
    case("whitespace-only body", CE, b"  \n", malformed_json("the body is empty")),
    case(
        "json array body",
        BCE,
        b"[1, 2]",
        problem(422, "invalid-input", "Invalid input", "the body must be a JSON object with the request's fields"),
    ),
    case(
        "json string body",
        BCE,
        b'"labels"',
        problem(422, "invalid-input", "Invalid input", "the body must be a JSON object with the request's fields"),
    ),
    case(
        "json null body",
        BCE,
        b"null",
        problem(422, "invalid-input", "Invalid input", "the body must be a JSON object with the request's fields"),
    ),
    case(
        "no fields at all: the missing ones are listed together",
        CE,
        b"{}",
        {
            "type": "urn:xent:problem:invalid-input",
            "title": "Invalid input",
            "status": 422,
            "detail": "predictions: Field required (and 1 more)",
            "errors": [
                {"loc": ["body", "predictions"], "msg": "Field required", "type": "missing"},
                {"loc": ["body", "labels"], "msg": "Field required", "type": "missing"},
            ],
        },
    ),
    # --- non-UTF-8 and byte order marks
    case(
        "latin-1 byte in a class name",
        CE,
        b'{"labels":["caf\xe9"],"classes":["caf\xe9","tea"],"predictions":[[0.5,0.5]]}',
        malformed_json("the body is not valid JSON: invalid unicode code point at line 1 column 16"),
    ),
    case(
        "lone surrogate escape in a class name",
        CE,
        b'{"labels":["\\ud800"],"classes":["\\ud800","b"],"predictions":[[0.5,0.5]]}',
        malformed_json("the body is not valid JSON: unexpected end of hex escape at line 1 column 19"),
    ),
    case(
        "UTF-8 byte order mark",
        CE,
        b"\xef\xbb\xbf" + REFERENCE,
        malformed_json("the body starts with a UTF-8 byte order mark; send JSON as UTF-8 without one"),
    ),
    case(
        "UTF-8 byte order mark on the fast path",
        CE,
        b"\xef\xbb\xbf" + big_rows(4000),
        malformed_json("the body starts with a UTF-8 byte order mark; send JSON as UTF-8 without one"),
    ),
    case(
        "UTF-16 body",
        BCE,
        '{"labels":[1],"predictions":[0.5]}'.encode("utf-16"),
        malformed_json("the body starts with a UTF-16 byte order mark; send JSON as UTF-8 without one"),
    ),
    # --- huge exponents, NaN and Infinity tokens
    case(
        "1e999 in binary predictions",
        BCE,
        b'{"labels":[1,0],"predictions":[0.5,1e999]}',
        invalid(
            "predictions row 1",
            ["body", "predictions", 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "-1e999 in logits",
        CE,
        b'{"labels":[0],"predictions":[[-1e999,0]],"prediction_type":"logits"}',
        invalid(
            "predictions row 0, column 0",
            ["body", "predictions", 0, 0],
            "-Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "1e999 in sample_weights",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"sample_weights":[1e999]}',
        invalid(
            "sample_weights row 0",
            ["body", "sample_weights", 0],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "1e999 in label_smoothing",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"label_smoothing":1e999}',
        invalid(
            "label_smoothing", ["body", "label_smoothing"], "Input should be less than or equal to 1", "less_than_equal"
        ),
    ),
    case(
        "1e999 in soft labels",
        CE,
        b'{"labels":[[1e999,0]],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0, column 0",
            ["body", "labels", 0, 0],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "NaN in binary labels",
        BCE,
        b'{"labels":[NaN],"predictions":[0.5]}',
        invalid("labels row 0", ["body", "labels", 0], "NaN is not allowed; every number must be finite", "not_finite"),
    ),
    case(
        "Infinity in class_weights",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"class_weights":[1,Infinity]}',
        invalid(
            "class_weights row 1",
            ["body", "class_weights", 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "NaN epsilon",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"epsilon":NaN}',
        invalid("epsilon", ["body", "epsilon"], 'must be "auto" or a number in [0, 0.5)', "epsilon"),
    ),
    case(
        "Infinity tolerance",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"tolerance":Infinity}',
        invalid("tolerance", ["body", "tolerance"], "Input should be less than 1", "less_than"),
    ),
    case(
        "NaN on the fast path in the last row",
        CE,
        big_rows(4000, last=b"[0.228,NaN,0.153]"),
        invalid(
            "predictions row 3999, column 1",
            ["body", "predictions", 3999, 1],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    # --- deep nesting and long strings
    case(
        "10000-deep nesting",
        CE,
        b'{"labels":[1],"predictions":' + b"[" * 10000 + b"]" * 10000 + b"}",
        malformed_json("the body is not valid JSON: recursion limit exceeded at line 1 column 229"),
    ),
    case(
        "10000-deep nesting on the fast path",
        BCE,
        b'{"labels":[1],"unit":"' + b"x" * 70000 + b'","predictions":' + b"[" * 10000 + b"]" * 10000 + b"}",
        malformed_json("the body is not valid JSON: recursion limit exceeded at line 1 column 70239"),
    ),
    case(
        "a third level of nesting",
        CE,
        b'{"labels":[1],"predictions":[[[0.5],[0.5]]]}',
        invalid(
            "predictions row 0, column 0",
            ["body", "predictions", 0, 0],
            "expected a number, got an array",
            "not_a_number",
        ),
    ),
    case(
        "binary predictions nested three deep",
        BCE,
        b'{"labels":[[1]],"predictions":[[[0.5]]]}',
        invalid(
            "predictions row 0, column 0",
            ["body", "predictions", 0, 0],
            "expected a number, got an array",
            "not_a_number",
        ),
    ),
    case(
        "10^6-character class name label",
        CE,
        b'{"labels":["' + b"a" * M + b'"],"classes":["a","b"],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["body", "labels", 0],
            "unknown class '" + "a" * 64 + "…'; classes are ['a', 'b']",
            "unknown_class",
        ),
    ),
    case(
        "10^6-character unknown field name",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"' + b"a" * M + b'":1}',
        invalid(
            "a" * 64 + "…",
            ["body", "a" * 64 + "…"],
            "unknown field '" + "a" * 64 + f"…' (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "10^6-character unit",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"unit":"' + b"n" * M + b'"}',
        invalid("unit", ["body", "unit"], "Input should be 'nats', 'bits' or 'hartleys'", "literal_error"),
    ),
    case(
        "10^6-character string for a number",
        CE,
        b'{"labels":[1],"predictions":[[0.5,"' + b"1" * M + b'"]]}',
        invalid(
            "predictions row 0, column 1",
            ["body", "predictions", 0, 1],
            "expected a number, got the string '" + "1" * 64 + "…'",
            "not_a_number",
        ),
    ),
    case(
        "10^6-digit integer",
        CE,
        b'{"labels":[1],"predictions":[[0.5,' + b"1" * M + b"]]}",
        malformed_json("the body is not valid JSON: number out of range at line 1 column 4336"),
    ),
    case(
        "10^6-digit integer on the fast path",
        BCE,
        b'{"labels":[1],"predictions":[' + b"9" * 70000 + b"]}",
        malformed_json("the body is not valid JSON: number out of range at line 1 column 4331"),
    ),
    # --- duplicated keys, unknown fields, wrong types
    case(
        "duplicated key: the last one wins",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"labels":[2]}',
        invalid("labels row 0", ["body", "labels", 0], "class index 2 is out of range [0, 2)", "unknown_class"),
    ),
    case(
        "duplicated key on the fast path: the last one wins",
        CE,
        big_rows(4000, extra=b',"unit":"nats","unit":"furlongs"'),
        invalid("unit", ["body", "unit"], "Input should be 'nats', 'bits' or 'hartleys'", "literal_error"),
    ),
    case(
        "unknown field",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"threshold":0.5}',
        invalid(
            "threshold", ["body", "threshold"], f"unknown field 'threshold' (fields: {BCE_FIELDS})", "extra_forbidden"
        ),
    ),
    # --- unknown keys: the first one decides the 422, at once, whatever follows it (issue 12 item 5)
    case(
        "100,000 unknown keys: the first one is named, in linear time",
        CE,
        b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(100_000)) + b',"labels":[1],"predictions":[[0.5,0.5]]}',
        invalid("k0", ["body", "k0"], f"unknown field 'k0' (fields: {CE_FIELDS})", "extra_forbidden"),
    ),
    case(
        "100,000 unknown keys on the fast path",
        CE,
        big_rows(4000, extra=b"," + b",".join(b'"k%d":%d' % (i, i) for i in range(100_000))),
        invalid("k0", ["body", "k0"], f"unknown field 'k0' (fields: {CE_FIELDS})", "extra_forbidden"),
    ),
    case(
        "an unknown key alone decides, not the missing fields beside it",
        BCE,
        b'{"threshold":0.5}',
        invalid(
            "threshold", ["body", "threshold"], f"unknown field 'threshold' (fields: {BCE_FIELDS})", "extra_forbidden"
        ),
    ),
    case(
        "an unknown key spelt with escapes is named decoded",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"th\\u0072esh\\"old":0.5}',
        invalid(
            'thresh"old',
            ["body", 'thresh"old'],
            f"unknown field 'thresh\"old' (fields: {BCE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "an unknown key sent twice, after a duplicated known key",
        CE,
        b'{"unit":"bits","labels":[1],"unit":"nats","predictions":[[0.5,0.5]],"units":1,"units":2,"zz":3}',
        invalid(
            "units",
            ["body", "units"],
            f"unknown field 'units'; did you mean 'unit'? (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "an unknown key on the fast path among escapes and a duplicate",
        CE,
        big_rows(4000, extra=b',"unit":"bits","unit":"n\\u0061ts","per_s\\u0061mple":true,"weights":[1]'),
        invalid(
            "weights",
            ["body", "weights"],
            f"unknown field 'weights'; did you mean 'class_weights'? (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "an unknown key is refused before any value is parsed",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5,]],"tresholds":[1,2,]}',
        invalid(
            "tresholds",
            ["body", "tresholds"],
            f"unknown field 'tresholds' (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "classes on the binary endpoint",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"classes":["no","yes"]}',
        invalid(
            "classes",
            ["body", "classes"],
            f"unknown field 'classes'; did you mean 'labels'? (fields: {BCE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "boolean in binary labels",
        BCE,
        b'{"labels":[true,false],"predictions":[0.5,0.5]}',
        invalid("labels row 0", ["body", "labels", 0], "expected a number, got true", "not_a_number"),
    ),
    case(
        "boolean sample weight",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"sample_weights":[true]}',
        invalid("sample_weights row 0", ["body", "sample_weights", 0], "expected a number, got true", "not_a_number"),
    ),
    case(
        "boolean tolerance",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"tolerance":true}',
        invalid("tolerance", ["body", "tolerance"], "Input should be a valid number", "float_type"),
    ),
    case(
        "boolean in the last prediction row",
        CE,
        b'{"labels":[1,1,1],"predictions":[[0.5,0.5],[0.5,0.5],[0.5,false]]}',
        invalid(
            "predictions row 2, column 1", ["body", "predictions", 2, 1], "expected a number, got false", "not_a_number"
        ),
    ),
    case(
        "number for per_sample",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"per_sample":"yes"}',
        invalid("per_sample", ["body", "per_sample"], "Input should be a valid boolean", "bool_type"),
    ),
    case(
        "string for gradient",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"gradient":"true"}',
        invalid("gradient", ["body", "gradient"], "Input should be a valid boolean", "bool_type"),
    ),
    case(
        "gradient without the per-sample arrays it is one of",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"gradient":true,"per_sample":false}',
        invalid("gradient", ["body", "gradient"], GRADIENT_NEEDS_PER_SAMPLE, "invalid_option"),
    ),
    case(
        "null predictions",
        CE,
        b'{"labels":[1],"predictions":null}',
        invalid(
            "predictions",
            ["body", "predictions"],
            "expected an array of rows (arrays of numbers), got null",
            "bad_shape",
        ),
    ),
    case(
        "numbers for class names",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"classes":[0,1]}',
        {
            "type": "urn:xent:problem:invalid-input",
            "title": "Invalid input",
            "status": 422,
            "detail": "classes → 0: Input should be a valid string (and 1 more)",
            "errors": [
                {"loc": ["body", "classes", 0], "msg": "Input should be a valid string", "type": "string_type"},
                {"loc": ["body", "classes", 1], "msg": "Input should be a valid string", "type": "string_type"},
            ],
        },
    ),
    # --- negative zero and denormals
    case(
        "negative zero as a class index",
        CE,
        b'{"labels":[-0.0],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["body", "labels", 0],
            "expected a class index, a class name or a row of probabilities, got -0.0",
            "invalid_input",
        ),
    ),
    case(
        "denormal as a class index",
        CE,
        b'{"labels":[5e-324],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["body", "labels", 0],
            "expected a class index, a class name or a row of probabilities, got 5e-324",
            "invalid_input",
        ),
    ),
    case(
        "denormal below zero as a probability",
        BCE,
        b'{"labels":[1],"predictions":[-5e-324]}',
        invalid(
            "predictions row 0",
            ["body", "predictions", 0],
            'probability -5e-324 is outside [0, 1] (for scores, set prediction_type to "logits")',
            "out_of_range",
        ),
    ),
    case(
        "denormal below zero as a sample weight",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"sample_weights":[-5e-324]}',
        invalid(
            "sample_weights row 0",
            ["body", "sample_weights", 0],
            "weight -5e-324 is negative; weights must be >= 0",
            "out_of_range",
        ),
    ),
    case(
        "ignore_index past int64",
        CE,
        b'{"labels":[1],"predictions":[[0.5,0.5]],"ignore_index":100000000000000000000}',
        invalid(
            "ignore_index",
            ["body", "ignore_index"],
            "Input should be less than or equal to 9223372036854775807",
            "less_than_equal",
        ),
    ),
    # --- shapes: ragged at the last row, mismatched lengths, out of range by one
    case(
        "ragged at the last row",
        CE,
        b'{"labels":[0,1,2,0],"predictions":[[0.2,0.3,0.5],[0.2,0.3,0.5],[0.2,0.3,0.5],[0.2,0.3]]}',
        invalid(
            "predictions row 3",
            ["body", "predictions", 3],
            "row has 2 values but row 0 has 3; every row needs the same length",
            "bad_shape",
        ),
    ),
    case(
        "ragged at the last row on the fast path",
        CE,
        big_rows(4000, last=b"[0.228,0.619]"),
        invalid(
            "predictions row 3999",
            ["body", "predictions", 3999],
            "row has 2 values but row 0 has 3; every row needs the same length",
            "bad_shape",
        ),
    ),
    case(
        "binary ragged at the last row",
        BCE,
        b'{"labels":[[1,0],[0,1],[1,0]],"predictions":[[0.5,0.5],[0.5,0.5],[0.5,0.5,0.5]]}',
        invalid(
            "predictions row 2",
            ["body", "predictions", 2],
            "row has 3 values but row 0 has 2; every row needs the same length",
            "bad_shape",
        ),
    ),
    case(
        "one label more than rows",
        CE,
        b'{"labels":[1,1],"predictions":[[0.5,0.5]]}',
        invalid("labels", ["body", "labels"], "has 2 entries but predictions have 1 row", "bad_shape"),
    ),
    case(
        "one label fewer than rows on the fast path",
        CE,
        big_rows(4000).replace(b'"labels":[1,', b'"labels":[', 1),
        invalid("labels", ["body", "labels"], "has 3999 entries but predictions have 4000 rows", "bad_shape"),
    ),
    case(
        "binary labels one column short",
        BCE,
        b'{"labels":[[1,0]],"predictions":[[0.5,0.5,0.5]]}',
        invalid("labels", ["body", "labels"], "has shape (1, 2) but predictions have shape (1, 3)", "bad_shape"),
    ),
    case(
        "label C, out of range by one",
        CE,
        b'{"labels":[0,3],"predictions":[[0.2,0.3,0.5],[0.2,0.3,0.5]]}',
        invalid("labels row 1", ["body", "labels", 1], "class index 3 is out of range [0, 3)", "unknown_class"),
    ),
    case(
        "label -1, out of range by one",
        CE,
        b'{"labels":[-1,0],"predictions":[[0.2,0.3,0.5],[0.2,0.3,0.5]]}',
        invalid("labels row 0", ["body", "labels", 0], "class index -1 is out of range [0, 3)", "unknown_class"),
    ),
    case(
        "label C on the fast path, last row",
        CE,
        big_rows(4000).replace(b",1],", b",3],", 1),
        invalid("labels row 3999", ["body", "labels", 3999], "class index 3 is out of range [0, 3)", "unknown_class"),
    ),
    case(
        "binary label 2",
        BCE,
        b'{"labels":[0,1,2],"predictions":[0.5,0.5,0.5]}',
        invalid("labels row 2", ["body", "labels", 2], "label 2.0 is outside [0, 1]", "out_of_range"),
    ),
    case(
        "soft label above 1 by a hair",
        BCE,
        b'{"labels":[1.0000000000000002],"predictions":[0.5]}',
        invalid("labels row 0", ["body", "labels", 0], "label 1.0000000000000002 is outside [0, 1]", "out_of_range"),
    ),
    # --- field by field: shapes, values, labels, options and types, each naming its field, row and column
    case(
        "ragged prediction rows",
        CE,
        b'{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.3,0.5]]}',
        invalid(
            "predictions row 1",
            ["body", "predictions", 1],
            "row has 3 values but row 0 has 2; every row needs the same length",
            "bad_shape",
        ),
    ),
    case(
        "ragged binary label rows",
        BCE,
        b'{"labels":[[1,0],[1]],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid(
            "labels row 1",
            ["body", "labels", 1],
            "row has 1 value but row 0 has 2; every row needs the same length",
            "bad_shape",
        ),
    ),
    case(
        "fewer labels than prediction rows",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5],[0.2,0.8]]}',
        invalid("labels", ["body", "labels"], "has 1 entry but predictions have 2 rows", "bad_shape"),
    ),
    case(
        "binary labels and predictions of different shapes",
        BCE,
        b'{"labels":[1,0],"predictions":[0.5]}',
        invalid("labels", ["body", "labels"], "has shape (2,) but predictions have shape (1,)", "bad_shape"),
    ),
    case(
        "sample_weights length",
        CE,
        b'{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.8]],"sample_weights":[1]}',
        invalid("sample_weights", ["body", "sample_weights"], "has 1 value but there are 2 rows", "bad_shape"),
    ),
    case(
        "class_weights length",
        CE,
        b'{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.8]],"class_weights":[1,2,3]}',
        invalid("class_weights", ["body", "class_weights"], "has 3 values but there are 2 classes", "bad_shape"),
    ),
    case(
        "classes length",
        CE,
        b'{"labels":["a"],"predictions":[[0.5,0.5]],"classes":["a","b","c"]}',
        invalid("classes", ["body", "classes"], "has 3 names but predictions have 2 columns", "bad_shape"),
    ),
    case(
        "pos_weight length",
        BCE,
        b'{"labels":[[1,0]],"predictions":[[0.5,0.5]],"pos_weight":[1,2,3]}',
        invalid("pos_weight", ["body", "pos_weight"], "has 3 values but there are 2 labels per sample", "bad_shape"),
    ),
    case(
        "one class",
        CE,
        b'{"labels":[0],"predictions":[[1.0]]}',
        invalid(
            "predictions",
            ["body", "predictions"],
            "each row needs at least 2 classes (columns), got 1; for one probability per sample use binary "
            "cross-entropy",
            "bad_shape",
        ),
    ),
    case(
        "NaN token",
        CE,
        b'{"labels":[0],"predictions":[[NaN,0.5]]}',
        invalid(
            "predictions row 0, column 0",
            ["body", "predictions", 0, 0],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "Infinity token",
        CE,
        b'{"labels":[0],"predictions":[[0.5,Infinity]]}',
        invalid(
            "predictions row 0, column 1",
            ["body", "predictions", 0, 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "-Infinity token",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[-Infinity,0.5]]}',
        invalid(
            "predictions row 1, column 0",
            ["body", "predictions", 1, 0],
            "-Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "1e999 overflows",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,1e999]]}',
        invalid(
            "predictions row 1, column 1",
            ["body", "predictions", 1, 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "NaN weight",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"sample_weights":[1,NaN]}',
        invalid(
            "sample_weights row 1",
            ["body", "sample_weights", 1],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
    ),
    case(
        "probability above 1",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,1.5]]}',
        invalid(
            "predictions row 1, column 1", ["body", "predictions", 1, 1], f"probability 1.5 {OUTSIDE}", "out_of_range"
        ),
    ),
    case(
        "negative probability",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[-0.1,1.1]],"normalization":"renormalize"}',
        invalid(
            "predictions row 1, column 0", ["body", "predictions", 1, 0], f"probability -0.1 {OUTSIDE}", "out_of_range"
        ),
    ),
    case(
        "binary probability above 1 in an N-vector",
        BCE,
        b'{"labels":[1,0],"predictions":[0.5,1.5]}',
        invalid("predictions row 1", ["body", "predictions", 1], f"probability 1.5 {OUTSIDE}", "out_of_range"),
    ),
    case(
        "binary label above 1 in an N-vector",
        BCE,
        b'{"labels":[1,2],"predictions":[0.5,0.5]}',
        invalid("labels row 1", ["body", "labels", 1], "label 2.0 is outside [0, 1]", "out_of_range"),
    ),
    case(
        "binary probability below 0 in an NxK matrix",
        BCE,
        b'{"labels":[[1,0],[0,1]],"predictions":[[0.5,0.5],[0.5,-0.5]]}',
        invalid(
            "predictions row 1, column 1", ["body", "predictions", 1, 1], f"probability -0.5 {OUTSIDE}", "out_of_range"
        ),
    ),
    case(
        "negative sample weight",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"sample_weights":[1,-2]}',
        invalid(
            "sample_weights row 1",
            ["body", "sample_weights", 1],
            "weight -2.0 is negative; weights must be >= 0",
            "out_of_range",
        ),
    ),
    case(
        "negative class weight",
        CE,
        b'{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"class_weights":[1,-2]}',
        invalid(
            "class_weights row 1",
            ["body", "class_weights", 1],
            "weight -2.0 is negative; weights must be >= 0",
            "out_of_range",
        ),
    ),
    case(
        "negative pos_weight",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"pos_weight":-1}',
        invalid(
            "pos_weight row 0",
            ["body", "pos_weight", 0],
            "weight -1.0 is negative; weights must be >= 0",
            "out_of_range",
        ),
    ),
    case(
        "negative target probability",
        CE,
        b'{"labels":[[1.5,-0.5]],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0, column 1", ["body", "labels", 0, 1], "target probability -0.5 is negative", "out_of_range"
        ),
    ),
    case(
        "target row off 1",
        CE,
        b'{"labels":[[0.5,0.6]],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["body", "labels", 0],
            'target row sums to 1.1, not 1 within tolerance 0.001 (1 row is off); set normalization to "renormalize" '
            "to rescale targets",
            "rows_not_normalized",
        ),
    ),
    case(
        "label C",
        CE,
        b'{"labels":[0,2],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid("labels row 1", ["body", "labels", 1], "class index 2 is out of range [0, 2)", "unknown_class"),
    ),
    case(
        "label -1",
        CE,
        b'{"labels":[0,-1],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid("labels row 1", ["body", "labels", 1], "class index -1 is out of range [0, 2)", "unknown_class"),
    ),
    case(
        "label -1 beside ignore_index",
        CE,
        b'{"labels":[0,-1],"predictions":[[0.5,0.5],[0.5,0.5]],"ignore_index":-100}',
        invalid(
            "labels row 1",
            ["body", "labels", 1],
            "class index -1 is out of range [0, 2) (ignore_index is -100)",
            "unknown_class",
        ),
    ),
    case(
        "unknown class name",
        CE,
        b'{"labels":["a","z"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","b"]}',
        invalid("labels row 1", ["body", "labels", 1], "unknown class 'z'; classes are ['a', 'b']", "unknown_class"),
    ),
    case(
        "class names without classes",
        CE,
        b'{"labels":["a"],"predictions":[[0.5,0.5]]}',
        invalid(
            "classes",
            ["body", "classes"],
            "is required when labels are class names (it gives the column of each name)",
            "invalid_input",
        ),
    ),
    case(
        "duplicate class names",
        CE,
        b'{"labels":["a","b"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","a"]}',
        invalid(
            "classes row 1", ["body", "classes", 1], "duplicate class name 'a' (also at position 0)", "invalid_input"
        ),
    ),
    case(
        "ignore_index with class names",
        CE,
        b'{"labels":["a","b"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","b"],"ignore_index":-100}',
        invalid(
            "ignore_index",
            ["body", "ignore_index"],
            "applies only to class-index labels, not to class names",
            "invalid_option",
        ),
    ),
    case(
        "ignore_index with distributions",
        CE,
        b'{"labels":[[1,0],[0,1]],"predictions":[[0.5,0.5],[0.5,0.5]],"ignore_index":-100}',
        invalid(
            "ignore_index",
            ["body", "ignore_index"],
            "applies only to class-index labels, not to probability rows",
            "invalid_option",
        ),
    ),
    case(
        "label_smoothing above 1",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":1.5}',
        invalid(
            "label_smoothing", ["body", "label_smoothing"], "Input should be less than or equal to 1", "less_than_equal"
        ),
    ),
    case(
        "label_smoothing below 0",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"label_smoothing":-0.1}',
        invalid(
            "label_smoothing",
            ["body", "label_smoothing"],
            "Input should be greater than or equal to 0",
            "greater_than_equal",
        ),
    ),
    case(
        "epsilon 0.5",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"epsilon":0.5}',
        invalid("epsilon", ["body", "epsilon"], 'must be "auto" or a number in [0, 0.5)', "epsilon"),
    ),
    case(
        "misspelt label_smoothing",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"label_smothing":0.1}',
        invalid(
            "label_smothing",
            ["body", "label_smothing"],
            f"unknown field 'label_smothing'; did you mean 'label_smoothing'? (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "misspelt pos_weight",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"pos_weights":2}',
        invalid(
            "pos_weights",
            ["body", "pos_weights"],
            f"unknown field 'pos_weights'; did you mean 'pos_weight'? (fields: {BCE_FIELDS})",
            "extra_forbidden",
        ),
    ),
    case(
        "boolean prediction",
        CE,
        b'{"labels":[0],"predictions":[[true,0.5]]}',
        invalid(
            "predictions row 0, column 0", ["body", "predictions", 0, 0], "expected a number, got true", "not_a_number"
        ),
    ),
    case(
        "boolean binary prediction",
        BCE,
        b'{"labels":[1],"predictions":[false]}',
        invalid("predictions row 0", ["body", "predictions", 0], "expected a number, got false", "not_a_number"),
    ),
    case(
        "boolean label",
        CE,
        b'{"labels":[true],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["body", "labels", 0],
            "expected a class index, a class name or a row of probabilities, got true",
            "invalid_input",
        ),
    ),
    case(
        "boolean label after an index",
        CE,
        b'{"labels":[0,false],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid(
            "labels row 1",
            ["body", "labels", 1],
            "expected a class index like row 0, got false; all labels must be of one kind",
            "invalid_input",
        ),
    ),
    case(
        "boolean label_smoothing",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":true}',
        invalid("label_smoothing", ["body", "label_smoothing"], "Input should be a valid number", "float_type"),
    ),
    case(
        "boolean ignore_index",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"ignore_index":true}',
        invalid("ignore_index", ["body", "ignore_index"], "Input should be a valid integer", "int_type"),
    ),
    case(
        "boolean pos_weight",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"pos_weight":true}',
        invalid(
            "pos_weight", ["body", "pos_weight"], "expected a number or an array of numbers, got true", "not_a_number"
        ),
    ),
    case(
        "string prediction",
        CE,
        b'{"labels":[0],"predictions":[[0.5,"0.5"]]}',
        invalid(
            "predictions row 0, column 1",
            ["body", "predictions", 0, 1],
            "expected a number, got the string '0.5'",
            "not_a_number",
        ),
    ),
    case(
        "string label_smoothing",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":"0.1"}',
        invalid("label_smoothing", ["body", "label_smoothing"], "Input should be a valid number", "float_type"),
    ),
    case(
        "unknown unit",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"unit":"bit"}',
        invalid("unit", ["body", "unit"], "Input should be 'nats', 'bits' or 'hartleys'", "literal_error"),
    ),
    case(
        "binary log-probabilities",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"prediction_type":"log_probabilities"}',
        invalid(
            "prediction_type",
            ["body", "prediction_type"],
            "Input should be 'probabilities' or 'logits'",
            "literal_error",
        ),
    ),
    case(
        "flat predictions",
        CE,
        b'{"labels":[0],"predictions":[0.5,0.5]}',
        invalid(
            "predictions",
            ["body", "predictions"],
            "expected N rows of C >= 2 numbers, got a flat array of numbers; for one probability per sample use "
            "binary cross-entropy",
            "bad_shape",
        ),
    ),
    # --- content types and encodings
    case(
        "text/plain",
        CE,
        REFERENCE,
        unsupported_media_type(f"{MEDIA_HINT}; got 'text/plain'"),
        content_type="text/plain",
    ),
    case(
        "form-urlencoded",
        CE,
        REFERENCE,
        unsupported_media_type(f"{MEDIA_HINT}; got 'application/x-www-form-urlencoded'"),
        content_type="application/x-www-form-urlencoded",
    ),
    case(
        "no Content-Type header",
        CE,
        REFERENCE,
        unsupported_media_type(f"{MEDIA_HINT}; no Content-Type was sent"),
        content_type=None,
    ),
    case(
        "text/csv",
        CE,
        b"1,0.228,0.619,0.153",
        unsupported_media_type(f"{MEDIA_HINT}; got 'text/csv'"),
        content_type="text/csv",
    ),
    case(
        "multipart form",
        BCE,
        b"--x\r\n\r\n--x--",
        unsupported_media_type(f"{MEDIA_HINT}; got 'multipart/form-data; boundary=x'"),
        content_type="multipart/form-data; boundary=x",
    ),
    case(
        "application/xml",
        CE,
        b"<labels/>",
        unsupported_media_type(f"{MEDIA_HINT}; got 'application/xml'"),
        content_type="application/xml",
    ),
    case(
        "empty Content-Type",
        CE,
        REFERENCE,
        unsupported_media_type(f"{MEDIA_HINT}; no Content-Type was sent"),
        content_type="",
    ),
    case(
        "NPZ sent as JSON",
        CE,
        VALID_NPZ,
        malformed_json("the body is not valid JSON: expected value at line 1 column 1"),
    ),
    case(
        "JSON sent as NPZ",
        CE,
        REFERENCE,
        malformed_npz(NOT_ZIP + "; it looks like JSON: send it with Content-Type: application/json"),
        content_type=NPZ,
    ),
    case(
        "Content-Encoding br",
        CE,
        REFERENCE,
        unsupported_media_type("Content-Encoding 'br' is not supported; send the body as is or gzip-compressed"),
        headers={"content-encoding": "br"},
    ),
    case(
        "Content-Encoding gzip, body not gzip",
        BCE,
        b'{"labels":[1],"predictions":[0.5]}',
        problem(
            400,
            "malformed-gzip",
            "Malformed gzip",
            "the body is not valid gzip: Error -3 while decompressing data: incorrect header check",
        ),
        headers={"content-encoding": "gzip"},
    ),
    case(
        "gzip truncated",
        CE,
        gzip.compress(REFERENCE)[:-12],
        problem(400, "malformed-gzip", "Malformed gzip", "the gzip body is truncated"),
        headers={"content-encoding": "gzip"},
    ),
    case(
        "gzip bomb",
        CE,
        gzip.compress(b" " * (64 * 2**20)),
        problem(
            413,
            "too-large",
            "Payload too large",
            f"the decompressed request body is larger than the limit of {LIMIT} bytes (XENT_MAX_BODY_BYTES)",
        ),
        headers={"content-encoding": "gzip"},
    ),
    case(
        "gzip bomb of an NPZ",
        CE,
        gzip.compress(npz(labels=np.zeros(2**20, dtype=np.int64), predictions=np.zeros((2**20, 2)))),
        problem(
            413,
            "too-large",
            "Payload too large",
            f"the decompressed request body is larger than the limit of {LIMIT} bytes (XENT_MAX_BODY_BYTES)",
        ),
        content_type=NPZ,
        headers={"content-encoding": "gzip"},
    ),
    case(
        "an error answer stays problem+json when NPZ is asked for",
        CE,
        b'{"labels":[5],"predictions":[[0.5,0.5]]}',
        invalid("labels row 0", ["body", "labels", 0], "class index 5 is out of range [0, 2)", "unknown_class"),
        headers={"accept": NPZ},
    ),
    case(
        "query options with a JSON body",
        BCE,
        b'{"labels":[1],"predictions":[0.5]}',
        invalid(
            "unit",
            ["query", "unit"],
            "options of a JSON request go in the body; query parameters are only for application/x-npz bodies",
            "invalid_query_parameter",
        ),
        query="unit=bits",
    ),
    case(
        "query key of 2,000 characters with a JSON body, named in 64",
        BCE,
        b'{"labels":[1],"predictions":[0.5]}',
        invalid(
            "k" * 64 + "…",
            ["query", "k" * 64 + "…"],
            "options of a JSON request go in the body; query parameters are only for application/x-npz bodies",
            "invalid_query_parameter",
        ),
        query="k" * 2000 + "=1",
    ),
    # --- NPZ
    case(
        "NPZ truncated to half",
        CE,
        VALID_NPZ[: len(VALID_NPZ) // 2],
        malformed_npz("the body is not a readable .npz archive: File is not a zip file"),
        content_type=NPZ,
    ),
    case(
        "NPZ cut before its central directory",
        BCE,
        npz(labels=np.array([1]), predictions=np.array([0.5]))[:-22],
        malformed_npz("the body is not a readable .npz archive: File is not a zip file"),
        content_type=NPZ,
    ),
    case(
        "NPZ member with a bad CRC",
        CE,
        with_bad_crc(),
        malformed_npz(
            "the body is not a readable .npz archive: member 'predictions': bad CRC-32: the archive is damaged"
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ member that is not .npy",
        CE,
        stored_zip({"labels.npy": b"hello", "predictions.npy": npy(np.array(ROWS))}),
        malformed_npz("the body is not a readable .npz archive: member 'labels' is not a .npy array (np.save format)"),
        content_type=NPZ,
    ),
    case(
        "NPZ with object predictions (pickle)",
        CE,
        npz(labels=np.array([1]), predictions=np.array([[0.2, "x"]], dtype=object)),
        invalid(
            "predictions",
            ["body", "predictions"],
            "holds Python objects (pickled); only numeric and string arrays are accepted",
            "invalid_input",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with object labels (pickle)",
        BCE,
        npz(labels=np.array([1, None], dtype=object), predictions=np.array([0.5, 0.5])),
        invalid(
            "labels",
            ["body", "labels"],
            "holds Python objects (pickled); only numeric and string arrays are accepted",
            "invalid_input",
        ),
        content_type=NPZ,
    ),
    case(
        "raw pickle body",
        BCE,
        pickle.dumps({"labels": [1], "predictions": [0.5]}),
        malformed_npz(NOT_ZIP),
        content_type=NPZ,
    ),
    case(
        "NPZ missing labels",
        CE,
        npz(predictions=np.array(ROWS)),
        invalid("labels", ["body", "labels"], "Field required", "missing"),
        content_type=NPZ,
    ),
    case(
        "NPZ missing predictions",
        BCE,
        npz(labels=np.array([1])),
        invalid("predictions", ["body", "predictions"], "Field required", "missing"),
        content_type=NPZ,
    ),
    case(
        "NPZ with an extra member",
        CE,
        npz(labels=np.array([1]), predictions=np.array(ROWS), weights=np.array([1.0])),
        invalid(
            "weights",
            ["body", "weights"],
            "unexpected member 'weights' in the archive; members are: "
            "class_weights, classes, cluster_ids, groups, labels, predictions, sample_weights",
            "invalid_input",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with unnamed arrays",
        BCE,
        npz(arr_0=np.array([1]), arr_1=np.array([0.5])),
        invalid(
            "arr_0",
            ["body", "arr_0"],
            "unexpected member 'arr_0' in the archive; members are: "
            "cluster_ids, groups, labels, pos_weight, predictions, sample_weights",
            "invalid_input",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with 3-D predictions",
        CE,
        npz(labels=np.array([1]), predictions=np.zeros((1, 3, 1))),
        invalid(
            "predictions",
            ["body", "predictions"],
            "expected an array of rows (arrays of numbers), got 3 dimensions",
            "bad_shape",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with complex predictions",
        CE,
        npz(labels=np.array([1]), predictions=np.array(ROWS, dtype=complex)),
        invalid(
            "predictions", ["body", "predictions"], "expected an array of numbers, got dtype complex128", "not_a_number"
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with string predictions",
        BCE,
        npz(labels=np.array([1]), predictions=np.array(["0.5"])),
        invalid("predictions", ["body", "predictions"], "expected an array of numbers, got dtype <U3", "not_a_number"),
        content_type=NPZ,
    ),
    case(
        "NPZ with boolean binary labels",
        BCE,
        npz(labels=np.array([True]), predictions=np.array([0.5])),
        invalid("labels", ["body", "labels"], "expected an array of numbers, got dtype bool", "not_a_number"),
        content_type=NPZ,
    ),
    case(
        "NPZ with float32 NaN in the last row",
        CE,
        npz(labels=np.array([1, 1]), predictions=np.array([ROWS[0], [0.2, np.nan, 0.8]], dtype=np.float32)),
        invalid(
            "predictions row 1, column 1",
            ["body", "predictions", 1, 1],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with float32 -inf logits",
        BCE,
        npz(labels=np.array([1]), predictions=np.array([-np.inf], dtype=np.float32)),
        invalid(
            "predictions row 0",
            ["body", "predictions", 0],
            "-Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
        content_type=NPZ,
        query="prediction_type=logits",
    ),
    case(
        "NPZ label C, out of range by one",
        CE,
        npz(labels=np.array([1, 3], dtype=np.int8), predictions=np.array(ROWS * 2)),
        invalid("labels row 1", ["body", "labels", 1], "class index 3 is out of range [0, 3)", "unknown_class"),
        content_type=NPZ,
    ),
    case(
        "NPZ label -1, out of range by one",
        CE,
        npz(labels=np.array([-1], dtype=np.int64), predictions=np.array(ROWS)),
        invalid("labels row 0", ["body", "labels", 0], "class index -1 is out of range [0, 3)", "unknown_class"),
        content_type=NPZ,
    ),
    case(
        "NPZ with mismatched lengths",
        BCE,
        npz(labels=np.array([1, 0, 1]), predictions=np.array([0.5, 0.5])),
        invalid("labels", ["body", "labels"], "has shape (3,) but predictions have shape (2,)", "bad_shape"),
        content_type=NPZ,
    ),
    case(
        "NPZ with ragged sample_weights",
        CE,
        npz(labels=np.array([1]), predictions=np.array(ROWS), sample_weights=np.array([1.0, 2.0])),
        invalid("sample_weights", ["body", "sample_weights"], "has 2 values but there is 1 row", "bad_shape"),
        content_type=NPZ,
    ),
    case(
        "NPZ uncompressed size over the limit",
        CE,
        npz(True, labels=np.array([1]), predictions=np.zeros((300_000, 2))),
        problem(
            413,
            "too-large",
            "Payload too large",
            f"the uncompressed archive is larger than the limit of {LIMIT} bytes (XENT_MAX_BODY_BYTES)",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ bzip2 bomb: a member of 128 bytes declared inflates to 1 GiB",
        CE,
        inflating_past_its_size(zipfile.ZIP_BZIP2, bzip2_zeros(211)),
        not_read("predictions", INFLATES_PAST),
        content_type=NPZ,
    ),
    case(
        "NPZ deflate bomb: a member of 128 bytes declared inflates to 1 GiB",
        BCE,
        inflating_past_its_size(zipfile.ZIP_DEFLATED, deflated_zeros(1024)),
        not_read("predictions", INFLATES_PAST),
        content_type=NPZ,
    ),
    case(
        "NPZ lzma bomb: a member of 128 bytes declared inflates to 16 MiB",
        CE,
        inflating_past_its_size(zipfile.ZIP_LZMA, lzma_zeros(16)),
        not_read("predictions", INFLATES_PAST),
        content_type=NPZ,
    ),
    case(
        "NPZ encrypted member",
        CE,
        with_predictions(npy(np.array(ROWS)), flags=0x1),
        not_read("predictions", "it is encrypted; send the arrays unencrypted, as np.savez writes them"),
        content_type=NPZ,
    ),
    case(
        "NPZ member compressed with method 1 (shrink)",
        BCE,
        with_predictions(npy(np.array([0.5])), method=1),
        not_read("predictions", UNREAD_METHOD.format(1)),
        content_type=NPZ,
    ),
    case(
        "NPZ member compressed with method 99 (AES)",
        CE,
        with_predictions(npy(np.array(ROWS)), method=99),
        not_read("predictions", UNREAD_METHOD.format(99)),
        content_type=NPZ,
    ),
    case(
        "NPZ deflated .npy header declaring shape (2**40,)",
        BCE,
        with_predictions(npy_with_header(header_of(f"({2**40},)", 128), bytes(8)), zipfile.ZIP_DEFLATED),
        not_read(
            "predictions",
            "its .npy header declares shape (1099511627776,) of float64: 8,796,093,022,208 bytes of data; "
            "the member holds 8",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ .npy header with a negative dimension",
        CE,
        with_predictions(npy_with_header(header_of("(-1, 3)", 128), bytes(24))),
        not_read("predictions", "its .npy header declares shape (-1, 3), with a negative dimension"),
        content_type=NPZ,
    ),
    case(
        "NPZ .npy header of 10,001 bytes",
        CE,
        with_predictions(npy_with_header(header_of("(1, 3)", 10_001), bytes(24))),
        not_read("predictions", "its .npy header is 10,001 bytes long; at most 10,000 are read (as by np.load)"),
        content_type=NPZ,
    ),
    case(
        "NPZ member name of 60,000 characters",
        CE,
        stored_zip({"labels.npy": npy(ONE), f"{LONG_NAME}.npy": npy(ONE)}),
        invalid(
            LONG_NAME[:64] + "…",
            ["body", LONG_NAME[:64] + "…"],
            f"unexpected member '{LONG_NAME[:64]}…' in the archive; members are: "
            "class_weights, classes, cluster_ids, groups, labels, predictions, sample_weights",
            "invalid_input",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ with a zip directory of 2,000 empty entries",
        CE,
        hand_zip(*[ZipMember("", b"")] * 2000),
        malformed_npz(
            "the body is not a readable .npz archive: its zip directory is 92,000 bytes long; at most 65,536 are read"
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ unknown query option",
        CE,
        VALID_NPZ,
        invalid(
            "smoothing",
            ["query", "smoothing"],
            f"unknown field 'smoothing'; did you mean 'label_smoothing'? (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
        content_type=NPZ,
        query="smoothing=0.1",
    ),
    case(
        "NPZ array in the query",
        BCE,
        BINARY_NPZ,
        invalid(
            "sample_weights",
            ["query", "sample_weights"],
            "is an array: send it as a member of the .npz archive, not in the query",
            "invalid_query_parameter",
        ),
        content_type=NPZ,
        query="sample_weights=1",
    ),
    case(
        "NPZ query number that is not one",
        CE,
        VALID_NPZ,
        invalid("tolerance", ["query", "tolerance"], "Input should be less than 1", "less_than"),
        content_type=NPZ,
        query="tolerance=1e999",
    ),
    case(
        "NPZ gradient without the per-sample arrays",
        BCE,
        BINARY_NPZ,
        invalid("gradient", ["body", "gradient"], GRADIENT_NEEDS_PER_SAMPLE, "invalid_option"),
        content_type=NPZ,
        query="gradient=true&per_sample=false",
    ),
    case(
        "NPZ query boolean that is not one",
        BCE,
        BINARY_NPZ,
        invalid(
            "per_sample",
            ["query", "per_sample"],
            "Input should be a valid boolean, unable to interpret input",
            "bool_parsing",
        ),
        content_type=NPZ,
        query="per_sample=maybe",
    ),
    case(
        "NPZ query ignore_index past int64",
        CE,
        VALID_NPZ,
        invalid(
            "ignore_index",
            ["query", "ignore_index"],
            "Input should be less than or equal to 9223372036854775807",
            "less_than_equal",
        ),
        content_type=NPZ,
        query="ignore_index=99999999999999999999",
    ),
    # --- compat presets (issue 17): an option the library cannot honour names both; where it raises, its reason
    case(
        "compat: an unknown preset",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"tensorflow"}',
        invalid(
            "compat",
            ["body", "compat"],
            "Input should be 'xent', 'pytorch', 'sklearn', 'keras' or 'scipy'",
            "literal_error",
        ),
    ),
    case(
        "compat sklearn: label_smoothing",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"sklearn","label_smoothing":0.1}',
        invalid(
            "label_smoothing",
            ["body", "label_smoothing"],
            'cannot be honoured with compat "sklearn": log_loss has no label smoothing',
            "invalid_option",
        ),
    ),
    case(
        "compat keras: calibration of negative probabilities (was a 500)",
        CE,
        b'{"labels":[1,0],"predictions":[[-0.2,-0.8],[0.5,0.5]],"compat":"keras","calibration_bins":2}',
        invalid(
            "calibration_bins",
            ["body", "calibration_bins"],
            "cannot be honoured with compat \"keras\": it reads probabilities by xent's rules, not the library's; "
            'ask for it with compat "xent"',
            "invalid_option",
        ),
    ),
    case(
        "compat scipy: per_class",
        CE,
        b'{"labels":[1,0],"predictions":[[2,6],[0.5,0.5]],"compat":"scipy","per_class":true}',
        invalid(
            "per_class",
            ["body", "per_class"],
            "cannot be honoured with compat \"scipy\": it reads probabilities by xent's rules, not the library's; "
            'ask for it with compat "xent"',
            "invalid_option",
        ),
    ),
    case(
        "compat keras, binary: calibration of a prediction past 1 (was a wrong Brier)",
        BCE,
        b'{"labels":[1,0,1],"predictions":[-1.5,0.2,1.5],"compat":"keras","calibration_bins":2}',
        invalid(
            "calibration_bins",
            ["body", "calibration_bins"],
            "cannot be honoured with compat \"keras\": it reads probabilities by xent's rules, not the library's; "
            'ask for it with compat "xent"',
            "invalid_option",
        ),
    ),
    case(
        "calibration with weights summing past float64 (was a Brier of 0 and an unmergeable state)",
        CE,
        b'{"labels":[1,0,1],"predictions":[[0.2,0.8],[0.6,0.4],[0.5,0.5]],'
        b'"sample_weights":[1e308,1e308,1e308],"calibration_bins":3}',
        invalid(
            "sample_weights",
            ["body", "sample_weights"],
            "their sum passes float64's largest number (1.8e308), which per_class and calibration_bins add up; "
            "only the weights' ratios matter, so divide them all by a common factor",
            "invalid_option",
        ),
    ),
    case(
        "calibration with every weight below 2^-1000 (was a Brier of 0 for 0.101: products short of precision)",
        BCE,
        b'{"labels":[1,0],"predictions":[0.8,0.3],"sample_weights":[5e-324,5e-324],"calibration_bins":3}',
        invalid(
            "sample_weights",
            ["body", "sample_weights"],
            TINY_CALIBRATION_WEIGHTS,
            "invalid_option",
        ),
    ),
    case(
        "multi-class calibration with a weight below 2^-1000",
        CE,
        b'{"labels":[1,0],"predictions":[[0.2,0.8],[0.6,0.4]],"sample_weights":[1e-305,3e-305],"calibration_bins":2}',
        invalid("sample_weights", ["body", "sample_weights"], TINY_CALIBRATION_WEIGHTS, "invalid_option"),
    ),
    case(
        "groups with weights 2^1000 apart (was a mean of 0 for 0.78 in the group of the smallest)",
        CE,
        b'{"labels":[1,0,2,1],"predictions":[[0.2,0.8,0],[0.6,0.4,0],[0.1,0.2,0.7],[0.3,0.3,0.4]],'
        b'"sample_weights":[1,1,5e-324,5e-324],"groups":["a","a","b","b"],"per_class":true}',
        invalid(
            "sample_weights",
            ["body", "sample_weights"],
            weights_too_far_apart("groups and per_class"),
            "invalid_option",
        ),
    ),
    case(
        "binary groups and calibration with weights 2^1000 apart",
        BCE,
        b'{"labels":[1,0,1],"predictions":[0.8,0.3,0.6],"sample_weights":[1e300,1,1e-10],'
        b'"groups":["a","b","b"],"calibration_bins":2}',
        invalid(
            "sample_weights",
            ["body", "sample_weights"],
            weights_too_far_apart("groups and calibration_bins"),
            "invalid_option",
        ),
    ),
    case(
        "compat sklearn: an epsilon contradicting the dtype's",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"sklearn","epsilon":1e-15}',
        invalid(
            "epsilon",
            ["body", "epsilon"],
            'cannot be honoured with compat "sklearn": the library clips at 2.220446049250313e-16 '
            '(send "auto" or leave it out)',
            "invalid_option",
        ),
    ),
    case(
        "compat sklearn: an empty batch",
        CE,
        b'{"labels":[],"predictions":[],"compat":"sklearn"}',
        invalid(
            "predictions",
            ["body", "predictions"],
            "has 0 rows; log_loss raises: Found array with 0 sample(s) while a minimum of 1 is required",
            "invalid_input",
        ),
    ),
    case(
        "compat sklearn, NPZ float32: a probability above 1",
        CE,
        npz(labels=np.array([0]), predictions=np.array([[1.5, -0.5]], dtype=np.float32)),
        invalid(
            "predictions row 0, column 0",
            ["body", "predictions", 0, 0],
            "probability 1.5: y_prob contains values greater than 1",
            "out_of_range",
        ),
        content_type=NPZ,
        query="compat=sklearn",
    ),
    case(
        "compat pytorch: multi-class probabilities",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"pytorch"}',
        invalid(
            "prediction_type",
            ["body", "prediction_type"],
            'cannot be honoured with compat "pytorch": PyTorch has no multi-class loss of probabilities: send '
            '"logits" (F.cross_entropy) or "log_probabilities" (F.nll_loss)',
            "invalid_option",
        ),
    ),
    case(
        "compat pytorch: multi-class sample_weights",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"pytorch","prediction_type":"logits","sample_weights":[1]}',
        invalid(
            "sample_weights",
            ["body", "sample_weights"],
            'cannot be honoured with compat "pytorch": F.cross_entropy and F.nll_loss take no per-sample weights',
            "invalid_option",
        ),
    ),
    case(
        "compat pytorch: ignore_index with target rows",
        CE,
        b'{"labels":[[1,0]],"predictions":[[0.5,0.5]],"compat":"pytorch","prediction_type":"logits","ignore_index":0}',
        invalid(
            "ignore_index",
            ["body", "ignore_index"],
            'cannot be honoured with compat "pytorch": ignore_index is not supported for floating point target',
            "invalid_option",
        ),
    ),
    case(
        "compat pytorch: a binary probability above 1",
        BCE,
        b'{"labels":[1],"predictions":[1.5],"compat":"pytorch"}',
        invalid(
            "predictions row 0",
            ["body", "predictions", 0],
            "probability 1.5: all elements of input should be between 0 and 1",
            "out_of_range",
        ),
    ),
    case(
        "compat keras: label_smoothing with class indices",
        CE,
        b'{"labels":[0],"predictions":[[0.5,0.5]],"compat":"keras","label_smoothing":0.1}',
        invalid(
            "label_smoothing",
            ["body", "label_smoothing"],
            'cannot be honoured with compat "keras": SparseCategoricalCrossentropy (class-index labels) has no '
            "label_smoothing; send one-hot target rows",
            "invalid_option",
        ),
    ),
    case(
        "compat keras: pos_weight",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"compat":"keras","pos_weight":2}',
        invalid(
            "pos_weight",
            ["body", "pos_weight"],
            'cannot be honoured with compat "keras": BinaryCrossentropy has no positive-class weight',
            "invalid_option",
        ),
    ),
    case(
        "compat scipy, NPZ: a normalization contradicting the preset",
        CE,
        npz(labels=np.array([0]), predictions=np.array([[0.5, 0.5]], dtype=np.float32)),
        invalid(
            "normalization",
            ["body", "normalization"],
            'cannot be honoured with compat "scipy": the library\'s rows are "renormalize"',
            "invalid_option",
        ),
        content_type=NPZ,
        query="compat=scipy&normalization=warn",
    ),
    # --- groups, per_class and calibration_bins (issue 15)
    case(
        "groups shorter than the batch",
        CE,
        json.dumps({"labels": [1, 0], "predictions": ROWS * 2, "groups": ["a"]}).encode(),
        invalid(
            "groups row 1", ["body", "groups", 1], "has 1 entry but there are 2 rows; row 1 has no group", "bad_shape"
        ),
    ),
    case(
        "groups longer than the batch",
        CE,
        json.dumps({"labels": [1], "predictions": ROWS, "groups": ["a", "b"]}).encode(),
        invalid(
            "groups row 1", ["body", "groups", 1], "has 2 entries but there are 1 row; one group per row", "bad_shape"
        ),
    ),
    case(
        "groups with a number among the names",
        BCE,
        b'{"labels":[1,0],"predictions":[0.5,0.5],"groups":["a",3]}',
        invalid("groups row 1", ["body", "groups", 1], "a group is a string, got 3", "invalid_input"),
    ),
    case(
        "groups that is a boolean, not an array",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"groups":false}',
        invalid("groups", ["body", "groups"], "expected an array of N = 1 strings, got false", "invalid_input"),
    ),
    case(
        "groups with a nested array",
        CE,
        b'{"labels":[1],"predictions":[[0.228,0.619,0.153]],"groups":[["a"]]}',
        invalid("groups row 0", ["body", "groups", 0], "a group is a string, got an array", "invalid_input"),
    ),
    case(
        "groups past XENT_MAX_GROUPS (fast JSON path)",
        BCE,
        json.dumps(
            {"labels": [0] * 10_001, "predictions": [0.5] * 10_001, "groups": [f"g{i}" for i in range(10_001)]}
        ).encode(),
        problem(
            413,
            "too-large",
            "Payload too large",
            "the batch has 10,001 distinct groups; the limit is 10,000 (XENT_MAX_GROUPS)",
        ),
    ),
    case(
        "NPZ groups past XENT_MAX_GROUPS",
        BCE,
        npz(
            labels=np.zeros(10_001),
            predictions=np.full(10_001, 0.5),
            groups=np.array([f"g{i}" for i in range(10_001)]),
        ),
        problem(
            413,
            "too-large",
            "Payload too large",
            "the batch has 10,001 distinct groups; the limit is 10,000 (XENT_MAX_GROUPS)",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ groups of numbers",
        CE,
        npz(labels=ONE, predictions=np.array(ROWS), groups=np.array([1.0])),
        invalid("groups", ["body", "groups"], "groups are strings, got an array of dtype float64", "invalid_input"),
        content_type=NPZ,
    ),
    case(
        "NPZ groups in the query",
        CE,
        VALID_NPZ,
        invalid(
            "groups",
            ["query", "groups"],
            "is an array: send it as a member of the .npz archive, not in the query",
            "invalid_query_parameter",
        ),
        content_type=NPZ,
        query="groups=a",
    ),
    case(
        "calibration_bins of 0",
        CE,
        b'{"labels":[1],"predictions":[[0.228,0.619,0.153]],"calibration_bins":0}',
        invalid(
            "calibration_bins",
            ["body", "calibration_bins"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ),
    ),
    case(
        "calibration_bins past 10,000",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"calibration_bins":10001}',
        invalid(
            "calibration_bins",
            ["body", "calibration_bins"],
            "Input should be less than or equal to 10000",
            "less_than_equal",
        ),
    ),
    case(
        "calibration_bins that is not an integer",
        CE,
        b'{"labels":[1],"predictions":[[0.228,0.619,0.153]],"calibration_bins":1.5}',
        invalid("calibration_bins", ["body", "calibration_bins"], "Input should be a valid integer", "int_type"),
    ),
    case(
        "NPZ query calibration_bins that is not a number",
        CE,
        VALID_NPZ,
        invalid(
            "calibration_bins",
            ["query", "calibration_bins"],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ),
        content_type=NPZ,
        query="calibration_bins=abc",
    ),
    case(
        "per_class on the binary endpoint",
        BCE,
        b'{"labels":[1],"predictions":[0.5],"per_class":true}',
        invalid(
            "per_class", ["body", "per_class"], f"unknown field 'per_class' (fields: {BCE_FIELDS})", "extra_forbidden"
        ),
    ),
    # --- /v1/sequence-cross-entropy (issue 16): each refusal names the sequence and the 0-based position
    case(
        "sequence NaN log-probability",
        SEQ,
        b'{"token_logprobs":[[-1.0],[-1.0,NaN]]}',
        invalid(
            "token_logprobs sequence 1, position 1",
            ["body", "token_logprobs", 1, 1],
            "NaN is not allowed; every log-probability must be finite",
            "not_finite",
        ),
    ),
    case(
        "sequence log-probability overflowing to -Infinity",
        SEQ,
        b'{"token_logprobs":[[-1e999]]}',
        invalid(
            "token_logprobs sequence 0, position 0",
            ["body", "token_logprobs", 0, 0],
            "-Infinity is not allowed; every log-probability must be finite",
            "not_finite",
        ),
    ),
    case(
        "sequence log-probability above 0",
        SEQ,
        b'{"token_logprobs":[[-1.0,0.5]]}',
        invalid(
            "token_logprobs sequence 0, position 1",
            ["body", "token_logprobs", 0, 1],
            "log-probability 0.5 is above 0 (values up to 1e-09 count as 0)",
            "out_of_range",
        ),
    ),
    case(
        "sequence OpenAI -9999 placeholder at a scored position",
        SEQ,
        b'{"completions":[{"token_logprobs":[null,-1.0,-9999.0],"tokens":["a","b","c"]}]}',
        invalid(
            "completions sequence 0, position 2",
            ["body", "completions", 0, 2],
            "-9999 is OpenAI's placeholder for a log-probability it does not have, refused at a scored position "
            "rather than scored as a huge perplexity",
            "out_of_range",
        ),
    ),
    case(
        "sequence log-probability below -1e4",
        SEQ,
        b'{"token_logprobs":[[-10000.5]]}',
        invalid(
            "token_logprobs sequence 0, position 0",
            ["body", "token_logprobs", 0, 0],
            "log-probability -10000.5 is at or below -10000, refused at a scored position",
            "out_of_range",
        ),
    ),
    case(
        "sequence prompt token id absent from its position",
        SEQ,
        b'{"prompt_logprobs":[[null,{"5":{"logprob":-1.0,"rank":1,"decoded_token":"a"}}]],"prompt_token_ids":[[1,6]]}',
        invalid(
            "prompt_logprobs sequence 0, position 1",
            ["body", "prompt_logprobs", 0, 1],
            "token id 6 (from prompt_token_ids) is absent from this position's dictionary",
            "invalid_input",
        ),
    ),
    case(
        "sequence null at a scored TGI position",
        SEQ,
        b'{"tgi_details":[{"prefill":[{"id":1,"text":"a","logprob":null},{"id":2,"text":"b","logprob":null}]}]}',
        invalid(
            "tgi_details sequence 0, position 1",
            ["body", "tgi_details", 0, 1],
            "null log-probability at a scored position; in this form only a prompt's first token may lack one "
            "(set score_from past it, or send token_logprobs, whose nulls are skipped)",
            "invalid_input",
        ),
    ),
    case(
        "sequence document_ids of the wrong length",
        SEQ,
        b'{"token_logprobs":[[-1.0],[-2.0]],"document_ids":["a"]}',
        invalid(
            "document_ids",
            ["body", "document_ids"],
            "has 1 value but there are 2 sequences; one per sequence",
            "bad_shape",
        ),
    ),
    case(
        "sequence num_bytes of the wrong length",
        SEQ,
        b'{"token_logprobs":[[-1.0]],"num_bytes":[3,4]}',
        invalid(
            "num_bytes", ["body", "num_bytes"], "has 2 values but there is 1 sequence; one per sequence", "bad_shape"
        ),
    ),
    case(
        "sequence negative score_from",
        SEQ,
        b'{"token_logprobs":[[-1.0],[-2.0]],"score_from":[0,-3]}',
        invalid(
            "score_from sequence 1", ["body", "score_from", 1], "-3 is negative; positions start at 0", "out_of_range"
        ),
    ),
    case(
        "sequence negative word count",
        SEQ,
        b'{"token_logprobs":[[-1.0],[-1.0]],"num_words":[3,-4]}',
        invalid("num_words sequence 1", ["body", "num_words", 1], "-4 is negative; counts are >= 0", "out_of_range"),
    ),
    case(
        "sequence null document id",
        SEQ,
        b'{"token_logprobs":[[-1.0],[-2.0]],"document_ids":["a",null]}',
        invalid(
            "document_ids sequence 1",
            ["body", "document_ids", 1],
            "expected a string or an integer, got null",
            "not_a_number",
        ),
    ),
    case(
        "sequence request without an input form",
        SEQ,
        b'{"unit":"bits"}',
        invalid(
            "token_logprobs",
            ["body", "token_logprobs"],
            f"exactly one input form is needed ({SEQ_FORMS}); none was given",
            "invalid_input",
        ),
    ),
    case(
        "sequence request with two input forms",
        SEQ,
        b'{"token_logprobs":[[-1.0]],"chat":[{"content":[]}]}',
        invalid(
            "chat",
            ["body", "chat"],
            f"exactly one input form is needed ({SEQ_FORMS}); got token_logprobs, chat",
            "invalid_input",
        ),
    ),
    case(
        "sequence_lengths in a JSON body",
        SEQ,
        b'{"token_logprobs":[-1.0],"sequence_lengths":[1]}',
        invalid(
            "sequence_lengths",
            ["body", "sequence_lengths"],
            "goes with an NPZ body's flat token_logprobs array; a JSON body sends S lists, without it",
            "bad_shape",
        ),
    ),
    case(
        "NPZ sequence NaN named by sequence and position, not the flat index",
        SEQ,
        npz(token_logprobs=np.array([-1.0, -2.0, np.nan, -1.0]), sequence_lengths=np.array([2, 2])),
        invalid(
            "token_logprobs sequence 1, position 0",
            ["body", "token_logprobs", 1, 0],
            "NaN is not allowed; every log-probability must be finite",
            "not_finite",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ sequence float32 log-probability above 0",
        SEQ,
        npz(token_logprobs=np.array([-1.0, -2.0, 1.0], np.float32), sequence_lengths=np.array([1, 2])),
        invalid(
            "token_logprobs sequence 1, position 1",
            ["body", "token_logprobs", 1, 1],
            "log-probability 1.0 is above 0 (values up to 1e-09 count as 0)",
            "out_of_range",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ sequence lengths that do not sum to the log-probabilities",
        SEQ,
        npz(token_logprobs=np.array([-1.0, -2.0, -1.0]), sequence_lengths=np.array([2, 2])),
        invalid(
            "sequence_lengths",
            ["body", "sequence_lengths"],
            "the lengths sum to 4 but token_logprobs holds 3 values",
            "bad_shape",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ sequence flat log-probabilities without their lengths",
        SEQ,
        npz(token_logprobs=np.array([-1.0, -2.0])),
        invalid(
            "token_logprobs",
            ["body", "token_logprobs"],
            "a flat array of log-probabilities comes with sequence_lengths (NPZ)",
            "bad_shape",
        ),
        content_type=NPZ,
    ),
    case(
        "NPZ sequence document_ids of the wrong length",
        SEQ,
        npz(token_logprobs=np.array([-1.0, -2.0]), sequence_lengths=np.array([2]), document_ids=np.array([1, 2])),
        invalid(
            "document_ids",
            ["body", "document_ids"],
            "has 2 values but there is 1 sequence; one per sequence",
            "bad_shape",
        ),
        content_type=NPZ,
    ),
    # --- /v1/sequence-cross-entropy/compare (issue 16 §2): an error in a side names the side
    case(
        "sequence compare: sides of different lengths",
        SEQ_COMPARE,
        b'{"model":{"token_logprobs":[[-1.0],[-2.0]]},"baseline":{"token_logprobs":[[-1.0]]},"num_bytes":[1,1]}',
        invalid(
            "baseline",
            ["body", "baseline"],
            "has 1 sequence but model has 2; sequence i of each is the same text",
            "bad_shape",
        ),
    ),
    case(
        "sequence compare: a positive log-probability in the baseline",
        SEQ_COMPARE,
        b'{"model":{"token_logprobs":[[-1.0]]},"baseline":{"token_logprobs":[[0.5]]},"num_bytes":[1]}',
        invalid(
            "baseline.token_logprobs sequence 0, position 0",
            ["body", "baseline.token_logprobs", 0, 0],
            "log-probability 0.5 is above 0 (values up to 1e-09 count as 0)",
            "out_of_range",
        ),
    ),
    case(
        "sequence compare: no unit both sides count alike",
        SEQ_COMPARE,
        b'{"model":{"token_logprobs":[[-1.0,-2.0]]},"baseline":{"token_logprobs":[[-1.0]]}}',
        invalid(
            "body",
            ["body", "body"],
            "no difference can be computed: per byte: no bytes are known; per word: no words are known; per token: "
            "the two sides count different scored tokens (document 0: 2 vs 1); compare per byte or per word",
            "invalid_input",
        ),
    ),
    case(
        "sequence compare: no input form in the model",
        SEQ_COMPARE,
        b'{"model":{"score_from":1},"baseline":{"token_logprobs":[[-1.0]]}}',
        invalid(
            "model.token_logprobs",
            ["body", "model.token_logprobs"],
            f"exactly one input form is needed ({SEQ_FORMS}); none was given",
            "invalid_input",
        ),
    ),
    case(
        "sequence compare: a shared field inside a side is told the side's fields, not the top level's",
        SEQ_COMPARE,
        b'{"model":{"token_logprobs":[[-1.0]],"unit":"bits"},"baseline":{"token_logprobs":[[-1.0]]}}',
        invalid(
            "model → unit",
            ["body", "model", "unit"],
            "unknown field 'unit' (fields: token_logprobs, completions, chat, prompt_logprobs, prompt_token_ids, "
            "tgi_details, sequence_lengths, score_from, score_until)",
            "extra_forbidden",
        ),
    ),
    # --- POST /v1/merge: forged, malformed and incompatible states (issue 15)
    case(
        "merge of no states",
        MERGE,
        merge_body(),
        invalid("states", ["body", "states"], "expected at least one state to merge, got an empty list", "state_error"),
    ),
    case(
        "merge past XENT_MAX_MERGE_STATES",
        MERGE,
        merge_body(*[{}] * 10_001),
        problem(
            413,
            "too-large",
            "Payload too large",
            "the batch has 10,001 states; the limit is 10,000 (XENT_MAX_MERGE_STATES)",
        ),
    ),
    case(
        "merge of states that are null",
        MERGE,
        b'{"states": null}',
        invalid("states", ["body", "states"], "expected a list of states, got null", "state_error"),
    ),
    case(
        "merge of states that are an object",
        MERGE,
        b'{"states": {"0": {}}}',
        invalid("states", ["body", "states"], "expected a list of states, got an object", "state_error"),
    ),
    case(
        "merge of a state whose settings ask for groups it does not carry",
        MERGE,
        merge_body(forged(("settings", "groups"), True)),
        bad_state(
            "states[0].accumulators.groups",
            [0, "accumulators", "groups"],
            "expected an accumulator: settings.groups is on",
        ),
    ),
    case(
        "merge of a state that carries calibration its settings turn off",
        MERGE,
        merge_body(forged(("accumulators", "calibration"), {"n_bins": 1})),
        bad_state(
            "states[0].accumulators.calibration",
            [0, "accumulators", "calibration"],
            "expected null: settings.calibration_bins is off",
        ),
    ),
    case(
        "merge of states whose groups together pass XENT_MAX_GROUPS",
        MERGE,
        merge_body(
            forged(("accumulators", "groups"), {"names": [f"g{i}" for i in range(6_000)]}),
            forged(("accumulators", "groups"), {"names": [f"g{i}" for i in range(5_000, 11_000)]}),
        ),
        problem(
            413,
            "too-large",
            "Payload too large",
            "the batch has 11,000 distinct groups (of the states together); the limit is 10,000 (XENT_MAX_GROUPS)",
        ),
    ),
    case(
        "merge of a state that is a number",
        MERGE,
        merge_body(3),
        bad_state("states[0]", [0], "a state is a JSON object, got 3"),
    ),
    case(
        "merge of a state of another version",
        MERGE,
        merge_body(forged(("version",), 2)),
        bad_state("states[0].version", [0, "version"], "this service reads states of version 1, got 2"),
    ),
    case(
        "merge of a state without accumulators",
        MERGE,
        merge_body(STATE, forged(("accumulators",), delete=True)),
        bad_state(
            "states[1]", [1], "missing key 'accumulators' (a state has version, settings, n, n_scored, accumulators)"
        ),
    ),
    case(
        "merge of a negative count",
        MERGE,
        merge_body(forged(("n",), -1)),
        bad_state("states[0].n", [0, "n"], "expected a count (an integer ≥ 0), got -1"),
    ),
    case(
        "merge of more scored rows than rows",
        MERGE,
        merge_body(forged(("n_scored",), 2)),
        bad_state("states[0].n_scored", [0, "n_scored"], "2 scored rows is more than the state's n = 1 rows"),
    ),
    case(
        "merge of a NaN mean",
        MERGE,
        merge_body(STATE).replace(b'"mean": 0.47965000629754095', b'"mean": NaN', 1),
        bad_state(
            "states[0].accumulators.cross_entropy.mean",
            [0, "accumulators", "cross_entropy", "mean"],
            "expected a finite number, got nan",
        ),
    ),
    case(
        "merge of a sum that contradicts the mean and weight",
        MERGE,
        merge_body(forged(("accumulators", "cross_entropy", "sum"), 4.8)),
        bad_state(
            "states[0].accumulators.cross_entropy.sum",
            [0, "accumulators", "cross_entropy", "sum"],
            "the sum 4.8 contradicts mean × weight = 0.47965000629754095",
        ),
    ),
    case(
        "merge of a weight that contradicts the count",
        MERGE,
        merge_body(forged(("accumulators", "weight"), 0.0)),
        bad_state(
            "states[0].accumulators.weight",
            [0, "accumulators", "weight"],
            "a total weight of 0.0 contradicts n_weighted = 1 rows of positive weight",
        ),
    ),
    case(
        "merge of moments of the wrong size",
        MERGE,
        merge_body(forged(("accumulators", "accuracy", "w2"), 2.0)),
        bad_state(
            "states[0].accumulators.accuracy.w2",
            [0, "accumulators", "accuracy", "w2"],
            "Σw²/W² lies in [1/n, 1] for n = 1 rows of positive weight, got 2.0",
        ),
    ),
    case(
        "merge of states in other units",
        MERGE,
        merge_body(STATE, forged(("settings", "unit"), "bits")),
        bad_state(
            "states[1].settings.unit",
            [1, "settings", "unit"],
            "incompatible with states[0]: unit is 'bits' here, 'nats' there; "
            "states merge only when they were scored with the same settings",
        ),
    ),
    case(
        "merge of states of other label smoothing",
        MERGE,
        merge_body(STATE, STATE, forged(("settings", "label_smoothing"), 0.1)),
        bad_state(
            "states[2].settings.label_smoothing",
            [2, "settings", "label_smoothing"],
            "incompatible with states[0]: label_smoothing is 0.1 here, 0.0 there; "
            "states merge only when they were scored with the same settings",
        ),
    ),
    case(
        "merge of states of other endpoints",
        MERGE,
        merge_body(STATE, forged(("settings", "endpoint"), "binary-cross-entropy")),
        bad_state(
            "states[1].settings.endpoint",
            [1, "settings", "endpoint"],
            "incompatible with states[0]: endpoint 'binary-cross-entropy', not 'cross-entropy'",
        ),
    ),
    case(
        "merge with a confidence of 1",
        MERGE,
        merge_body(STATE, confidence=1),
        invalid("confidence", ["body", "confidence"], "Input should be less than 1", "less_than"),
    ),
    case(
        "merge of an NPZ archive: the endpoint reads JSON only",
        MERGE,
        npz(states=np.array([1, 2])),
        problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "this endpoint reads JSON only: send the body with Content-Type: application/json",
        ),
        content_type=NPZ,
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """One real server for the whole catalogue (4 MiB limit, 2 s body timeout, no API keys)."""
    settings = {"XENT_MAX_BODY_BYTES": str(LIMIT), "XENT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    """An HTTP client of that server."""
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def settings() -> Settings:
    """The in-process app of this module (tests/conftest.py builds it) runs the real server's settings."""
    return SETTINGS


@pytest.mark.parametrize(("request_", "expected"), CATALOGUE)
def test_each_bad_request_gets_its_exact_problem(
    http: httpx.Client, request_: BadRequest, expected: dict[str, Any]
) -> None:
    response = http.post(request_.url, content=request_.body, headers=request_.sent_headers)

    assert response.status_code == expected["status"], response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == expected


@pytest.mark.anyio
@pytest.mark.parametrize(("request_", "expected"), CATALOGUE)
async def test_each_bad_request_gets_its_exact_problem_in_process(
    client: httpx.AsyncClient, request_: BadRequest, expected: dict[str, Any]
) -> None:
    response = await client.post(request_.url, content=request_.body, headers=request_.sent_headers)

    assert response.status_code == expected["status"], response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == expected


# --- in-process: the body limit at 1024 bytes, methods and paths, and the app after the whole catalogue

SMALL = pytest.mark.parametrize("settings", [Settings(max_body_bytes=1024)])
SMALL_TOO_LARGE = problem(
    413,
    "too-large",
    "Payload too large",
    "the request body is larger than the limit of 1024 bytes (XENT_MAX_BODY_BYTES)",
)


@pytest.mark.anyio
@SMALL
async def test_a_body_over_the_limit_with_a_content_length_is_a_413(post_raw: Any) -> None:
    body = REFERENCE[:-1] + b',"tolerance":0.001' + b" " * 1024 + b"}"

    response = await post_raw(CE, body)

    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == SMALL_TOO_LARGE


@pytest.mark.anyio
@SMALL
async def test_a_streamed_body_over_the_limit_without_a_content_length_is_a_413(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b" " * 256

    response = await client.post(BCE, content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == SMALL_TOO_LARGE


@pytest.mark.anyio
@SMALL
async def test_a_body_at_the_limit_is_read(post_raw: Any) -> None:
    body = REFERENCE + b" " * (1024 - len(REFERENCE))

    response = await post_raw(CE, body)

    assert len(body) == 1024
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("path", [CE, BCE])
async def test_get_on_a_scoring_route_is_a_405_problem(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "POST"
    assert response.json() == problem(405, "method-not-allowed", "Method not allowed", "Method Not Allowed")


@pytest.mark.anyio
async def test_an_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/cross_entropy", json={})

    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == problem(404, "not-found", "Not found", "Not Found")


@pytest.mark.anyio
async def test_after_the_whole_catalogue_the_same_app_scores_the_reference_example_exactly(
    client: httpx.AsyncClient, post_raw: Any
) -> None:
    for param in CATALOGUE:
        request_, expected = param.values
        response = await client.post(request_.url, content=request_.body, headers=request_.sent_headers)
        assert response.status_code == expected["status"], (param.id, response.text)
    assert (await post_raw(CE, "{")).status_code == 400
    assert (await post_raw(CE, REFERENCE, content_type="text/plain")).status_code == 415
    assert (await client.get(CE)).status_code == 405

    response = await post_raw(CE, REFERENCE)

    assert response.status_code == 200, response.text
    assert response.json() == REFERENCE_ANSWER


# --- over a raw socket, against the real server


def _head(path: str, content_type: str = JSON, *, length: int | None = None, chunked: bool = False) -> bytes:
    """Request line and headers of a POST, with Content-Length ``length`` or chunked transfer coding."""
    lines = [f"POST {path} HTTP/1.1", "Host: xent", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _metric(http: httpx.Client, status: int) -> float:
    """How many scoring answers with ``status`` the server has counted."""
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("xent_http_requests_total{") and f'status="{status}"' in line and '"/v1/' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize(("path", "content_type"), [(CE, JSON), (BCE, NPZ)])
def test_a_declared_length_over_the_limit_is_a_413_before_any_body_is_sent(
    server: str, path: str, content_type: str
) -> None:
    response = raw_exchange(server, _head(path, content_type, length=100 * LIMIT), [])

    assert response.status == 413, response.body
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == problem(413, "too-large", "Payload too large", TOO_LARGE)


@pytest.mark.parametrize(("path", "content_type"), [(BCE, JSON), (CE, NPZ)])
def test_a_chunked_body_over_the_limit_without_content_length_is_a_413(
    server: str, path: str, content_type: str
) -> None:
    parts = [_chunk(b" " * 2**16)] * (LIMIT // 2**16 + 8) + [b"0\r\n\r\n"]

    response = raw_exchange(server, _head(path, content_type, chunked=True), parts)

    assert response.status == 413, response.body
    assert response.json() == problem(413, "too-large", "Payload too large", TOO_LARGE)


def test_a_chunked_npz_that_ends_halfway_is_a_400(server: str) -> None:
    half = VALID_NPZ[: len(VALID_NPZ) // 2]

    response = raw_exchange(server, _head(CE, NPZ, chunked=True), [_chunk(half), b"0\r\n\r\n"])

    assert response.status == 400, response.body
    detail = "the body is not a readable .npz archive: File is not a zip file"
    assert response.json() == problem(400, "malformed-npz", "Malformed NPZ", detail)


def test_a_body_that_stops_halfway_is_a_408_after_the_body_timeout(server: str) -> None:
    response = raw_exchange(server, _head(CE, length=len(REFERENCE)), [REFERENCE[:20]])

    assert response.status == 408, response.body
    assert response.headers["connection"] == "close"
    detail = f"the request body did not arrive within {BODY_TIMEOUT} seconds (XENT_BODY_TIMEOUT_SECONDS)"
    assert response.json() == problem(408, "timeout", "Request timeout", detail)


def test_a_body_trickling_in_past_the_body_timeout_is_a_408(server: str) -> None:
    parts = [bytes([byte]) for byte in REFERENCE[: 4 * BODY_TIMEOUT + 4]]

    response = raw_exchange(server, _head(BCE, length=len(REFERENCE)), parts, pause=0.25)

    assert response.status == 408, response.body
    detail = f"the request body did not arrive within {BODY_TIMEOUT} seconds (XENT_BODY_TIMEOUT_SECONDS)"
    assert response.json() == problem(408, "timeout", "Request timeout", detail)


def test_a_client_that_hangs_up_halfway_is_counted_as_a_400_not_a_500(server: str, http: httpx.Client) -> None:
    before = _metric(http, 400)
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_head(CE, length=len(REFERENCE)) + REFERENCE[:20])
        sock.shutdown(socket.SHUT_WR)  # the body ends here: 20 of the 51 bytes declared
        answer = sock.recv(65536)

    # Nobody is left to read an answer; the server closes the connection and counts a 400.
    assert answer == b""
    for _ in range(50):
        if _metric(http, 400) == before + 1:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert _metric(http, 400) == before + 1


async def _post_then_hang_up(app: Any, body: bytes) -> tuple[int, bytes]:
    """Drive the ASGI app directly: part of the body, then http.disconnect; return what it answered."""
    events = [{"type": "http.request", "body": body, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(REFERENCE)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CE,
        "raw_path": CE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_answer_to_a_client_that_hung_up_is_an_incomplete_body_problem() -> None:
    status, body = asyncio.run(_post_then_hang_up(create_app(Settings()), REFERENCE[:20]))

    assert status == 400
    detail = f"the connection closed after 20 bytes of the body of the {len(REFERENCE)} it declared"
    assert json.loads(body) == problem(400, "incomplete-body", "Incomplete body", detail)


def test_after_the_whole_catalogue_the_same_server_scores_the_reference_example_exactly(http: httpx.Client) -> None:
    response = http.post(CE, content=REFERENCE, headers={"content-type": JSON})

    assert response.status_code == 200, response.text
    assert response.json() == REFERENCE_ANSWER
    # Not one of the hostile requests above made the server fail.
    assert _metric(http, 500) == 0
