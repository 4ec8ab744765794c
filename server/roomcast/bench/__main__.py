"""``python -m roomcast.bench SCENARIO [flags]``, the same as ``roomcast bench``: the
command line (roomcast.cli) names the default server from the settings."""

import sys

from ..cli import main

raise SystemExit(main(["bench", *sys.argv[1:]]))
