"""``python -m <package>`` entry point (template-owned)."""

from .cli import exit_process, main

exit_process(main(own_process=True))
