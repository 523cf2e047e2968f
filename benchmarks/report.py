"""RESULTS.md: the machine, the command, one table per benchmark, and the targets met or not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.core_inprocess import CoreComparison
from benchmarks.end_to_end import Measurement
from benchmarks.real_clients import ClientMeasurement
from benchmarks.small_requests import Throughput

MB = 1e6


@dataclass(frozen=True)
class Target:
    """One target of issue 3 and the figure this run measured for it."""

    what: str
    required: str
    figure: float | None  # None: not measured (the reason goes in ``note``)
    met: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "not measured" if self.met is None else ("**met**" if self.met else "**not met**")


@dataclass(frozen=True)
class EndToEnd:
    """The end-to-end measurements and the in-process core time of each workload (same arrays)."""

    measurements: list[Measurement]
    core_seconds: dict[tuple[int, int, str], float]
    idle_rss: dict[str, int] | None

    def find(self, rows: int, classes: int, kind: str, server: str, transport: str) -> Measurement | None:
        for m in self.measurements:
            w = m.workload
            key = (w.rows, w.classes, w.prediction_type, m.server, m.transport)
            if key == (rows, classes, kind, server, transport):
                return m
        return None


def _at_least(what: str, figure: float | None, bound: float, note: str = "") -> Target:
    return Target(what, f"≥ {bound:g}×", figure, None if figure is None else figure >= bound, note)


def _at_most(what: str, figure: float | None, bound: float, note: str = "") -> Target:
    return Target(what, f"≤ {bound:g}×", figure, None if figure is None else figure <= bound, note)


def targets(e2e: EndToEnd, core: list[CoreComparison], small: list[Throughput]) -> list[Target]:
    """Every target of the issue, judged on this run's figures."""
    found: list[Target] = []
    plain = e2e.find(100_000, 10, "probabilities", "baseline", "JSON")
    xent_json = e2e.find(100_000, 10, "probabilities", "xent", "JSON")
    xent_npz = e2e.find(100_000, 10, "probabilities", "xent", "NPZ")
    found.append(
        _at_least(
            "100,000 × 10 probabilities, JSON end to end: speed-up over the plain baseline",
            plain.latency / xent_json.latency if plain and xent_json else None,
            8,
        )
    )
    found.append(
        _at_least(
            "100,000 × 10 probabilities, NPZ end to end: speed-up over the plain baseline's JSON",
            plain.latency / xent_npz.latency if plain and xent_npz else None,
            30,
        )
    )
    for rows, classes in ((100_000, 10), (10_000, 1_000)):
        for kind in ("probabilities", "logits"):
            npz = e2e.find(rows, classes, kind, "xent", "NPZ")
            core_seconds = e2e.core_seconds.get((rows, classes, kind))
            if npz is None or core_seconds is None:
                continue
            found.append(
                _at_most(
                    f"{rows:,} × {classes:,} {kind}, NPZ end to end ÷ in-process core time",
                    npz.latency / core_seconds,
                    2.5,
                )
            )
    for comparison in core:
        w = comparison.workload
        if w.prediction_type != "logits":
            continue
        xent = comparison.seconds["xent"]
        assert xent is not None
        for rival, bound, name in ((("torch", 1.5, "torch `cross_entropy`")), ("sklearn", 3, "sklearn `log_loss`")):
            seconds = comparison.seconds.get(rival)
            found.append(
                _at_least(
                    f"Core, {w.label} logits → CE + KL + entropy: speed-up over {name} (1 thread)",
                    None if seconds is None else seconds / xent,
                    bound,
                    comparison.skipped.get(rival, ""),
                )
            )
    rates = {(t.target, t.concurrency): t.median for t in small}
    if ("xent", 32) in rates and ("constant", 32) in rates:
        found.append(
            _at_least(
                "Small requests at concurrency 32: xent ÷ constant-endpoint throughput",
                rates["xent", 32] / rates["constant", 32],
                0.7,
            )
        )
    peak = None if xent_json is None else xent_json.peak_above_idle
    found.append(
        _at_most(
            "Peak server RSS above idle, 100,000 × 10 JSON probabilities, ÷ request body size",
            None if peak is None or xent_json is None else peak / xent_json.body_bytes,
            4,
            "" if peak is not None else "needs Linux /proc (VmHWM, clear_refs)",
        )
    )
    return found


def _client_find(
    clients: list[ClientMeasurement], client: str, server: str, body: str, answer: str, decimals: int | None
) -> ClientMeasurement | None:
    for m in clients:
        c = m.configuration
        if (m.client, c.server_name, c.body, c.answer, c.workload.decimals) == (client, server, body, answer, decimals):
            return m
    return None


