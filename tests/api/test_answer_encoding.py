"""The JSON answer's per-sample arrays are written exactly as orjson would write them."""

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.api.codecs import _per_sample_json
from service.core.result import PerSample

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, np.nan, np.inf]),
)


def _plain(cross_entropy: np.ndarray, kl_divergence: np.ndarray, entropy: np.ndarray) -> bytes:
    document = {"cross_entropy": cross_entropy, "kl_divergence": kl_divergence, "entropy": entropy}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


@given(
    arrays(np.float64, st.integers(0, 40), elements=FLOATS),
    st.sampled_from(["same", "other"]),
    st.sampled_from(["zeros", "negative zeros", "values"]),
)
def test_per_sample_json_is_byte_for_byte_orjsons(cross_entropy: np.ndarray, kl: str, entropy_kind: str) -> None:
    n = cross_entropy.shape[0]
    kl_divergence = cross_entropy if kl == "same" else cross_entropy[::-1].copy()
    entropy = {"zeros": np.zeros(n), "negative zeros": -np.zeros(n), "values": np.abs(cross_entropy)}[entropy_kind]
    written = orjson.dumps(_per_sample_json(PerSample(cross_entropy, kl_divergence, entropy)))
    assert written == _plain(cross_entropy, kl_divergence, entropy)
