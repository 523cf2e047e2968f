"""The compression policy of answers (XENT_COMPRESSION): off by default, zstd or gzip only when allowed and accepted."""

import io
import json

import httpx
import numpy as np
import pytest
from in_process import send

from service.api.transport.answer import chosen_coding
from service.settings import Compression, Settings

JSON = {"content-type": "application/json"}
#: What httpx sends by default when zstandard is installed (as it is with xent); requests sends "gzip, deflate".
HTTPX_DEFAULT = "gzip, deflate, zstd"
#: 5,000 rows with per-sample values: a JSON answer of about 300 kB, over the 64 KiB default minimum.
ROWS = 5000


def _large_batch() -> bytes:
    predictions = np.full((ROWS, 3), 1.0 / 3).tolist()
    return json.dumps({"labels": [0] * ROWS, "predictions": predictions}).encode()


def _post(settings: Settings, accept_encoding: str, body: bytes | None = None, **headers: str) -> httpx.Response:
    return send(
        settings,
        "POST",
        "/v1/cross-entropy",
        content=_large_batch() if body is None else body,
        headers={**JSON, "accept-encoding": accept_encoding, **headers},
    )


def _plain_answer() -> bytes:
    response = _post(Settings(), "identity")
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    return response.content


def test_by_default_answers_go_as_they_are_whatever_the_client_accepts() -> None:
    response = _post(Settings(), HTTPX_DEFAULT)
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == len(response.content) > 64 * 1024


@pytest.mark.parametrize(
    ("compression", "accept_encoding", "coding"),
    [
        ("auto", HTTPX_DEFAULT, "zstd"),
        ("auto", "gzip, deflate", "gzip"),  # requests' default
        ("auto", "deflate, gzip, br, zstd", "zstd"),  # curl --compressed
        ("auto", "zstd;q=0, *", "gzip"),
        ("auto", "*", "zstd"),
        ("zstd", HTTPX_DEFAULT, "zstd"),
        ("zstd", "gzip, deflate", None),
        ("auto", "identity", None),
        ("auto", "gzip;q=0, zstd;q=0", None),
        ("auto", "br", None),
        ("off", HTTPX_DEFAULT, None),
    ],
)
def test_the_policy_and_accept_encoding_choose_the_coding(
    compression: Compression, accept_encoding: str, coding: str | None
) -> None:
    settings = Settings(compression=compression)
    response = _post(settings, accept_encoding)
    assert response.status_code == 200, response.text
    assert response.headers.get("content-encoding") == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert chosen_coding(accept_encoding, compression) == coding


@pytest.mark.parametrize("accept_encoding", ["zstd", "gzip"])
def test_a_compressed_answer_holds_the_same_bytes_and_is_smaller(accept_encoding: str) -> None:
    plain = _plain_answer()
    response = _post(Settings(compression="auto"), accept_encoding)
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == accept_encoding
    assert response.content == plain  # httpx decodes both codings (zstd through zstandard)
    assert int(response.headers["content-length"]) < len(plain) / 3


def test_answers_under_the_minimum_are_not_compressed() -> None:
    body = json.dumps({"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}).encode()
    response = _post(Settings(compression="auto"), HTTPX_DEFAULT, body)
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    small = Settings(compression="auto", compression_min_bytes=10)
    assert _post(small, HTTPX_DEFAULT, body).headers["content-encoding"] == "zstd"


def test_npz_answers_are_never_compressed() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.zeros(ROWS, dtype=np.int64), predictions=np.full((ROWS, 3), 1.0 / 3))
    response = send(
        Settings(compression="auto"),
        "POST",
        "/v1/cross-entropy",
        content=buffer.getvalue(),
        headers={"content-type": "application/x-npz", "accept": "application/x-npz", "accept-encoding": "zstd, gzip"},
    )
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    with np.load(io.BytesIO(response.content)) as answer:
        assert answer["cross_entropy"].tolist() == [np.log(3)] * ROWS


def test_the_old_gzip_minimum_is_read_as_the_compression_minimum_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XENT_GZIP_MIN_BYTES", "1000")
    with pytest.warns(FutureWarning, match="XENT_GZIP_MIN_BYTES is deprecated"):
        settings = Settings()
    assert (settings.compression, settings.compression_min_bytes) == ("off", 1000)
    monkeypatch.setenv("XENT_COMPRESSION_MIN_BYTES", "5")
    with pytest.warns(FutureWarning, match="XENT_GZIP_MIN_BYTES is deprecated"):
        assert Settings().compression_min_bytes == 5  # the new setting wins
