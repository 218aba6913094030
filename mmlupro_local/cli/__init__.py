"""The command line: Click only, turning options into calls and errors into messages."""

from mmlupro_local.cli.app import main

__all__ = ["main"]
