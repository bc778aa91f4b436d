"""`python -m gateway` is `tollgate`."""

from gateway.cli import main

main()
