"""retention-recent: keep what is recent, as a Cairn `retention` policy.

Every snapshot younger than `keep-within` stays, and so do the `keep-last`
newest; protected snapshots always stay and take no `keep-last` slot.
Everything else goes. At least one of the two parameters must be given.

Built into a WebAssembly component with componentize-py, which turns the
`retention` world of `wit/policy.wit` into the `wit_world` module imported
here: this module's `WitWorld` class implements its two exports.
"""

import re

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Answer, Decision, Param, PolicyInfo, Snapshot

NAME = "retention-recent"
VERSION = "0.2.0"

# Seconds per duration unit.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(?:[0-9]{1,9}[smhdw]){1,5}")
DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
COUNT = re.compile(r"[0-9]{1,9}")

PARAMS = [
    (
        "keep-within",
        "keep every snapshot younger than this, e.g. 7d, 36h or 1w2d "
        "(units s, m, h, d, w)",
    ),
    (
        "keep-last",
        "also keep the N newest snapshots, however old",
    ),
]


class Rules:
    """The parameters, checked: `within` in seconds with its text as given,
    `last` a count; either may be None (not both)."""

    def __init__(self, params: list[Param]) -> None:
        self.within: int | None = None
        self.within_text = ""
        self.last: int | None = None
        seen: set[str] = set()
        for p in params:
            if p.key in seen:
                raise Err(f"{p.key} is given twice")
            seen.add(p.key)
            value = p.value.strip()
            if p.key == "keep-within":
                self.within = parse_duration(p.key, value)
                self.within_text = value
            elif p.key == "keep-last":
                self.last = parse_count(p.key, value)
            else:
                known = ", ".join(k for k, _ in PARAMS)
                raise Err(f"unknown parameter {p.key!r} (this policy knows {known})")
        if self.within is None and self.last is None:
            raise Err(
                "give keep-within, keep-last or both, "
                "e.g. --param keep-within=7d --param keep-last=3"
            )

    def removal_reason(self) -> str:
        why = []
        if self.within is not None:
            why.append(f"older than {self.within_text}")
        if self.last is not None:
            why.append(f"not among the {self.last} newest")
        return "remove: " + " and ".join(why)


def parse_duration(key: str, value: str) -> int:
    if DURATION.fullmatch(value):
        seconds = sum(int(n) * UNITS[u] for n, u in DURATION_PART.findall(value))
        if seconds > 0:
            return seconds
    raise Err(
        f"{key}={value!r}: expected a duration longer than zero, "
        "such as 7d, 36h or 1w2d (units s, m, h, d, w)"
    )


def parse_count(key: str, value: str) -> int:
    # Only ASCII digits: Python's int() would also take "+3", "1_0" or
    # digits of other scripts.
    if COUNT.fullmatch(value) and int(value) > 0:
        return int(value)
    raise Err(f"{key}={value!r}: expected a whole number of at least 1")


def decide(snapshots: list[Snapshot], now: int, rules: Rules) -> Answer:
    # Rank the snapshots that are not protected, newest first: rank 1 is
    # the newest. Protected ones stay anyway and take no slot. A snapshot
    # is named by its place in the list; two of one group never share a
    # time, the place only makes the order total.
    newest_first = sorted(
        (i for i, s in enumerate(snapshots) if not s.protected),
        key=lambda i: (snapshots[i].time, i),
        reverse=True,
    )
    rank = {i: r + 1 for r, i in enumerate(newest_first)}
    remove = rules.removal_reason()
    # Each reason is given once; decisions point at it by its index.
    reasons: list[str] = []
    index: dict[str, int] = {}
    decisions = []
    for i, s in enumerate(snapshots):
        if s.protected:
            keep, reason = True, "protected"
        elif rules.within is not None and now - s.time < rules.within:
            keep, reason = True, f"within {rules.within_text}"
        elif rules.last is not None and rank[i] <= rules.last:
            keep, reason = True, f"keep-last {rank[i]}"
        else:
            keep, reason = False, remove
        if reason not in index:
            index[reason] = len(reasons)
            reasons.append(reason)
        decisions.append(Decision(keep=keep, reason=index[reason]))
    return Answer(decisions=decisions, reasons=reasons)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PolicyInfo:
        return PolicyInfo(
            name=NAME,
            version=VERSION,
            description=(
                "Keep every snapshot younger than keep-within and the keep-last "
                "newest; protected snapshots always stay and take no slot. "
                "Written in Python (componentize-py): a call needs under 16 MiB "
                "and a few milliseconds, within the default budget."
            ),
            params=[Param(key=k, value=v) for k, v in PARAMS],
        )

    def decide(
        self,
        group: str,
        snapshots: list[Snapshot],
        tag_sets: list[list[str]],
        now: int,
        params: list[Param],
    ) -> Answer:
        # An `Err` raised here becomes the `err` of the result: the host
        # then removes nothing and shows the message.
        return decide(snapshots, now, Rules(params))
