"""Option types and options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path

import click

#: A file to read or write (a directory is refused).
FILE = click.Path(dir_okay=False, path_type=Path)
#: A file that must exist.
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
#: A directory (a file is refused).
DIRECTORY = click.Path(file_okay=False, path_type=Path)

#: ``--json``: print data for scripts instead of text for people.
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
