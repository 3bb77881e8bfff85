"""`python -m hub.cli`: the `hub` command without its console script (tests start workers this way)."""

from hub.cli import main

main()
