"""The two threads a request's worker thread hands a share of one large piece of work to while it does the rest:
a stored member's CRC-32 beside its array's extremes (``npz_archive.NpzArchive.read``), the NLLs of the second half of
a large batch's sequences (``service.core.sequences.score_sequences``'s ``helper``).

A share that finds both busy (other requests' shares) is called off and done by the worker thread itself: a loaded
server does the same work, on the threads it has.
"""

from __future__ import annotations

import concurrent.futures

HELPER_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="xent-helper")
