"""Arrays from files for ``xent score``: .npy, .npz, .csv, .jsonl and (with pyarrow) .parquet; per-sample
values out to .csv or .npy."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.client.results import PerSample
from service.client.wire import as_array

FORMATS = (".npy", ".npz", ".csv", ".jsonl", ".parquet")


class UnreadableFile(Exception):
    """A file that cannot be read as an array (missing, unknown format, ragged, ambiguous)."""


def read_array(path: str | Path, role: str) -> np.ndarray:
    """The array in ``path``; ``role`` ("predictions", "labels", "sample_weights") picks the member of an .npz,
    the key of .jsonl objects or the column of a table holding several."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UnreadableFile(f"{path}: unknown format {suffix or '(no suffix)'!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    try:
        reader = {".npy": _npy, ".npz": _npz, ".csv": _csv, ".jsonl": _jsonl, ".parquet": _parquet}[suffix]
        return reader(path, role)
    except UnreadableFile:
        raise
    except (ValueError, OSError, orjson.JSONDecodeError) as error:
        raise UnreadableFile(f"{path}: {error}") from None


def _npy(path: Path, role: str) -> np.ndarray:
    return np.asarray(np.load(path, allow_pickle=False))


def _npz(path: Path, role: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = archive.files
        if role in names:
            return np.asarray(archive[role])
        if len(names) == 1:
            return np.asarray(archive[names[0]])
        raise UnreadableFile(f"{path}: holds {', '.join(names)}; name the {role} member {role!r}")


def _csv(path: Path, role: str) -> np.ndarray:
    """Numbers (or class names) in rows; a first line that is not numeric above numeric data is a header."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and len(rows) > 1 and not _numeric(rows[0]) and _numeric(rows[1]):
        header, rows = rows[0], rows[1:]
        if role in header and len(header) > 1:
            column = header.index(role)
            rows = [[row[column]] for row in rows]
    width = {len(row) for row in rows}
    if len(width) > 1:
        raise UnreadableFile(f"{path}: rows have different numbers of values ({sorted(width)})")
    cells = _typed(np.array(rows, dtype=str).reshape(len(rows), -1) if rows else np.empty((0, 1), dtype=str))
    return _whole_numbers(cells) if role == "labels" else cells


def _numeric(cells: list[str]) -> bool:
    try:
        for cell in cells:
            float(cell)
    except ValueError:
        return False
    return True


def _typed(cells: np.ndarray) -> np.ndarray:
    """Integers if every cell is one, else floats, else the strings; one column becomes 1-D."""
    if cells.shape[1] == 1:
        cells = cells[:, 0]
    for dtype in (np.int64, np.float64):
        try:
            return cells.astype(dtype)
        except ValueError:
            continue
    return cells


def _whole_numbers(labels: np.ndarray) -> np.ndarray:
    """A CSV column of labels written as whole floats (``1.0``, as pandas writes an integer column that had a missing
    value) as the integers they are: a CSV has no types, so its text is read as meant. Every typed source (.npy,
    .npz, .jsonl, .parquet, the Python client) keeps its floats, which the service refuses as class indices."""
    if labels.dtype.kind != "f" or labels.ndim != 1:
        return labels
    # Only whole numbers that float64 holds exactly (|x| ≤ 2⁵³) are read as integers.
    if np.isfinite(labels).all() and (labels == np.round(labels)).all() and (np.abs(labels) <= 2.0**53).all():
        return labels.astype(np.int64)
    return labels


def _jsonl(path: Path, role: str) -> np.ndarray:
    """One JSON value per line: a number, a name, a row, or an object holding one under ``role``."""
    values: list[Any] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        value = orjson.loads(line)
        if isinstance(value, dict):
            if role in value:
                value = value[role]
            elif len(value) == 1:
                value = next(iter(value.values()))
            else:
                raise UnreadableFile(f"{path}: line {number} has keys {', '.join(value)} but no {role!r}")
        values.append(value)
    try:
        return as_array(values)
    except ValueError as error:
        raise UnreadableFile(f"{path}: the lines do not form an array ({error})") from None


def _parquet(path: Path, role: str) -> np.ndarray:
    """A column named ``role`` (or the only column); list columns become rows; several numeric columns, a matrix."""
    try:
        import pyarrow.parquet as parquet  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise UnreadableFile(
            f"{path}: reading Parquet needs pyarrow, which is not installed (pip install pyarrow); "
            "or save the data as .npy, .npz, .csv or .jsonl"
        ) from None
    table = parquet.read_table(path)
    names = list(table.column_names)
    if role in names or len(names) == 1:
        column = table.column(role if role in names else names[0])
        return as_array(column.to_pylist())
    return np.column_stack([table.column(name).to_numpy() for name in names])


def write_per_sample(path: str | Path, values: PerSample) -> None:
    """Per-sample values to .csv (a header, empty cells on ignored rows) or .npy (N×3: CE, KL, H; NaN ignored)."""
    path = Path(path)
    suffix = path.suffix.lower()
    columns = np.column_stack([values.cross_entropy, values.kl_divergence, values.entropy])
    if suffix == ".npy":
        np.save(path, columns)
    elif suffix == ".csv":
        buffer = io.StringIO()
        buffer.write("row,cross_entropy,kl_divergence,entropy\n")
        for row, (ce, kl, h) in enumerate(columns.tolist()):
            if values.ignored[row]:
                buffer.write(f"{row},,,\n")
            else:
                buffer.write(f"{row},{ce!r},{kl!r},{h!r}\n")
        path.write_text(buffer.getvalue(), encoding="utf-8")
    else:
        raise UnreadableFile(f"{path}: per-sample values are written to .csv or .npy, not {suffix or 'no suffix'!r}")


def write_differences(path: str | Path, differences: np.ndarray) -> None:
    """A comparison's per-sample cross-entropy differences (model − baseline) to .csv (a header, empty cells on
    rows not scored) or .npy (N values, NaN on rows not scored)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, differences)
    elif suffix == ".csv":
        lines = ["row,cross_entropy_difference\n"]
        lines += [f"{row},{'' if math.isnan(d) else repr(d)}\n" for row, d in enumerate(differences.tolist())]
        path.write_text("".join(lines), encoding="utf-8")
    else:
        raise UnreadableFile(f"{path}: per-sample values are written to .csv or .npy, not {suffix or 'no suffix'!r}")
