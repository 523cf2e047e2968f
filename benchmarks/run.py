"""Run every benchmark of issue 3 and write benchmarks/RESULTS.md.

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

from benchmarks import core_inprocess, end_to_end, machine, report, small_requests
from benchmarks.servers import REPO, Server, baseline_server, memory_measurable, xent_server
from benchmarks.workloads import PREDICTION_TYPES, REFERENCE_BODY, Workload, check_reference_answer

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass(frozen=True)
class Plan:
    """How much to measure: sizes, repetitions and durations."""

    e2e_sizes: tuple[tuple[int, int], ...]
    e2e_repetitions: int
    e2e_repetitions_largest: int
    core_sizes: tuple[tuple[int, int], ...]
    core_repetitions: int
    small_seconds: float
    small_repetitions: int


FULL = Plan(
    e2e_sizes=((100, 10), (10_000, 10), (100_000, 10), (10_000, 1_000)),
    e2e_repetitions=7,
    # A 10,000 × 1,000 JSON body is ~220 MB and the plain baseline takes ~13 s on it.
    e2e_repetitions_largest=3,
    core_sizes=((100_000, 10), (10_000, 1_000)),
    core_repetitions=9,
    small_seconds=5,
    small_repetitions=3,
)
QUICK = Plan(
    e2e_sizes=((100, 10), (10_000, 10), (100_000, 10)),
    e2e_repetitions=2,
    e2e_repetitions_largest=2,
    core_sizes=((100_000, 10),),
    core_repetitions=3,
    small_seconds=2,
    small_repetitions=2,
)
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


def run_small(plan: Plan, xent: Server, baseline: Server) -> list[small_requests.Throughput]:
    targets = [
        small_requests.Target("xent", xent.port, end_to_end.ROUTE),
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
    client = end_to_end.LoopbackClient()
    try:
        say(f"Starting xent and the plain baseline (logs in {log_dir})…")
        xent.start()
        baseline.start()
        _warm_up([xent, baseline], client)
        time.sleep(0.5)
        idle = {s.name: s.rss_bytes() for s in (xent, baseline)} if measurable else None
        say("End to end over HTTP:")
        e2e = run_end_to_end(plan, xent, baseline, client, idle)
        say(f"Small requests ({small_requests.load_generator()}):")
        small = run_small(plan, xent, baseline)
    finally:
        client.close()
        baseline.stop()
        xent.stop()
    say("Core in process:")
    core, core_note = run_core(plan)

    found = report.targets(e2e, core, small)
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
            "6 decimals, as pipelines usually write them (100,000 × 10 probabilities are then the issue's 9.3 MB "
            "of JSON); JSON bodies are json.dumps(array.tolist()), NPZ bodies np.savez(labels=…, predictions=…) "
            "of the same rounded float64 arrays",
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
        found_targets=found,
    )
    # The load, soak and faults section (benchmarks/soak.py) is measured separately: keep it.
    previous = output.read_text(encoding="utf-8") if output.exists() else ""
    output.write_text(report.keep_soak_section(text, previous), encoding="utf-8")
    say("")
    for target in found:
        figure = "—" if target.figure is None else f"{target.figure:.2f}×"
        say(f"  {target.verdict.strip('*'):12} {figure:>9} (needs {target.required})  {target.what}")
    say(f"\nWrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
