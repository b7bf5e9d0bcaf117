"""The one way an episode ends: used by verify, by a scan that finds the session healthy, and by
the operator's `clear`.

Closing releases the attempt's lease, clears the attempt counters, the escalated and flapping
markers and the open-episode entry, and resolves the session's incident if one was opened. The
heal-budget history is kept (it is what makes a flapping session flapping) except on `clear`,
where the operator vouches for the session.
"""

from __future__ import annotations

import logging

from supervisor import metrics
from supervisor.errors import StateError
from supervisor.recovery.context import Engine, session_dedup_key
from supervisor.state.leases import Lease

log = logging.getLogger(__name__)


def close_episode(
    engine: Engine,
    gateway: str,
    key: str,
    session_id: str | None,
    *,
    lease: Lease | None = None,
    healed: bool = True,
    forget_budget: bool = False,
) -> bool:
    """Close one session's episode; True when an escalation was open (and is now resolved)."""
    store = engine.store
    was_escalated = False
    if session_id is not None:
        state = store.attempts.get(gateway, key, session_id)
        if state is not None and healed:
            metrics.healed((engine.now_ms() - state.first_seen_ms) / 1000)
        store.attempts.clear(gateway, key, session_id)
        was_escalated = store.attempts.clear_escalation(gateway, key, session_id)
    # an escalation may have been opened under an earlier sessionId of the same key
    episode = store.episodes.open_episodes(gateway).get(key)
    if episode is not None and episode.session_id != (session_id or ""):
        store.attempts.clear(gateway, key, episode.session_id)
        was_escalated = store.attempts.clear_escalation(gateway, key, episode.session_id) or (
            was_escalated
        )
    if store.budgets.clear_flapping(gateway, key):
        was_escalated = True
    if forget_budget:
        store.budgets.forget(gateway, key)
    store.episodes.close(gateway, key)
    if lease is not None:
        try:
            store.leases.release(lease)
        except StateError as exc:
            log.warning("lease not released (it expires by itself): %s", exc)
    if was_escalated:
        metrics.resolved("session")
        engine.pager.resolve(session_dedup_key(gateway, key), gateway=gateway, key=key)
    return was_escalated