def _over_baseline(clients: list[ClientMeasurement], m: ClientMeasurement) -> float | None:
    """The plain baseline's JSON latency, same client and arrays, ÷ this measurement's."""
    plain = _client_find(clients, m.client, "baseline", "JSON", "JSON", m.configuration.workload.decimals)
    return None if plain is None else plain.latency / m.latency


def client_targets(clients: list[ClientMeasurement], small: list[Throughput]) -> list[Target]:
    """The targets of issue 13: real clients with their default headers, against xent as shipped."""
    found: list[Target] = []
    for client, body, answer, bound, what in _CLIENT_TARGETS:
        m = _client_find(clients, client, "xent", body, answer, None)
        found.append(
            _at_least(
                f"100,000 × 10 full-precision probabilities, {what}, {client} with its default headers: "
                "speed-up over the plain baseline's JSON (same client)",
                None if m is None else _over_baseline(clients, m),
                bound,
                "" if m is not None else f"{client} not available",
            )
        )
    rates = {(t.target, t.concurrency): t.median for t in small}
    if ("xent", 32) in rates and ("constant", 32) in rates:
        found.append(
            _at_least(
                "Small requests at concurrency 32: xent ÷ constant-endpoint throughput",
                rates["xent", 32] / rates["constant", 32],
                0.7,
            )
        )
    return found


#: How the real-client table names each server (the others by their own name).
_SERVER_NAMES = {
    "baseline": "plain FastAPI + Pydantic",
    "floor": "floor: xent's core, no HTTP layer",
    "echo": "floor: transport only (echo)",
}

#: The issue-13 targets on large requests: (client, body, answer, required speed-up, what).
_CLIENT_TARGETS = [
    ("httpx", "JSON", "JSON", 8, "JSON"),
    ("curl --compressed", "JSON", "JSON", 6, "JSON"),
    ("requests", "JSON", "JSON", 6, "JSON"),
    ("httpx", "NPZ", "JSON", 25, "NPZ body, JSON answer"),
    ("httpx", "NPZ", "NPZ", 25, "NPZ body, NPZ answer"),
]


def _clients_table(clients: list[ClientMeasurement]) -> list[str]:
    rows = []
    for m in clients:
        c = m.configuration
        encoding = m.content_encoding or "identity"
        decoded = "" if encoding == "identity" else f" ({m.answer_bytes / MB:,.2f} MB)"
        rows.append(
            [
                f"{m.client} ({m.accept_encoding})",
                c.workload.precision,
                f"{c.body} {m.body_bytes / MB:,.1f} MB",
                _SERVER_NAMES.get(c.server_name, c.server_name),
                c.answer,
                f"{m.wire_bytes / MB:,.2f} MB {encoding}{decoded}",
                _ms(m.latency),
                f"{_ms(min(m.latencies))}–{_ms(max(m.latencies))}",
                _ratio(_over_baseline(clients, m)),
            ]
        )
    header = [
        "Client (Accept-Encoding it sends)",
        "Predictions",
        "Body",
        "Server",
        "Answer",
        "Answer on the wire (decoded)",
        "Latency",
        "Range",
        "Speed-up vs plain JSON, same client",
    ]
    return _table(header, rows)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:,.1f} ms" if seconds >= 0.01 else f"{seconds * 1e3:,.2f} ms"


def _ratio(value: float | None) -> str:
    return "—" if value is None else (f"{value:,.1f}×" if value >= 10 else f"{value:,.2f}×")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _end_to_end_table(e2e: EndToEnd) -> list[str]:
    rows = []
    for m in e2e.measurements:
        w = m.workload
        plain = e2e.find(w.rows, w.classes, w.prediction_type, "baseline", "JSON")
        speed_up = None if plain is None else plain.latency / m.latency
        core_seconds = e2e.core_seconds.get((w.rows, w.classes, w.prediction_type))
        over_core = m.latency / core_seconds if core_seconds and m.server == "xent" else None
        peak = m.peak_above_idle
        name = "plain FastAPI + Pydantic" if m.server == "baseline" else "xent"
        rows.append(
            [
                w.label,
                w.prediction_type,
                f"{name}, {m.transport}",
                f"{m.body_bytes / MB:,.2f} MB",
                _ms(m.latency),
                f"{m.rows_per_second:,.0f}",
                "—" if peak is None else f"{peak / MB:,.1f} MB",
                "—" if peak is None else _ratio(peak / m.body_bytes),
                _ratio(speed_up),
                _ratio(over_core),
            ]
        )
    header = [
        "N × C",
        "Predictions",
        "Server, transport",
        "Body",
        "Latency",
        "Rows/s",
        "Peak RSS above idle",
        "÷ body",
        "Speed-up vs plain JSON",
        "÷ core time",
    ]
    return _table(header, rows)


