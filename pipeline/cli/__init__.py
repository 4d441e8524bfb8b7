"""The ``omnistitch`` command: ``main`` is the console script's entry point."""

from pipeline.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
