"""The ladder against a model gateway that may, at any moment, start a run, finish one, die,
restart or answer wrongly, between any two of the supervisor's reads and requests.

Shown for every sequence hypothesis finds:
* no mutating request on a row whose last observation was live (or idle);
* never two mutating requests without an observation between them;
* an `aborted` answer on a dead lane never leads to a reset;
* a run that started between the final read and the request is reported `collided`, never healed;
* every episode ends healed, escalated or hands-off within a bounded number of steps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from supervisor.core.attempt import AttemptRef
from supervisor.core.detect import NEEDS_ACTION, Verdict, VerdictKind
from supervisor.core.ladder import (
    Action,
    Answered,
    Episode,
    Found,
    Kind,
    Read,
    Step,
    counts_toward_budget,
    next_action,
)
from supervisor.core.policy import Policy

POLICY = Policy(max_attempts=3, max_heals_per_session=3, backoff_base=0, backoff_jitter=0)
#: steps one attempt may take at most: abort, verify, probe abort, reset, verify (+1 slack)
MAX_STEPS_PER_ATTEMPT = 6
_ids = itertools.count(1)


@dataclass
class ModelSession:
    """The one session of the model gateway."""

    kind: VerdictKind = VerdictKind.ZOMBIE
    sid: str = "s0"
    started: float = 1.0
    runs: tuple[str, ...] = ()
    #: runs started since the supervisor's last final read
    started_since_read: bool = False

    def verdict(self) -> Verdict:
        return Verdict(
            key="agent:a:k", kind=self.kind, reason="model", session_id=self.sid,
            started_at_ms=self.started, run_ids=self.runs,
            overdue=self.kind is VerdictKind.HELD,
        )  # fmt: skip


@dataclass
class Executor:
    """What the edges remember: Redis counters, the attempt in flight, the pending request."""

    attempts: int = 0
    escalated: bool = False
    heals: int = 0
    pending: tuple[Step, AttemptRef] | None = None
    pending_send: tuple[Step, AttemptRef, Verdict] | None = None
    steps_in_attempt: int = 0
    observed_since_send: bool = True
    sends: list[tuple[Step, VerdictKind]] = field(default_factory=list)
    collisions_healed: int = 0
    collisions: int = 0


class LadderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = ModelSession()
        self.x = Executor()
        self.wrong_answer = False
        self.now = 1_000_000.0

    # -- the world ---------------------------------------------------------------------------

    @rule()
    def user_sends_a_message(self) -> None:
        if self.s.kind in (VerdictKind.IDLE, VerdictKind.ZOMBIE):
            run = f"r{next(_ids)}"
            # 2026.3.24: a message to a dead lane runs at once, with a new startedAt
            self.s.kind, self.s.started, self.s.runs = VerdictKind.LIVE, self.now, (run,)
            self.s.started_since_read = True

    @rule()
    def run_finishes(self) -> None:
        if self.s.kind in (VerdictKind.LIVE, VerdictKind.LIVE_OVERDUE):
            self.s.kind, self.s.runs = VerdictKind.IDLE, ()

    @rule()
    def run_dies(self) -> None:
        if self.s.kind in (VerdictKind.LIVE, VerdictKind.LIVE_OVERDUE):
            self.s.kind, self.s.runs = VerdictKind.ZOMBIE, ()

    @rule()
    def run_goes_overdue(self) -> None:
        if self.s.kind is VerdictKind.LIVE:
            self.s.kind = VerdictKind.LIVE_OVERDUE

    @rule()
    def message_held_behind_dead_lane(self) -> None:
        if self.s.kind is VerdictKind.ZOMBIE:
            self.s.kind, self.s.runs = VerdictKind.HELD, (f"h{next(_ids)}",)
            self.s.started_since_read = True

    @rule()
    def gateway_restarts(self) -> None:
        # a restart kills whatever ran in the process; rows stay `running` (#59878)
        if self.s.kind in (VerdictKind.LIVE, VerdictKind.LIVE_OVERDUE):
            self.s.kind, self.s.runs = VerdictKind.ZOMBIE, ()

    @rule()
    def gateway_will_answer_wrongly(self) -> None:
        self.wrong_answer = True

    @rule()
    def time_passes(self) -> None:
        self.now += 60_000

    # -- the supervisor ----------------------------------------------------------------------

    @precondition(lambda self: self.x.pending is None and self.x.pending_send is None)
    @rule()
    def scan(self) -> None:
        episode = Episode(
            attempts=self.x.attempts, escalated=self.x.escalated, heals_in_window=self.x.heals
        )
        action = next_action(None, Found(self.s.verdict(), episode), POLICY, self.now)
        self.x.observed_since_send = True
        if action.kind is Kind.ESCALATE:
            self.x.escalated = True
        elif action.kind is Kind.START:
            assert action.step is not None
            self.x.attempts += 1
            self.x.steps_in_attempt = 0
            ref = AttemptRef.of(
                "gw", self.s.verdict(), recovery_id=f"a{self.x.attempts}",
                attempt=self.x.attempts, lease_token=self.x.attempts, dry_run=False,
            )  # fmt: skip
            self.x.pending = (action.step, ref)

    @precondition(lambda self: self.x.pending is not None and self.x.pending_send is None)
    @rule()
    def step_reads(self) -> None:
        assert self.x.pending is not None
        step, ref = self.x.pending
        self.x.steps_in_attempt += 1
        now = self.s.verdict()
        self.s.started_since_read = False
        self.x.observed_since_send = True
        action = next_action(ref, Read(step, now), POLICY, self.now)
        if action.kind is Kind.SEND:
            # no mutation on a row last seen live, idle, or as another session
            assert now.kind in NEEDS_ACTION or now.kind is VerdictKind.HELD, now.kind
            self.x.pending_send = (step, ref, now)
            self.x.pending = None
            return
        self._follow(ref, action)

    @precondition(lambda self: self.x.pending_send is not None)
    @rule()
    def step_sends(self) -> None:
        assert self.x.pending_send is not None
        step, ref, _read = self.x.pending_send
        self.x.pending_send = None
        assert self.x.observed_since_send, "two mutations without an observation between them"
        self.x.observed_since_send = False
        self.x.sends.append((step, self.s.kind))
        collided = self.s.started_since_read
        answer = self._gateway_answers(step)
        if counts_toward_budget(step, answer):
            self.x.heals += 1
        action = next_action(ref, Answered(step, answer, collided=collided), POLICY, self.now)
        if collided:
            self.x.collisions += 1
            assert action.kind is Kind.CLOSE and not action.healed and action.page == "collided"
        if step is Step.ABORT and answer == "aborted" and ref.dead_lane:
            assert not (action.kind is Kind.NEXT and action.step is Step.RESET)
        self._follow(ref, action)

    def _gateway_answers(self, step: Step) -> str:
        wrong, self.wrong_answer = self.wrong_answer, False
        s = self.s
        if step is Step.ABORT:
            if s.kind in (VerdictKind.LIVE, VerdictKind.LIVE_OVERDUE) or wrong:
                s.kind, s.runs = (VerdictKind.IDLE, ()) if not wrong else (s.kind, s.runs)
                return "aborted"
            return "no-active-run"
        if wrong:
            return "reset"  # answered ok and changed nothing (openclaw #126836)
        s.kind, s.runs, s.sid, s.started = VerdictKind.IDLE, (), f"s{next(_ids)}", 0.0
        return "reset"

    @precondition(lambda self: self.x.pending is not None and self.x.pending_send is None)
    @rule()
    def step_verifies_early(self) -> None:
        """A verify due now runs before the world moves again (the settle delay elapsed)."""
        assert self.x.pending is not None
        step, ref = self.x.pending
        if step is not Step.VERIFY:
            return
        self.x.steps_in_attempt += 1
        self.x.observed_since_send = True
        self._follow(ref, next_action(ref, Read(Step.VERIFY, self.s.verdict()), POLICY, self.now))

    def _follow(self, ref: AttemptRef, action: Action) -> None:
        if action.kind is Kind.NEXT and action.step is Step.ESCALATE:
            self.x.escalated, self.x.pending = True, None  # the escalate step only pages
            return
        if action.kind is Kind.NEXT:
            assert action.step is not None
            nxt = ref.model_copy(update=dict(action.update)) if action.update else ref
            self.x.pending = (action.step, nxt)
            return
        self.x.pending = None
        if action.kind is Kind.CLOSE:
            self.x.attempts, self.x.escalated = 0, False

    # -- properties --------------------------------------------------------------------------

    @invariant()
    def attempts_are_bounded(self) -> None:
        assert self.x.steps_in_attempt <= MAX_STEPS_PER_ATTEMPT
        assert self.x.attempts <= POLICY.max_attempts

    def teardown(self) -> None:
        """With the world still, every episode ends healed, escalated or hands-off."""
        self.wrong_answer = False
        for _ in range(POLICY.max_attempts * MAX_STEPS_PER_ATTEMPT * 2 + 4):
            if self.x.pending_send is not None:
                self.step_sends()
            elif self.x.pending is not None:
                self.step_reads()
            else:
                settled = self.s.kind not in NEEDS_ACTION and self.s.kind is not VerdictKind.HELD
                if settled or self.x.escalated or self.x.heals >= POLICY.max_heals_per_session:
                    return
                self.scan()
        raise AssertionError(f"episode did not end: {self.s} {self.x}")


LadderMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    # a loaded CI machine must not fail it for being slow
    suppress_health_check=[HealthCheck.too_slow],
)
TestLadder = LadderMachine.TestCase
