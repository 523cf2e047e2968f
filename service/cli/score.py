"""``xent score``: score prediction and label files, in-process or against a running service.

Without ``--url`` (and without ``XENT_URL``) the same core the service runs scores the files
in this process (``local.py``); with one, the client sends them in chunks. Exit codes: 0 scored,
2 bad input (the problem's message on stderr, naming the flag that gave the field: ``--labels y.csv row 3``),
1 the service failed or could not be reached. The option flags take their choices from
``service.core.contract``; unset, the API's defaults apply.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Any

import orjson

from service.cli.comparison import compare_arrays, comparison_table
from service.cli.files import FORMATS, UnreadableFile, read_array, write_differences, write_per_sample
from service.cli.local import score_locally
from service.cli.sequences import add_arguments as add_sequence_arguments
from service.cli.sequences import score_sequence_file, sequence_table
from service.client import Client, Comparison, ProblemError, Scores, TransportError
from service.client.config import url_problem
from service.core.contract import AUTO, BINARY, MULTICLASS, OPTIONS
from service.core.errors import InvalidInput, counted

_OPTIONS = OPTIONS[MULTICLASS]  # the flags of both endpoints: the multi-class choices include the binary ones

EXIT_OK, EXIT_SERVICE, EXIT_BAD_INPUT = 0, 1, 2

#: The request fields read from files, each given by the flag of its name (``sample_weights``: ``--sample-weights``).
FILE_FIELDS = ("predictions", "labels", "sample_weights", "cluster_ids", "baseline_predictions")
#: Every option a flag gives: the comma-separated ones (``--classes A,B,C``) are located by position.
OPTION_FIELDS = frozenset(OPTIONS[MULTICLASS]) | frozenset(OPTIONS[BINARY])


class BadFlag(ValueError):
    """A flag (or ``XENT_URL``) whose value cannot be used: bad input, exit 2."""


def add_parser(commands: Any) -> None:
    """Register ``xent score`` on the ``xent`` command's subparsers."""
    score = commands.add_parser(
        "score",
        help="score prediction and label files (in-process, or against --url / XENT_URL)",
        description=(
            f"Score predictions against labels read from files ({', '.join(FORMATS)}; Parquet needs pyarrow). "
            "Without --url or XENT_URL the files are scored in this process with the service's own core."
        ),
    )
    files = score.add_argument_group("files")
    files.add_argument("--predictions", metavar="FILE", help="N×C (or N for --binary) predictions (required)")
    files.add_argument("--labels", metavar="FILE", help="class indices, names or target rows (required)")
    files.add_argument("--sample-weights", metavar="FILE", help="N non-negative weights")
    files.add_argument("--cluster-ids", metavar="FILE", help="N cluster ids (strings or integers): clustered errors")
    files.add_argument(
        "--baseline-predictions",
        metavar="FILE",
        help="a baseline's predictions for the same rows: print the paired comparison model − baseline",
    )
    files.add_argument("--per-sample", metavar="OUT", help="write per-sample CE, KL, H to OUT (.csv or .npy)")
    files.add_argument("--groups", metavar="FILE", help="N group names (dataset, language, …): the means by group")
    options = score.add_argument_group("options (as in the API)")
    options.add_argument("--binary", action="store_true", help="binary / multi-label cross-entropy")
    options.add_argument(
        "--compat", choices=_OPTIONS["compat"].choices, help="score by a library's rules (default: xent's own)"
    )
    options.add_argument("--prediction-type", choices=_OPTIONS["prediction_type"].choices)
    options.add_argument(
        "--baseline-prediction-type",
        choices=_OPTIONS["prediction_type"].choices,
        help="how to read --baseline-predictions (default: as --prediction-type)",
    )
    options.add_argument("--unit", choices=_OPTIONS["unit"].choices)
    options.add_argument(
        "--confidence",
        type=float,
        help=f"confidence level of the intervals (default {_OPTIONS['confidence'].default:g})",
    )
    options.add_argument("--classes", metavar="A,B,C", help="class names in column order, comma-separated")
    options.add_argument("--class-weights", metavar="W,W,W", help="C class weights, comma-separated")
    options.add_argument("--pos-weight", metavar="W[,W...]", help="binary: one weight, or K comma-separated")
    options.add_argument("--label-smoothing", type=float)
    options.add_argument("--ignore-index", type=int)
    options.add_argument("--epsilon", help=f'"{AUTO}" (default) or a number in {_OPTIONS["epsilon"].interval}')
    options.add_argument("--normalization", choices=_OPTIONS["normalization"].choices)
    options.add_argument("--tolerance", type=float)
    options.add_argument("--per-class", action="store_true", help="the means by true class (multi-class)")
    options.add_argument(
        "--calibration-bins", type=int, metavar="B", help="calibration over B equal bins: ECE, MCE, RMSCE, Brier"
    )
    service = score.add_argument_group("service")
    service.add_argument("--url", help="score against this service (default: XENT_URL; neither: in-process)")
    service.add_argument("--api-key", help="API key (default: XENT_API_KEY)")
    service.add_argument("--chunk-size", type=int, metavar="N", help="rows per request (default: from the limit)")
    service.add_argument("--concurrency", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    service.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    service.add_argument("--retries", type=int, default=3, help="retries of refused connections and 503s (default 3)")
    service.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    add_sequence_arguments(score)
    score.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    score.set_defaults(run=run)


def _numbers(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise BadFlag(f"--{what}: expected comma-separated numbers, got {text!r}") from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The API options the flags give (unset flags keep the API's defaults)."""
    epsilon: Any = args.epsilon
    if epsilon is not None and epsilon != AUTO:
        try:
            epsilon = float(epsilon)
        except ValueError:
            raise BadFlag(f'--epsilon: expected "{AUTO}" or a number, got {args.epsilon!r}') from None
    given: dict[str, Any] = {
        "compat": args.compat,
        "prediction_type": args.prediction_type,
        "unit": args.unit,
        "label_smoothing": args.label_smoothing,
        "epsilon": epsilon,
        "confidence": args.confidence,
    }
    if args.binary:
        pos_weight = _numbers(args.pos_weight, "pos-weight")
        given["pos_weight"] = pos_weight[0] if pos_weight is not None and len(pos_weight) == 1 else pos_weight
    else:
        given |= {
            "classes": None if args.classes is None else args.classes.split(","),
            "class_weights": _numbers(args.class_weights, "class-weights"),
            "ignore_index": args.ignore_index,
            "normalization": args.normalization,
            "tolerance": args.tolerance,
        }
    if args.sample_weights is not None:
        given["sample_weights"] = read_array(args.sample_weights, "sample_weights")
    if args.cluster_ids is not None:
        given["cluster_ids"] = read_array(args.cluster_ids, "cluster_ids")
    if args.groups is not None:
        given["groups"] = read_array(args.groups, "groups")
    if args.per_class:
        given["per_class"] = True
    given["calibration_bins"] = args.calibration_bins
    given["per_sample"] = args.per_sample is not None
    return {name: value for name, value in given.items() if value is not None}


def _service_url(args: argparse.Namespace) -> str | None:
    """``--url`` or XENT_URL (None: score in this process); BadFlag when it cannot be a service's URL."""
    url: str | None = args.url or os.environ.get("XENT_URL")
    problem = url_problem(url) if url else None
    if problem is not None:
        raise BadFlag(f"{'--url' if args.url else 'XENT_URL'}: {problem}")
    return url


def score_files(args: argparse.Namespace) -> Scores | Comparison:
    """Read the files and score them (with ``--baseline-predictions``, compare), in-process or against the service."""
    url = _service_url(args)
    if args.baseline_predictions is None and args.baseline_prediction_type is not None:
        raise BadFlag("--baseline-prediction-type: it says how to read --baseline-predictions, which is not given")
    if args.baseline_predictions is not None and args.chunk_size is not None:
        raise BadFlag("--chunk-size: a comparison is sent in one request (its paired standard errors need every row)")
    labels = read_array(args.labels, "labels")
    predictions = read_array(args.predictions, "predictions")
    options = _options(args)
    if args.baseline_predictions is not None:
        baseline = read_array(args.baseline_predictions, "baseline_predictions")
        options["baseline_prediction_type"] = args.baseline_prediction_type
        if not url:
            return compare_arrays(None, labels, predictions, baseline, binary=args.binary, options=options)
        with Client(url, api_key=args.api_key, timeout=args.timeout, retries=args.retries) as client:
            return compare_arrays(client, labels, predictions, baseline, binary=args.binary, options=options)
    if url:
        with Client(url, api_key=args.api_key, timeout=args.timeout, retries=args.retries) as client:
            progress = False if args.no_progress else None
            if args.binary:
                return client.score_many(
                    labels, predictions, binary=True, chunk_size=args.chunk_size,
                    concurrency=args.concurrency, progress=progress, **options,
                )  # fmt: skip
            return client.score_many(
                labels, predictions, chunk_size=args.chunk_size,
                concurrency=args.concurrency, progress=progress, **options,
            )  # fmt: skip
    return score_locally(labels, predictions, binary=args.binary, options=options)


def _value(value: float | None, digits: int = 6) -> str:
    return "null" if value is None else f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def summary_table(scores: Scores) -> str:
    """A readable summary: means and sums, perplexity, accuracy, rows, warnings."""
    mean, sums = scores.mean, scores.sum
    lines = [
        f"{'':<16}{'mean':>14}{'sum':>16}   ({scores.unit})",
        f"{'cross-entropy':<16}{_value(mean.cross_entropy):>14}{_value(sums.cross_entropy):>16}",
        f"{'KL divergence':<16}{_value(mean.kl_divergence):>14}{_value(sums.kl_divergence):>16}",
        f"{'entropy':<16}{_value(mean.entropy):>14}{_value(sums.entropy):>16}",
        f"{'perplexity':<16}{_value(mean.perplexity):>14}",
        f"{'accuracy':<16}{_value(mean.accuracy):>14}",
        f"{'n':<16}{scores.n:>14}   ({scores.n_scored} scored)",
    ]
    lines += _breakdown_lines(scores)
    if not scores.warnings:
        lines.append("warnings        none")
    for warning in scores.warnings:
        rows = ", ".join(map(str, warning.rows)) + (", ..." if warning.count > len(warning.rows) else "")
        lines.append(f"warning         {warning.code} ({counted(warning.count, 'row')}{': ' + rows if rows else ''}): ")
        lines[-1] += warning.message
    return "\n".join(lines) + "\n"


def _breakdown_lines(scores: Scores) -> list[str]:
    """The table's lines of the breakdowns and calibration, when asked: each group's and class's mean cross-entropy
    with its standard error, and the calibration errors."""
    lines = []
    for name, entry in (scores.by_group or {}).items():
        mean, error = entry["mean"]["cross_entropy"], entry["stderr"]["cross_entropy"]
        lines.append(f"{'group ' + name:<16}{_value(mean):>14} ± {_value(error)}   (n {entry['n']})")
    for name, entry in (scores.by_class or {}).items():
        mean, error = entry["mean_cross_entropy"], entry["stderr"]
        lines.append(
            f"{'class ' + name:<16}{_value(mean):>14} ± {_value(error)}   (accuracy {_value(entry['accuracy'])})"
        )
    calibration = scores.calibration
    if calibration is not None:
        errors = "  ".join(f"{name} {_value(calibration[name])}" for name in ("ece", "mce", "rmsce", "brier"))
        lines.append(f"{'calibration':<16}{errors}   ({calibration['n_bins']} bins)")
    return lines


def flag_of(args: argparse.Namespace, field: str, row: int | None = None, column: int | None = None) -> str | None:
    """The flag that gave the request field ``field``, with its file and the row and column, as an error names it
    (``--labels y.csv row 3``, ``--classes position 1``); None for a field no flag gives."""
    flag = "--" + field.replace("_", "-")
    if field in FILE_FIELDS:
        where = f"{flag} {getattr(args, field)}"
        if row is not None:
            where += f" row {row}" + ("" if column is None else f", column {column}")
        return where
    if field in OPTION_FIELDS:
        return flag if row is None else f"{flag} position {row}"
    return None


def _problem_message(args: argparse.Namespace, error: ProblemError) -> str:
    """The service's (or the client's) problem, its first error located by the flag that gave the field."""
    first = error.errors[0] if error.errors else None
    if first is not None and first.field is not None and first.loc[0] in ("body", "query"):
        where = flag_of(args, first.field, first.row, first.column)
        if where is not None:
            more = re.search(r" \(and \d+ more\)$", error.detail)  # the service counts the errors it did not list
            return f"{where}: {first.msg}{more.group(0) if more else ''}"
    return f"{error.title}: {error.detail}"


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"xent score: {message}\n")
    return code


def run_sequences(args: argparse.Namespace) -> int:
    """``xent score --sequences``: print the sequences' perplexities, and say how it went in the exit code."""
    given = [flag for flag in ("predictions", "labels", "baseline_predictions") if getattr(args, flag) is not None]
    if given:
        return _fail(EXIT_BAD_INPUT, f"--sequences scores model-server responses: drop --{given[0].replace('_', '-')}")
    try:
        scores = score_sequence_file(args, _service_url(args))
    except (UnreadableFile, BadFlag) as error:
        return _fail(EXIT_BAD_INPUT, str(error))
    except InvalidInput as error:  # in-process: the message the service would send in its 422
        return _fail(EXIT_BAD_INPUT, f"{error.where}: {error.message}")
    except ProblemError as error:
        return _fail(EXIT_BAD_INPUT if error.is_client_error else EXIT_SERVICE, f"{error.title}: {error.detail}")
    except TransportError as error:
        return _fail(EXIT_SERVICE, str(error))
    if args.json:
        sys.stdout.write(orjson.dumps(scores.summary(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(sequence_table(scores))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """``xent score``: print the summary, write the per-sample values, and say how it went in the exit code."""
    if args.sequences is not None:
        return run_sequences(args)
    if args.predictions is None or args.labels is None:
        return _fail(EXIT_BAD_INPUT, "--predictions and --labels are required (or --sequences FILE.jsonl)")
    if args.chunk_size is not None and args.chunk_size < 1:
        return _fail(EXIT_BAD_INPUT, f"--chunk-size must be at least 1, got {args.chunk_size}")
    try:
        scores = score_files(args)
        if args.per_sample is not None and scores.per_sample is not None:
            if isinstance(scores, Comparison):
                write_differences(args.per_sample, scores.per_sample)
            else:
                write_per_sample(args.per_sample, scores.per_sample)
    except (UnreadableFile, BadFlag) as error:
        return _fail(EXIT_BAD_INPUT, str(error))
    except InvalidInput as error:  # in-process: the message the service would send in its 422, flag first
        where = flag_of(args, error.field, error.row, error.column) or error.where
        return _fail(EXIT_BAD_INPUT, f"{where}: {error.message}")
    except ProblemError as error:
        return _fail(EXIT_BAD_INPUT if error.is_client_error else EXIT_SERVICE, _problem_message(args, error))
    except TransportError as error:
        return _fail(EXIT_SERVICE, str(error))
    if args.json:
        sys.stdout.write(orjson.dumps(scores.summary(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(comparison_table(scores) if isinstance(scores, Comparison) else summary_table(scores))
    return EXIT_OK


__all__ = ["add_parser", "run", "summary_table"]
