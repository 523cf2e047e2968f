"""Run every benchmark of issues 3 and 13 and write benchmarks/RESULTS.md.

From the repository root, with the project installed in .venv and the extras of
benchmarks/requirements.txt (plus wrk, optionally; torch, optionally)::

    .venv/bin/python -m benchmarks.run            # the full suite, ~6–8 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick    # a ~1-minute smoke run, written to a temporary file

It starts ``xent serve`` and the plain baseline (benchmarks/baseline_app.py) on free loopback
ports, measures, stops them, and exits non-zero if any answer disagreed with the core.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import core_inprocess, end_to_end, machine, real_clients, report, small_requests
from benchmarks.servers import REPO, Server, baseline_server, floor_server, memory_measurable, xent_server
from benchmarks.workloads import PREDICTION_TYPES, REFERENCE_BODY, Workload, check_reference_answer

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass(frozen=True)
class Plan:
    """How much to measure: sizes, repetitions and durations."""

    e2e_sizes: tuple[tuple[int, int], ...]
    e2e_repetitions: int
    e2e_repetitions_largest: int
    client_repetitions: int
    core_sizes: tuple[tuple[int, int], ...]
    core_repetitions: int
    small_seconds: float
    small_repetitions: int


FULL = Plan(
    e2e_sizes=((100, 10), (10_000, 10), (100_000, 10), (10_000, 1_000)),
    e2e_repetitions=7,
    # A 10,000 × 1,000 JSON body is ~220 MB and the plain baseline takes ~13 s on it.
    e2e_repetitions_largest=3,
    client_repetitions=5,
    core_sizes=((100_000, 10), (10_000, 1_000)),
    core_repetitions=9,
    small_seconds=5,
    small_repetitions=3,
)
QUICK = Plan(
    e2e_sizes=((100, 10), (10_000, 10), (100_000, 10)),
    e2e_repetitions=2,
    e2e_repetitions_largest=2,
    client_repetitions=2,
    core_sizes=((100_000, 10),),
    core_repetitions=3,
    small_seconds=2,
    small_repetitions=2,
)
#: XENT_COMPRESSION of the second xent server, whose answers show the bytes on the wire with compression on.
COMPRESSED = "auto"
#: Above the ~220 MB JSON body of the largest workload (xent's default limit is 64 MiB).
MAX_BODY_BYTES = 1 << 30


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _warm_up(servers: list[Server], client: end_to_end.LoopbackClient) -> None:
    """One reference request to each scoring route, checked: imports and first-call costs are paid here."""
    for server in servers:
        status, content = client.post(
            server.port, end_to_end.ROUTE, REFERENCE_BODY, {"content-type": "application/json"}
        )
        if status != 200:
            raise RuntimeError(f"{server.name}: {status} {content[:300]!r}")
        check_reference_answer(content)


def run_end_to_end(
    plan: Plan, xent: Server, baseline: Server, client: end_to_end.LoopbackClient, idle: dict[str, int] | None
) -> report.EndToEnd:
    measurements: list[end_to_end.Measurement] = []
    core_seconds: dict[tuple[int, int, str], float] = {}
    for rows, classes in plan.e2e_sizes:
        largest = (rows, classes) == plan.e2e_sizes[-1] and rows * classes >= 10_000_000
        repetitions = plan.e2e_repetitions_largest if largest else plan.e2e_repetitions
        for kind in PREDICTION_TYPES:
            workload = Workload(rows, classes, kind)
            say(f"  {workload.label} {kind}: encoding the bodies…")
            workload.json_body, workload.npz_body  # noqa: B018  (build them before any timing)
            configurations = [(baseline, "JSON"), (xent, "JSON"), (xent, "NPZ")]
            found, core_seconds[rows, classes, kind] = end_to_end.measure(
                client, configurations, workload, repetitions, idle
            )
            for m in found:
                say(f"    {m.server:8} {m.transport}: {m.latency * 1e3:10.2f} ms  {m.rows_per_second:14,.0f} rows/s")
            measurements += found
            workload.drop()
            gc.collect()
    return report.EndToEnd(measurements, core_seconds, idle)


def _answer_bytes(floor: Server, workload: Workload, body: str, answer: str) -> int:
    """The size of xent's answer to ``workload`` (from the floor's core), for the echo to send as many bytes."""
    configuration = real_clients.Configuration(floor, body, answer, workload)
    reply = real_clients.HttpxClient().post(*real_clients.request_of(configuration))
    return len(reply.content)


def run_real_clients(
    plan: Plan, xent: Server, compressed: Server, baseline: Server, floor: Server
) -> tuple[list[real_clients.ClientMeasurement], dict[str, float]]:
    """100,000 × 10 probabilities, full precision and rounded, from each real client with its default headers;
    and the in-process reading of the bodies and encoding of the answers (the floors under issue 13's targets)."""
    full = Workload(100_000, 10, "probabilities", decimals=None)
    rounded = Workload(100_000, 10, "probabilities")
    C = real_clients.Configuration
    echo = {kind: _answer_bytes(floor, full, "NPZ", kind) for kind in ("JSON", "NPZ")}
    configurations = [
        C(baseline, "JSON", "JSON", full),
        C(xent, "JSON", "JSON", full),
        C(compressed, "JSON", "JSON", full),
        C(floor, "JSON", "JSON", full),
        C(floor, "JSON", "JSON", full, echo_bytes=echo["JSON"]),
        C(xent, "NPZ", "JSON", full),
        C(floor, "NPZ", "JSON", full),
        C(floor, "NPZ", "JSON", full, echo_bytes=echo["JSON"]),
        C(xent, "NPZ", "NPZ", full),
        C(floor, "NPZ", "NPZ", full),
        C(floor, "NPZ", "NPZ", full, echo_bytes=echo["NPZ"]),
        C(baseline, "JSON", "JSON", rounded),
        C(xent, "JSON", "JSON", rounded),
        C(compressed, "JSON", "JSON", rounded),
    ]
    for workload in (full, rounded):
        workload.json_body, workload.expected  # noqa: B018  (build them before any timing)
    full.npz_body  # noqa: B018
    measurements = []
    for client in real_clients.clients():
        try:
            found = real_clients.measure(client, configurations, plan.client_repetitions)
        finally:
            client.close()
        for m in found:
            c = m.configuration
            say(
                f"    {m.client:17} {c.workload.precision:14} {c.label:28} {m.latency * 1e3:9.1f} ms"
                f"  {m.wire_bytes / 1e6:6.2f} MB {m.content_encoding or 'identity'}"
            )
        measurements += found
    from benchmarks.floor_app import pieces

    parsed = pieces(full.json_body, full.npz_body, plan.core_repetitions)
    say("    in process: " + ", ".join(f"{name} {seconds * 1e3:.1f} ms" for name, seconds in parsed.items()))
    for workload in (full, rounded):
        workload.drop()
    gc.collect()
    return measurements, parsed


def run_small(plan: Plan, xent: Server, baseline: Server, floor: Server) -> list[small_requests.Throughput]:
    targets = [
        small_requests.Target("xent", xent.port, end_to_end.ROUTE),
        small_requests.Target("floor", floor.port, end_to_end.ROUTE),
        small_requests.Target("baseline", baseline.port, end_to_end.ROUTE),
        small_requests.Target("constant", baseline.port, "/constant"),
    ]
    results = small_requests.measure(targets, REFERENCE_BODY, plan.small_repetitions, plan.small_seconds)
    for t in results:
        say(f"    {t.target:9} c={t.concurrency:<3} {t.median:10,.0f} requests/s")
    return results


def run_core(plan: Plan) -> tuple[list[core_inprocess.CoreComparison], str]:
    skip = core_inprocess.torch_skip_reason()
    if skip:
        say(f"  SKIP: {skip}")
    comparisons = []
    with core_inprocess.one_thread() as note:
        for rows, classes in plan.core_sizes:
            for kind in ("logits", "probabilities"):
                workload = Workload(rows, classes, kind)
                comparison = core_inprocess.compare(workload, plan.core_repetitions)
                comparisons.append(comparison)
                figures = ", ".join(
                    f"{name} {'skipped' if s is None else f'{s * 1e3:.1f} ms'}"
                    for name, s in comparison.seconds.items()
                )
                say(f"  {workload.label} {kind}: {figures}")
                workload.drop()
    note = (
        "One thread for everyone: "
        + note
        + ". Median of "
        + f"{plan.core_repetitions} rounds after a warm-up call; in each round every competitor is called twice and "
        + "the second call timed (warm, as in a loop of its own), in turn, so that a slow spell of the shared "
        + "machine weighs on all of them alike. "
        + "In parentheses: the competitor's time ÷ xent's (above 1× means xent is faster). "
        + core_inprocess.METHOD
        + (f" **{skip}.**" if skip else "")
    )
    return comparisons, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run with fewer sizes and repetitions")
    parser.add_argument("--output", type=Path, help="where to write the results (default: benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output: Path = args.output or (Path(tempfile.gettempdir()) / "xent-benchmarks-quick.md" if args.quick else RESULTS)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    measurable = memory_measurable()
    if not measurable:
        say("Peak RSS cannot be measured here (it needs Linux /proc: VmHWM and clear_refs); those columns are blank.")

    log_dir = Path(tempfile.mkdtemp(prefix="xent-bench-"))
    xent, baseline = xent_server(log_dir, MAX_BODY_BYTES), baseline_server(log_dir)
    compressed = xent_server(log_dir, MAX_BODY_BYTES, compression=COMPRESSED)
    floor = floor_server(log_dir)
    client = end_to_end.LoopbackClient()
    try:
        say(f"Starting xent, xent with XENT_COMPRESSION={COMPRESSED} and the plain baseline (logs in {log_dir})…")
        for server in (xent, compressed, baseline, floor):
            server.start()
        _warm_up([xent, compressed, baseline], client)
        time.sleep(0.5)
        idle = {s.name: s.rss_bytes() for s in (xent, baseline)} if measurable else None
        say("End to end over HTTP:")
        e2e = run_end_to_end(plan, xent, baseline, client, idle)
        say("End to end with real clients, default headers:")
        clients, parsed = run_real_clients(plan, xent, compressed, baseline, floor)
        say(f"Small requests ({small_requests.load_generator()}):")
        small = run_small(plan, xent, baseline, floor)
    finally:
        client.close()
        for server in (floor, baseline, compressed, xent):
            server.stop()
    say("Core in process:")
    core, core_note = run_core(plan)

    found = report.targets(e2e, core, small)
    found_13 = report.client_targets(clients, small)
    settings = [
        (
            "Servers",
            "`xent serve --workers 1` and `uvicorn benchmarks.baseline_app:app --workers 1`: "
            "uvicorn defaults (uvloop, httptools), log level info, on 127.0.0.1; xent writes its own JSON line "
            "per request, the baseline uvicorn's access-log line",
        ),
        (
            "xent settings",
            f"XENT_MAX_BODY_BYTES={MAX_BODY_BYTES} (the largest JSON body is over the 64 MiB default), "
            "XENT_MAX_CELLS=10000000 (10,000 × 1,000 is over the default 8,000,000); "
            "every other setting is the default",
        ),
        (
            "Compression",
            "xent as shipped (XENT_COMPRESSION=off: answers go as they are, whatever the client accepts); a second "
            f"`xent serve` with XENT_COMPRESSION={COMPRESSED} (zstd level 1 when accepted, else gzip level 1; "
            "never NPZ answers) for the real-client rows named xent-auto",
        ),
        (
            "Real-client repetitions",
            f"{plan.client_repetitions} rounds after one warm-up request per client; in each round every "
            "configuration takes its turn, so the ratios to the baseline compare requests made side by side",
        ),
        (
            "End-to-end repetitions",
            f"{plan.e2e_repetitions} rounds after one warm-up request ({plan.e2e_repetitions_largest} for "
            "10,000 × 1,000); in each round the baseline, xent JSON and xent NPZ take turns",
        ),
        ("Small-request load generator", small_requests.load_generator()),
        (
            "Small-request runs",
            f"{plan.small_repetitions} × {plan.small_seconds:g} s per endpoint and concurrency, "
            "interleaved, after a 1 s warm-up",
        ),
        (
            "Data",
            "N×C float64 from a fixed seed; probabilities are softmax(N(0, 2²) logits); predictions rounded to "
            "6 decimals, as some pipelines write them (100,000 × 10 probabilities are then issue 3's 9.3 MB "
            "of JSON), and for the real clients also at full precision, as json.dumps(array.tolist()) writes "
            "a model's float64 output (20.9 MB); JSON bodies are json.dumps(array.tolist()), NPZ bodies "
            "np.savez(labels=…, predictions=…) of the same float64 arrays",
        ),
    ]
    text = report.render(
        command=command,
        date=date,
        duration=time.monotonic() - started,
        quick=args.quick,
        machine=machine.describe(),
        settings=settings,
        e2e=e2e,
        core=core,
        core_note=core_note,
        small=small,
        clients=clients,
        found_targets=found,
        client_targets=found_13,
        floor_pieces=parsed,
    )
    # The load, soak and faults section (benchmarks/soak.py) is measured separately: keep it.
    previous = output.read_text(encoding="utf-8") if output.exists() else ""
    output.write_text(report.keep_soak_section(text, previous), encoding="utf-8")
    say("")
    for target in [*found_13, *found]:
        figure = "—" if target.figure is None else f"{target.figure:.2f}×"
        say(f"  {target.verdict.strip('*'):12} {figure:>9} (needs {target.required})  {target.what}")
    say(f"\nWrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
