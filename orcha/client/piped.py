"""Whether this client has a stdin to send: ``orcha run`` forwards it to its petition
(:mod:`orcha.client.attach`); an attached array, whose members do not read it, says it
was not sent (:mod:`orcha.cli.arrays`)."""

from __future__ import annotations

import os
import stat


def piped_stdin() -> bool:
    """Whether this process has a stdin to forward: open, not a terminal (what is typed
    there is for the shell, not for a petition that may run much later) and not
    ``/dev/null`` (the petition reads /dev/null anyway: forwarding it would only cost a
    pipe and a request, in every ``orcha run ... < /dev/null`` of a script)."""
    try:
        st = os.fstat(0)
    except OSError:
        return False
    if stat.S_ISCHR(st.st_mode):  # a terminal, /dev/null, /dev/zero...
        try:
            if st.st_rdev == os.stat(os.devnull).st_rdev:
                return False
        except OSError:
            pass
    return not os.isatty(0)
