"""Named points in our own code where a chaos test can kill the process (SIGKILL).

Off unless `SUPERVISOR_FAILPOINT` names a point (optionally `point:step`, e.g.
`after_act:reset`). With `SUPERVISOR_FAILPOINT_ONCE=<file>` it fires once across all
processes (the first to create the file dies), so a redelivered copy runs on; a `{tag}` in that
path is replaced by the caller's tag (gateway and session key), so it fires once per session
(many sessions can each lose one worker at once). Without it the point fires every time (a step
that always crashes its worker). Reading two environment variables is all it costs when off.

With `SUPERVISOR_FAILPOINT_ACTION=stop` the process stops itself (SIGSTOP) instead of dying and
goes on where it was when something sends it SIGCONT: a holder frozen mid-step (a paused VM, a
host cut off), whose return the test chooses the moment of.

Points, in the order a mutating step meets them: before_claim (nothing of the step written
yet: a step that dies here at every delivery is a poison task), after_claim, after_lease,
after_reread (the final read done, not yet judged), before_send (the ladder said send),
after_act (the gateway answered,
the answer not yet recorded), before_ack (the task finished and enqueued its follow-up, not yet
acknowledged).
"""

from __future__ import annotations

import os
import signal
from urllib.parse import quote

POINTS = ("before_claim", "after_claim", "after_lease", "after_reread", "after_act", "before_ack")


def hit(point: str, step: str | None = None, tag: str | None = None) -> None:
    """Die here if this point (and step) is armed."""
    armed = os.environ.get("SUPERVISOR_FAILPOINT")
    if not armed:
        return
    name, _, only_step = armed.partition(":")
    if name != point or (only_step and only_step != step):
        return
    once = os.environ.get("SUPERVISOR_FAILPOINT_ONCE")
    if once:
        once = once.replace("{tag}", quote(tag or "-", safe=""))
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    stop = os.environ.get("SUPERVISOR_FAILPOINT_ACTION") == "stop"
    os.kill(os.getpid(), signal.SIGSTOP if stop else signal.SIGKILL)
