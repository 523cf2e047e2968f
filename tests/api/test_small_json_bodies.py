"""A small JSON body is parsed by Pydantic alone (the outline costs more than the parse), with the same errors."""

from typing import Any

import pytest
from in_process import post

from service.api.transport import json_codec
from service.settings import Settings

JSON = {"content-type": "application/json"}
PATH = "/v1/cross-entropy"


class _NoOutline:
    @staticmethod
    def of(data: Any) -> None:
        raise AssertionError("a small valid body was outlined")


def test_a_small_valid_body_is_not_outlined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_codec, "JsonOutline", _NoOutline)
    response = post(PATH, b'{"labels":[1],"predictions":[[0.228,0.619,0.153]]}', JSON)
    assert response.status_code == 200, response.text
    assert response.json()["mean"]["cross_entropy"] == 0.47965000629754095


@pytest.mark.parametrize(
    ("body", "settings", "status", "detail"),
    [
        # Pydantic's first error is the predictions'; the outline's, and so the answer's, is the unknown key.
        (b'{"labels":[1],"predictions":"x","pad":1}', Settings(), 422, "pad: unknown field 'pad'"),
        (b'{"pad":1,"labels":[1],"predictions":[[0.5,0.5]]}', Settings(), 422, "pad: unknown field 'pad'"),
        # Under tiny limits a small body can be past them: the outline counts before parsing, as for any body.
        (
            b'{"labels":[1,0,1],"predictions":[[0.5,0.5],[0.5,0.5],[0.5,0.5]]}',
            Settings(max_rows=2),
            413,
            "the batch has 3 rows; the limit is 2 (XENT_MAX_ROWS)",
        ),
    ],
    ids=["unknown key after a bad value", "unknown key first", "past the limits"],
)
def test_a_small_body_gets_the_first_error_the_outline_finds(
    body: bytes, settings: Settings, status: int, detail: str
) -> None:
    response = post(PATH, body, JSON, settings)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)
