"""The JSON answer is written exactly as orjson would write the whole document."""

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.api.transport import answer
from service.api.transport.answer import encode
from service.core import score_multiclass
from service.core.summary import answer_summary

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, np.nan, np.inf]),
)
#: Class names that look like the place the per-sample arrays go, to be sure they are not taken for it.
NAMES = st.sampled_from(['"per_sample":null', "per_sample", "\x00", "A"])


@given(
    arrays(np.float64, st.integers(0, 40), elements=FLOATS),
    st.sampled_from(["same", "other"]),
    st.sampled_from(["zeros", "negative zeros", "values"]),
    st.booleans(),
    NAMES,
    st.sampled_from([0, 10**9]),
)
def test_the_json_answer_is_byte_for_byte_orjsons(
    cross_entropy: np.ndarray, kl: str, entropy_kind: str, per_sample: bool, name: str, splice_from: int
) -> None:
    answer.SPLICE_MIN_ROWS = splice_from  # every answer spliced, or none
    n = cross_entropy.shape[0]
    kl_divergence = cross_entropy if kl == "same" else cross_entropy[::-1].copy()
    entropy = {"zeros": np.zeros(n), "negative zeros": -np.zeros(n), "values": np.abs(cross_entropy)}[entropy_kind]
    result = score_multiclass([0, 1, 0], [[0.5, 0.5], [1e-310, 1.0], [0.9, 0.1]], classes=[name, "other"])
    extra = {"classes": [name, "other"]}
    # Three rows, so that the summary holds standard errors and intervals too.
    summary = answer_summary(result, per_sample=per_sample, extra=extra)
    arrays = {"cross_entropy": cross_entropy, "kl_divergence": kl_divergence, "entropy": entropy}
    document = {**summary, "per_sample": arrays if per_sample else None}
    try:
        written = encode(summary, arrays if per_sample else None, result.scored).body
    finally:
        answer.SPLICE_MIN_ROWS = 256
    assert written == orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