def _core_table(core: list[CoreComparison]) -> list[str]:
    rows = []
    for comparison in core:
        w, s = comparison.workload, comparison.seconds
        xent = s["xent"]
        assert xent is not None
        cells = [w.label, w.prediction_type, _ms(xent)]
        for rival in ("torch", "sklearn", "scipy"):
            seconds = s.get(rival)
            cells.append("skipped" if seconds is None else f"{_ms(seconds)} ({_ratio(seconds / xent)})")
        rows.append(cells)
    header = [
        "N × C",
        "Predictions",
        "xent core (CE + KL + H + aggregates)",
        "torch CE (xent's speed-up)",
        "sklearn log_loss (speed-up)",
        "SciPy CE + KL + H (speed-up)",
    ]
    return _table(header, rows)


def _small_table(small: list[Throughput]) -> list[str]:
    constant = {t.concurrency: t.median for t in small if t.target == "constant"}
    names = {
        "xent": "xent, reference example",
        "baseline": "plain FastAPI + Pydantic, reference example",
        "constant": "bare FastAPI endpoint, constant body",
        "floor": "floor: xent's core, no HTTP layer (benchmarks/floor_app.py), reference example",
    }
    rows = []
    for t in sorted(small, key=lambda t: (t.concurrency, t.target != "xent", t.target)):
        rows.append(
            [
                names[t.target],
                str(t.concurrency),
                f"{t.median:,.0f}",
                _ms(sorted(t.p50_latency)[len(t.p50_latency) // 2]),
                _ms(sorted(t.p99_latency)[len(t.p99_latency) // 2]),
                _ratio(t.median / constant[t.concurrency]) if t.concurrency in constant else "—",
            ]
        )
    return _table(["Endpoint", "Concurrency", "Requests/s", "p50 latency", "p99 latency", "÷ constant"], rows)


def _core_seconds(core: list[CoreComparison]) -> float | None:
    """xent's in-process core on 100,000 × 10 probabilities (this run's core table), or None."""
    for comparison in core:
        w = comparison.workload
        if (w.rows, w.classes, w.prediction_type) == (100_000, 10, "probabilities"):
            return comparison.seconds.get("xent")
    return None


def floors_section(
    clients: list[ClientMeasurement], small: list[Throughput], core: list[CoreComparison], pieces: dict[str, float]
) -> list[str]:
    """Why a missed issue-13 target cannot be reached: the budget it leaves against the floors measured in this run."""
    lines = [
        "## Issue 13: the floors under the targets (same run)",
        "",
        "Each target on a large request leaves a *budget*: the plain baseline's latency (same client, same",
        "arrays) ÷ the required speed-up. Two servers measured in the same rounds bound what any xent could do",
        "in this stack (benchmarks/floor_app.py, under the same uvicorn configuration): *transport only*",
        "reads the body and sends an answer of xent's size, made in advance, so it is the client, uvicorn and",
        "loopback alone; *xent's core, no HTTP layer* parses the body the fastest way this stack has",
        "(simdjson straight into float64 buffers; `np.load` for NPZ), then runs xent's core, answer and",
        "encoder, with no limits, checks, memory budget, slots, metrics or log line. The in-process columns",
        "are the rest of the work no server can skip, each timed alone on one thread: *read the body* into",
        "float64 arrays the fastest way this stack has (simdjson, the fastest JSON parser for Python, which",
        "holds the GIL: two threads parse no faster; `np.load` for NPZ), xent's *core* on the same",
        "100,000 × 10 probabilities (the core table below: faster than scikit-learn's and SciPy's), and",
        "*encode the answer* (xent's encoder, per-sample values included). *Least possible* = transport only",
        "+ read + core + encode: what no server that reads this body and answers it can go under here.",
        "",
    ]
    core_seconds = _core_seconds(core)
    rows = []
    for client, body, answer, bound, what in _CLIENT_TARGETS:
        plain = _client_find(clients, client, "baseline", "JSON", "JSON", None)
        xent, floor, echo = (_client_find(clients, client, s, body, answer, None) for s in ("xent", "floor", "echo"))
        if plain is None or xent is None or floor is None or echo is None:
            continue
        budget = plain.latency / bound
        read, write = pieces.get(f"read {body}"), pieces.get(f"encode {answer}")
        least = echo.latency + (read or 0.0) + (core_seconds or 0.0) + (write or 0.0)
        rows.append(
            [
                f"{client}, {what}: ≥ {bound}×",
                _ms(plain.latency),
                _ms(budget),
                _ms(xent.latency),
                _ms(floor.latency) + f" ({_ratio(plain.latency / floor.latency)})",
                _ms(echo.latency) + f" ({_ratio(plain.latency / echo.latency)})",
                _ms(read),
                _ms(core_seconds),
                _ms(write),
                _ms(least),
                "no: the least possible exceeds the budget" if least > budget else "not excluded by these floors",
            ]
        )
    lines += _table(
        [
            "Target",
            "Baseline",
            "Budget",
            "xent",
            "xent's core, no HTTP layer",
            "Transport only",
            "Read the body (in process)",
            "Core (in process)",
            "Encode the answer (in process)",
            "Least possible",
            "Reachable in this stack?",
        ],
        rows,
    )
    rates = {(t.target, t.concurrency): t.median for t in small}
    if ("floor", 32) in rates and ("constant", 32) in rates and ("xent", 32) in rates:
        lines += [
            f"Small requests at concurrency 32: xent's core with no HTTP layer reaches "
            f"{_ratio(rates['floor', 32] / rates['constant', 32])} the constant endpoint's throughput, xent "
            f"{_ratio(rates['xent', 32] / rates['constant', 32])} (goal 0.7×); see *Small requests* below and "
            "benchmarks/PROFILE.md.",
            "",
        ]
    return lines


def render(
    *,
    command: str,
    date: str,
    duration: float,
    quick: bool,
    machine: list[tuple[str, str]],
    settings: list[tuple[str, str]],
    e2e: EndToEnd,
    core: list[CoreComparison],
    core_note: str,
    small: list[Throughput],
    clients: list[ClientMeasurement],
    found_targets: list[Target],
    client_targets: list[Target],
    floor_pieces: dict[str, float] | None = None,
) -> str:
    """The whole RESULTS.md."""
    lines = [
        "# xent benchmark results",
        "",
        "Written by `benchmarks/run.py`; re-measure with the command below (about 6–8 minutes on 2 cores).",
        "Every figure is the median of several repetitions, and every answer was checked against the",
        "in-process core (a wrong number fails the run).",
        "",
    ]
    if quick:
        lines += ["**A `--quick` smoke run: fewer sizes and repetitions; not the reference figures.**", ""]
    lines += [f"- Command: `{command}`", f"- Date: {date} (took {duration / 60:.1f} min)", ""]
    lines += ["## Machine", "", *_table(["", ""], [[k, v] for k, v in machine])]
    lines += ["## Run settings", "", *_table(["", ""], [[k, v] for k, v in settings])]
    for issue, found in (("13", client_targets), ("3", found_targets)):
        lines += [f"## Targets (issue {issue})", ""]
        lines += _table(
            ["Target", "Required", "Measured", "Verdict"],
            [
                [t.what, t.required, _ratio(t.figure) if t.figure is not None else (t.note or "—"), t.verdict]
                for t in found
            ],
        )
    lines += [
        "## End to end with real clients and their default headers (loopback)",
        "",
        "100,000 × 10 probabilities from each client as a user runs it: `httpx.Client().post`,",
        "`requests.Session().post`, and `curl --data-binary @file` without and with `--compressed`, each",
        "with the headers it sends by default (only `Content-Type`, and `Accept: application/x-npz` for",
        "an NPZ answer, are set). *xent* is `xent serve` as shipped (XENT_COMPRESSION=off); *xent-auto*",
        "the same with XENT_COMPRESSION=auto, to show what compression costs and saves. Latency: httpx",
        "and requests from the call until the decoded answer is in hand (keep-alive); curl its own",
        "`time_total` (a new connection per request, the process start left out). *Answer on the wire*",
        "is the answer's body as sent, with its Content-Encoding (and its decoded size). The speed-up is",
        "over the plain baseline's JSON on the same arrays from the same client, measured side by side",
        "in the same rounds (median; *Range* is the fastest and slowest round).",
        "",
    ]
    lines += _clients_table(clients)
    lines += floors_section(clients, small, core, floor_pieces or {})
    lines += [
        "## End to end over HTTP (loopback)",
        "",
        "One request at a time over a keep-alive connection (`http.client`); latency from the first",
        "byte sent to the last byte of the answer received. For each batch the baseline, xent JSON and",
        "xent NPZ take turns, round after round, so that a slow spell of the shared machine weighs on",
        "all of them alike. *Speed-up vs plain JSON* is the plain",
        "baseline's JSON latency on the same arrays divided by this row's. *÷ core time* is this row's",
        "latency over the in-process core on the same (already decoded) arrays, measured in this run,",
        "call after call (its warm, best case).",
        "*Peak RSS above idle* is the server's VmHWM during the request (reset before it through",
        "`/proc/PID/clear_refs`) minus its RSS when idle after start-up.",
        "",
    ]
    if e2e.idle_rss:
        idle = ", ".join(f"{name} {value / MB:,.1f} MB" for name, value in e2e.idle_rss.items())
        lines += [f"Idle RSS after start-up and one small request: {idle}.", ""]
    lines += _end_to_end_table(e2e)
    lines += ["## Core in process, one thread", "", core_note, ""]
    lines += _core_table(core)
    lines += [
        "## Small requests",
        "",
        "The README's reference example (true class B, predicted [0.228, 0.619, 0.153]) as the body of",
        "every request, also to the constant endpoint (which does not read it). The load generator runs",
        "on the same 2 cores as the server (roughly one core each), so these figures are a lower bound",
        "on what a server with a machine to itself would do; the ratio is the figure that matters.",
        "",
    ]
    lines += _small_table(small)
    return "\n".join(lines).rstrip() + "\n"


#: benchmarks/soak.py, uncertainty.py, sequences.py, gradient.py, merge.py and first_send.py each write a section of
#: RESULTS.md between markers of their own; render() output holds none, and benchmarks/run.py carries them over.
SOAK_BEGIN = "<!-- soak: written by benchmarks/soak.py; benchmarks/run.py keeps it -->"
SOAK_END = "<!-- /soak -->"
UNCERTAINTY_BEGIN = "<!-- uncertainty: written by benchmarks/uncertainty.py; benchmarks/run.py keeps it -->"
UNCERTAINTY_END = "<!-- /uncertainty -->"
SEQUENCES_BEGIN = "<!-- sequences: written by benchmarks/sequences.py; benchmarks/run.py keeps it -->"
SEQUENCES_END = "<!-- /sequences -->"
GRADIENT_BEGIN = "<!-- gradient: written by benchmarks/gradient.py; benchmarks/run.py keeps it -->"
GRADIENT_END = "<!-- /gradient -->"
MERGE_BEGIN = "<!-- merge: written by benchmarks/merge.py; benchmarks/run.py keeps it -->"
MERGE_END = "<!-- /merge -->"
FIRST_SEND_BEGIN = "<!-- first-send: written by benchmarks/first_send.py; benchmarks/run.py keeps it -->"
FIRST_SEND_END = "<!-- /first-send -->"
KEPT_SECTIONS = (
    (SOAK_BEGIN, SOAK_END),
    (UNCERTAINTY_BEGIN, UNCERTAINTY_END),
    (SEQUENCES_BEGIN, SEQUENCES_END),
    (GRADIENT_BEGIN, GRADIENT_END),
    (MERGE_BEGIN, MERGE_END),
    (FIRST_SEND_BEGIN, FIRST_SEND_END),
)


def marked_section(text: str, begin_marker: str = SOAK_BEGIN, end_marker: str = SOAK_END) -> str:
    """The section of a RESULTS.md between the markers (markers included, with a final newline), or ''."""
    begin = text.find(begin_marker)
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        return ""
    return text[begin : end + len(end_marker)] + "\n"


def soak_section(text: str) -> str:
    """The load, soak and faults section of a RESULTS.md, or ''."""
    return marked_section(text, SOAK_BEGIN, SOAK_END)


def replace_marked_section(text: str, section: str, begin_marker: str = SOAK_BEGIN, end_marker: str = SOAK_END) -> str:
    """``text`` with its section between the markers replaced by ``section`` (appended if it had none)."""
    old = marked_section(text, begin_marker, end_marker)
    if old:
        begin = text.find(begin_marker)
        return text[:begin] + section + text[begin + len(old) :].lstrip("\n")
    return (text.rstrip() + "\n\n" + section) if text.strip() else section


def replace_soak_section(text: str, section: str) -> str:
    """``text`` with its soak section replaced by ``section`` (appended if it had none)."""
    return replace_marked_section(text, section, SOAK_BEGIN, SOAK_END)


def keep_soak_section(new_text: str, old_text: str) -> str:
    """A freshly rendered RESULTS.md with the kept sections (soak, uncertainty) of the previous one carried over."""
    for begin_marker, end_marker in KEPT_SECTIONS:
        kept = marked_section(old_text, begin_marker, end_marker)
        if kept:
            new_text = replace_marked_section(new_text, kept, begin_marker, end_marker)
    return new_text
