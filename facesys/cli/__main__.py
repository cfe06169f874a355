"""``python -m facesys.cli``."""

from facesys.cli import main

main()
