"""Supervisor and child specifications: what a ``[supervisors.NAME]`` table declares.

In the user's words (Erlang/OTP's ``supervisor`` flags and child specs, in TOML)::

    [supervisors.root]
    strategy = "rest_for_one"     # one_for_one (default) | one_for_all | rest_for_one
                                  # | simple_one_for_one
    max_restarts = 3              # intensity: at most this many restarts ...
    max_seconds = 5               # ... within this period (OTP defaults: 1 and 5)
    auto_shutdown = "never"       # never (default) | any_significant | all_significant
    backoff = { initial = 0.1, max = 5.0, jitter = 0.2 }   # optional, beyond OTP
    children = [
      { id = "db", actor = "Store", key = "main", args = [1], restart = "permanent", shutdown = 5000 },
      { id = "jobs", supervisor = "jobs" },
    ]

A child runs either a registered actor type at ``key`` (``args`` / ``kwargs`` go to its
``on_start``) or a nested supervisor. ``restart``: permanent (default) | transient |
temporary. ``shutdown``: milliseconds (default 5000 for actors) | "brutal_kill" |
"infinity" (default for supervisors). ``significant`` (default false) marks a transient
or temporary child whose exit can shut the supervisor down (``auto_shutdown``).

Every problem is a :class:`~actorsys.errors.ConfigError` naming the file, the line and
the key (``supervisors.root.children[1].restart``).

The values a table may hold are the enums below (:class:`Strategy`, :class:`Restart`,
:class:`AutoShutdown`; string enums, so they compare equal to, and serialize as, the words
of the config file) and their defaults are the ``DEFAULT_*`` constants: the dataclasses
and the parsers both read them, so a default is written once.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError


class Strategy(enum.StrEnum):
    """Which children a restart of one child restarts (OTP's restart strategies)."""

    ONE_FOR_ONE = "one_for_one"                 # the child alone
    ONE_FOR_ALL = "one_for_all"                 # every child
    REST_FOR_ONE = "rest_for_one"               # the child and those declared after it
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"   # one_for_one over children made from a template


class Restart(enum.StrEnum):
    """When an exited child is restarted (OTP's restart types)."""

    PERMANENT = "permanent"     # always
    TRANSIENT = "transient"     # after an abnormal exit only
    TEMPORARY = "temporary"     # never (its spec is dropped once it exits)


class AutoShutdown(enum.StrEnum):
    """When the exits of significant children shut their supervisor down (OTP 24)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


#: ``shutdown`` values besides milliseconds
BRUTAL_KILL, INFINITY = "brutal_kill", "infinity"
Shutdown = int | str      # milliseconds >= 0, BRUTAL_KILL or INFINITY

# -- defaults: the only place they are written --------------------------------------------
DEFAULT_STRATEGY = Strategy.ONE_FOR_ONE
DEFAULT_MAX_RESTARTS = 1            # OTP's intensity default ...
DEFAULT_MAX_SECONDS = 5.0           # ... and period default
DEFAULT_AUTO_SHUTDOWN = AutoShutdown.NEVER
DEFAULT_RESTART = Restart.PERMANENT
DEFAULT_ACTOR_SHUTDOWN_MS = 5000    # an actor child's shutdown; a supervisor child's is INFINITY
DEFAULT_SUPERVISOR_SHUTDOWN = INFINITY
DEFAULT_BACKOFF_INITIAL = 0.1       # seconds; the backoff table's keys when left out
DEFAULT_BACKOFF_MAX = 10.0
DEFAULT_BACKOFF_JITTER = 0.2

STRATEGIES = tuple(s.value for s in Strategy)
RESTARTS = tuple(r.value for r in Restart)
AUTO_SHUTDOWN = tuple(a.value for a in AutoShutdown)
_SUP_KEYS = ("strategy", "max_restarts", "max_seconds", "auto_shutdown", "backoff", "children")
_CHILD_KEYS = ("id", "actor", "key", "args", "kwargs", "supervisor", "restart", "shutdown",
               "significant")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$")

Fail = Callable[[str, str], ConfigError]   # (problem, dotted key) -> error to raise


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a restart: ``initial * 2**(n-1)`` for the n-th restart within the
    period, capped at ``max``, spread by +-``jitter`` (a fraction). All >= 0,
    ``max >= initial``, ``jitter <= 1``."""

    initial: float
    max: float
    jitter: float = DEFAULT_BACKOFF_JITTER

    def delay(self, n: int, rand: float) -> float:
        """The delay of the ``n``-th recent restart (n >= 1); ``rand`` is uniform in [0, 1)."""
        base: float = min(self.max, self.initial * (2 ** min(n - 1, 60)))
        return max(0.0, base * (1 + self.jitter * (2 * rand - 1)))


@dataclass(slots=True)
class ChildSpec:
    """One child: an actor ``(actor, key)`` started with ``args``/``kwargs``, or a nested
    supervisor (then ``actor``, ``key``, ``args`` and ``kwargs`` are unset). ``key`` is
    None only in a simple_one_for_one template; ``significant`` implies a restart type
    other than permanent."""

    id: str
    actor: str | None = None
    key: str | None = None
    supervisor: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    restart: Restart = DEFAULT_RESTART
    shutdown: Shutdown = DEFAULT_ACTOR_SHUTDOWN_MS
    significant: bool = False

    def __post_init__(self) -> None:
        self.restart = Restart(self.restart)    # from a stored dict: a plain string

    @property
    def addr(self) -> tuple[str, str]:
        """The actor address it runs, ``("", "")`` for a supervisor child."""
        return (self.actor or "", self.key or "")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the inverse of ``ChildSpec(**d)``), as stored and as reported."""
        d: dict[str, Any] = {"id": self.id, "restart": self.restart.value,
                             "shutdown": self.shutdown, "significant": self.significant}
        if self.supervisor is not None:
            d["supervisor"] = self.supervisor
        else:
            d.update(actor=self.actor, key=self.key, args=self.args, kwargs=self.kwargs)
        return d


@dataclass(slots=True)
class SupervisorSpec:
    """A supervisor's flags and its children, in start order (ids unique; exactly one,
    a template without a key, for simple_one_for_one)."""

    name: str
    strategy: Strategy = DEFAULT_STRATEGY
    max_restarts: int = DEFAULT_MAX_RESTARTS      # >= 0
    max_seconds: float = DEFAULT_MAX_SECONDS      # > 0
    auto_shutdown: AutoShutdown = DEFAULT_AUTO_SHUTDOWN
    backoff: Backoff | None = None
    children: list[ChildSpec] = field(default_factory=list)


def parse_child(d: Any, *, actors: dict[str, str], sup: SupervisorSpec, fail: Fail,
                where: str, template: bool = False) -> ChildSpec:
    """Validate one child spec (a TOML inline table or a dict from ``start_child``)."""
    if not isinstance(d, dict):
        raise fail("a child spec is a table such as { id = \"db\", actor = \"Store\", key = \"main\" }",
                   where)
    for k in d:
        if k not in _CHILD_KEYS:
            raise fail(f"unknown child key (expected one of: {', '.join(_CHILD_KEYS)})", f"{where}.{k}")
    cid = d.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        raise fail("every child needs an id: a non-empty string (max 200 characters)", f"{where}.id")
    actor, sub = d.get("actor"), d.get("supervisor")
    if (actor is None) == (sub is None):
        raise fail("a child runs exactly one of: actor = \"Type\" (with key) or supervisor = \"name\"",
                   where)
    spec = ChildSpec(id=cid)
    if actor is not None:
        if not isinstance(actor, str) or actor not in actors:
            raise fail(f"unknown actor type {actor!r} (registered in [actors]: "
                       f"{', '.join(sorted(actors)) or 'none'})", f"{where}.actor")
        key = d.get("key")
        if template:
            if key is not None:
                raise fail("a simple_one_for_one child template has no key: each start_child "
                           "gives one", f"{where}.key")
        elif not isinstance(key, str) or not key or "\x00" in key or len(key.encode()) > 1024:
            raise fail("an actor child needs a key: a non-empty string (max 1024 bytes, no NUL)",
                       f"{where}.key")
        args, kwargs = d.get("args", []), d.get("kwargs", {})
        if not isinstance(args, list):
            raise fail(f"must be a list of start arguments, got {args!r:.80}", f"{where}.args")
        if not isinstance(kwargs, dict) or any(not isinstance(k, str) for k in kwargs):
            raise fail("must be a table of keyword start arguments", f"{where}.kwargs")
        spec.actor, spec.key, spec.args, spec.kwargs = actor, key, args, kwargs
    else:
        if template:
            raise fail("a simple_one_for_one child template must run an actor", f"{where}.supervisor")
        if not isinstance(sub, str) or not _NAME.match(sub):
            raise fail(f"must name a supervisor table, got {sub!r:.80}", f"{where}.supervisor")
        for k in ("key", "args", "kwargs"):
            if k in d:
                raise fail("a supervisor child takes no key, args or kwargs", f"{where}.{k}")
        spec.supervisor = sub
        spec.shutdown = DEFAULT_SUPERVISOR_SHUTDOWN
    restart = d.get("restart", DEFAULT_RESTART.value)
    if restart not in RESTARTS:
        raise fail(f"invalid restart type {restart!r:.80} (expected one of: {', '.join(RESTARTS)})",
                   f"{where}.restart")
    spec.restart = Restart(restart)
    if "shutdown" in d:
        sd = d["shutdown"]
        if type(sd) is int:
            if sd < 0:
                raise fail(f"invalid shutdown {sd}: milliseconds must be 0 or more", f"{where}.shutdown")
        elif sd not in (BRUTAL_KILL, INFINITY):
            raise fail(f"invalid shutdown {sd!r:.80} (expected milliseconds, \"brutal_kill\" or "
                       f"\"infinity\")", f"{where}.shutdown")
        spec.shutdown = sd
    significant = d.get("significant", False)
    if not isinstance(significant, bool):
        raise fail("must be true or false", f"{where}.significant")
    if significant and spec.restart is Restart.PERMANENT:
        raise fail("bad combination: a significant child must be transient or temporary "
                   "(restart = \"permanent\" would never let it shut the supervisor down)",
                   f"{where}.significant")
    if significant and sup.auto_shutdown is AutoShutdown.NEVER:
        raise fail("bad combination: significant = true needs the supervisor's auto_shutdown "
                   "to be \"any_significant\" or \"all_significant\"", f"{where}.significant")
    spec.significant = significant
    return spec


def parse_supervisor(name: str, d: Any, *, actors: dict[str, str], fail: Fail) -> SupervisorSpec:
    base = f"supervisors.{name}"
    if not _NAME.match(name):
        raise fail("supervisor names use letters, digits, '_', '.', '-' (max 200)", base)
    if not isinstance(d, dict):
        raise fail("must be a table", base)
    for k in d:
        if k not in _SUP_KEYS:
            raise fail(f"unknown key (expected one of: {', '.join(_SUP_KEYS)})", f"{base}.{k}")
    sup = SupervisorSpec(name=name)
    strategy = d.get("strategy", DEFAULT_STRATEGY.value)
    if strategy not in STRATEGIES:
        raise fail(f"invalid strategy {strategy!r:.80} (expected one of: {', '.join(STRATEGIES)})",
                   f"{base}.strategy")
    sup.strategy = strategy = Strategy(strategy)
    mr = d.get("max_restarts", DEFAULT_MAX_RESTARTS)
    if type(mr) is not int or mr < 0:
        raise fail(f"invalid intensity {mr!r:.80}: max_restarts must be an integer >= 0",
                   f"{base}.max_restarts")
    ms = d.get("max_seconds", DEFAULT_MAX_SECONDS)
    if type(ms) not in (int, float) or ms <= 0:
        raise fail(f"invalid period {ms!r:.80}: max_seconds must be a number > 0", f"{base}.max_seconds")
    sup.max_restarts, sup.max_seconds = mr, float(ms)
    auto = d.get("auto_shutdown", DEFAULT_AUTO_SHUTDOWN.value)
    if auto not in AUTO_SHUTDOWN:
        raise fail(f"invalid auto_shutdown {auto!r:.80} (expected one of: {', '.join(AUTO_SHUTDOWN)})",
                   f"{base}.auto_shutdown")
    auto = AutoShutdown(auto)
    if auto is not AutoShutdown.NEVER and strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        raise fail("bad combination: auto_shutdown needs a strategy other than simple_one_for_one",
                   f"{base}.auto_shutdown")
    sup.auto_shutdown = auto
    if "backoff" in d:
        sup.backoff = parse_backoff(d["backoff"], fail, f"{base}.backoff")
    children = d.get("children", [])
    if not isinstance(children, list):
        raise fail("must be a list of child specs", f"{base}.children")
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(children) != 1:
        raise fail("simple_one_for_one takes exactly one child spec: the template of the children "
                   "that start_child starts", f"{base}.children")
    seen: set[str] = set()
    for i, c in enumerate(children):
        child = parse_child(c, actors=actors, sup=sup, fail=fail, where=f"{base}.children[{i}]",
                            template=strategy is Strategy.SIMPLE_ONE_FOR_ONE)
        if child.id in seen:
            raise fail(f"duplicate child id {child.id!r}", f"{base}.children[{i}].id")
        seen.add(child.id)
        sup.children.append(child)
    return sup


def parse_backoff(b: Any, fail: Fail, where: str) -> Backoff:
    if not isinstance(b, dict) or set(b) - {"initial", "max", "jitter"}:
        raise fail("must be a table { initial = SECONDS, max = SECONDS, jitter = FRACTION }", where)
    initial = b.get("initial", DEFAULT_BACKOFF_INITIAL)
    cap, jitter = b.get("max", DEFAULT_BACKOFF_MAX), b.get("jitter", DEFAULT_BACKOFF_JITTER)
    for k, v in (("initial", initial), ("max", cap), ("jitter", jitter)):
        if type(v) not in (int, float) or v < 0:
            raise fail("must be a number >= 0", f"{where}.{k}")
    if cap < initial:
        raise fail("max must be at least initial", f"{where}.max")
    if jitter > 1:
        raise fail("jitter is a fraction between 0 and 1", f"{where}.jitter")
    return Backoff(float(initial), float(cap), float(jitter))


def parse_supervisors(raw: Any, *, actors: dict[str, str], fail: Fail) -> dict[str, SupervisorSpec]:
    """Validate every ``[supervisors.NAME]`` table and how they nest (no cycles, each
    nested supervisor has one parent, every actor address has one supervisor)."""
    if not isinstance(raw, dict):
        raise fail("[supervisors] must hold tables: [supervisors.NAME]", "supervisors")
    sups = {name: parse_supervisor(name, d, actors=actors, fail=fail) for name, d in raw.items()}
    parent: dict[str, str] = {}
    owner: dict[tuple[str, str], str] = {}
    for sup in sups.values():
        for i, c in enumerate(sup.children):
            where = f"supervisors.{sup.name}.children[{i}]"
            if c.supervisor is not None:
                if c.supervisor not in sups:
                    raise fail(f"no [supervisors.{c.supervisor}] table", f"{where}.supervisor")
                if c.supervisor in parent:
                    raise fail(f"supervisor {c.supervisor!r} is already a child of "
                               f"{parent[c.supervisor]!r}; a supervisor has one parent",
                               f"{where}.supervisor")
                parent[c.supervisor] = sup.name
            elif c.key is not None:
                addr = (c.actor or "", c.key)
                if addr in owner:
                    raise fail(f"actor {addr[0]}/{addr[1]} is already supervised by {owner[addr]}; "
                               f"an actor has one supervisor", f"{where}.key")
                owner[addr] = f"{sup.name}/{c.id}"
    for name in sups:
        seen, at = [name], name
        while at in parent:
            at = parent[at]
            if at in seen:
                # from the outside in: "a -> b -> a" is a containing b containing a
                raise fail(f"supervisors nest in a cycle: {' -> '.join([at, *reversed(seen)])}",
                           f"supervisors.{name}")
            seen.append(at)
    return sups


def roots(sups: dict[str, SupervisorSpec]) -> list[str]:
    """The top-level supervisors (no parent), in declared order."""
    nested = {c.supervisor for s in sups.values() for c in s.children if c.supervisor}
    return [name for name in sups if name not in nested]


def to_config(sups: dict[str, SupervisorSpec]) -> dict[str, Any]:
    """The validated tables as plain data (for the node's JSON config)."""
    out: dict[str, Any] = {}
    for s in sups.values():
        table: dict[str, Any] = {"strategy": s.strategy.value, "max_restarts": s.max_restarts,
                                 "max_seconds": s.max_seconds, "auto_shutdown": s.auto_shutdown.value,
                                 "children": [c.to_dict() for c in s.children]}
        if s.backoff is not None:
            table["backoff"] = {"initial": s.backoff.initial, "max": s.backoff.max,
                                "jitter": s.backoff.jitter}
        out[s.name] = table
    return out


def child_line(text: str | None, sup: str, index: int, key: str | None) -> int | None:
    """Best-effort line of child ``index`` (or of its ``key``) of ``[supervisors.sup]``."""
    if text is None:
        return None
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*supervisors\s*\.\s*[\"']?" + re.escape(sup) + r"[\"']?\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is not None:
        # inline tables: the line of the index-th top-level '{' of 'children = [ ... ]'
        # (a child's own kwargs = { ... } or a '{' inside a string is not a child)
        seen, depth, quote, escaped = -1, 0, "", False
        for i in range(start + 1, len(lines)):
            line = lines[i]
            if depth == 0:
                if re.match(r"^\s*\[", line):
                    break
                m = re.match(r"^\s*children\s*=\s*", line)
                if not m:
                    continue
                line = line[m.end():]
            for c in line:
                if quote:
                    if escaped:
                        escaped = False
                    elif c == "\\" and quote == '"':
                        escaped = True
                    elif c == quote:
                        quote = ""
                elif c in "\"'":
                    quote = c
                elif c == "#":
                    break
                elif c in "[{":
                    depth += 1
                    if c == "{" and depth == 2:
                        seen += 1
                        if seen == index:
                            return i + 1
                elif c in "]}":
                    depth -= 1
                    if depth == 0:
                        break
            if depth == 0:
                break
    # arrays of tables: the index-th [[supervisors.sup.children]], then the key inside it
    hdr = re.compile(r"^\s*\[\[\s*supervisors\s*\.\s*[\"']?" + re.escape(sup)
                     + r"[\"']?\s*\.\s*children\s*\]\]")
    seen = -1
    for i, line in enumerate(lines):
        if hdr.match(line):
            seen += 1
            if seen == index:
                if key is None:
                    return i + 1
                for j in range(i + 1, len(lines)):
                    if re.match(r"^\s*\[", lines[j]):
                        break
                    if re.match(r"^\s*" + re.escape(key) + r"\s*=", lines[j]):
                        return j + 1
                return i + 1
    return None
