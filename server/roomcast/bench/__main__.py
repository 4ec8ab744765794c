"""``python -m roomcast.bench SCENARIO [flags]``, the same as ``roomcast bench``."""

from . import main

raise SystemExit(main(prog="python -m roomcast.bench"))
