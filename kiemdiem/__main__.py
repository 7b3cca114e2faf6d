"""`python -m kiemdiem` is the `kiemdiem` command (for a machine where the script is not on PATH)."""

from deployments.cli import main

main()
