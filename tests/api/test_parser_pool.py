"""The kept simdjson parsers (``_json_fast._ParserPool``): reused while bodies keep coming, given back when idle.

A parser keeps the buffers of the largest document it parsed (about 3× the text): reusing it spares the next
large body that much fresh memory, and keeping it for ever would hold it in every worker after one large body.
"""

import time

import simdjson

from service.api.transport._json_fast import _ParserPool


def test_a_kept_parser_is_reused_and_at_most_keep_are_kept() -> None:
    pool = _ParserPool(keep=1, idle_seconds=60)
    first = pool.take()
    second = pool.take()  # none idle: a fresh one
    assert first is not second
    pool.give_back(first)
    pool.give_back(second)  # one is kept already: dropped
    assert pool.kept() == 1
    assert pool.take() is first
    assert pool.kept() == 0


def test_kept_parsers_are_dropped_once_no_parse_used_them_for_the_idle_time() -> None:
    pool = _ParserPool(keep=1, idle_seconds=0.2)
    parser = pool.take()
    parser.parse(b'{"a": [1, 2, 3]}')
    pool.give_back(parser)
    time.sleep(0.1)
    pool.give_back(pool.take())  # used again: the idle time starts over
    time.sleep(0.15)
    assert pool.kept() == 1  # 0.25 s since the first use, but 0.15 s since the last
    deadline = time.monotonic() + 5
    while pool.kept() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.kept() == 0
    fresh = pool.take()  # after the drop: a new parser, which parses
    assert isinstance(fresh, simdjson.Parser)
    assert fresh.parse(b"[1]").as_list() == [1]
