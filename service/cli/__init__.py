"""Command line: ``xent serve`` runs the service and ``xent openapi`` writes its OpenAPI document
(``serve.py``); ``xent score`` scores files (``score.py``), in this process (``local.py``) or against
a running service (with ``service.client``)."""

from __future__ import annotations

import argparse

from service.cli import score, serve
from service.cli.serve import openapi_document


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xent`` command."""
    parser = argparse.ArgumentParser(prog="xent", description="xent: a cross-entropy scoring service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(commands)
    score.add_parser(commands)
    args = parser.parse_args(argv)
    # Only a command run as its own process (not main([...]) called from Python) may exec itself anew.
    args.whole_process = argv is None
    result: int = args.run(args)
    return result


__all__ = ["main", "openapi_document"]
