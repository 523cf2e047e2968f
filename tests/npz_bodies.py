"""Request bodies in NumPy's formats: .npz archives as ``np.savez`` writes them, .npy members, hand-made zips.

Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

import io
import zipfile
from typing import Any

import numpy as np

#: The headers of an .npz request body.
NPZ = {"content-type": "application/x-npz"}


def npz(compressed: bool = False, **arrays: Any) -> bytes:
    """An .npz archive of ``arrays`` (object arrays are pickled into it, as np.savez does)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    """One array in .npy format (what np.save writes)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def stored_zip(members: dict[str, bytes]) -> bytes:
    """An uncompressed zip archive whose members (full names, e.g. ``labels.npy``) hold the given raw bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()
