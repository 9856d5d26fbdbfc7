"""``actorsys top``: a live view of one node, refreshed every second (issue 17), drawn
with rich (a well-kept terminal library: tables, colours, redraw in place).

What a frame shows, from three requests to the node's router (``STATUS``, ``METRICS``,
``TOP``) and the supervision tree's ``which_children``:

* **processes**: role, slot, pid, up, CPU (% of a core over the last interval, from the
  library's ``process_cpu_seconds_total``), RSS, restarts (``actorsys_process_restarts_total``),
  and for a worker its turns/s, resident actors, mailbox depth and failures;
* **commits**: each worker's group-commit latency p50 / p99 over the interval (from
  ``actorsys_commit_duration_seconds``'s buckets, as Prometheus' histogram_quantile
  does; only while the node serves metrics: ``[node] metrics``);
* **hot actors**: the busiest actors of about the last minute (``client.top``);
* **supervision tree**: each supervisor and each child's state (the first
  :data:`CHILDREN_SHOWN` children of a supervisor; the rest are counted);
* **cluster** (a node of one): each node as this node sees it, alive or not, its shards,
  the copies it follows and learns, and the under-replicated and unavailable shards.

A rate needs two samples: a frame compares the node now with the node one interval
ago, ``--once`` too (it waits one interval, then prints one frame and exits: for
scripts). Ctrl-C ends the live view; a node that stops answering is said so in place of
the frame, and asked again every interval.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import ActorError

#: children of one supervisor a frame lists (the rest are counted in one line)
CHILDREN_SHOWN = 12
#: hot actors a frame lists
HOT_SHOWN = 10
#: columns of a frame printed to a pipe or a file
WIDE = 160

Labels = tuple[tuple[str, str], ...]


@dataclass
class Sample:
    """What the node said at one moment (``at``: time.monotonic())."""

    at: float
    status: dict[str, Any]
    #: (sample name, labels) -> value, of every family
    values: dict[tuple[str, Labels], float]
    hot: list[dict[str, Any]]
    #: supervisor -> its children (which_children), or an error's text
    tree: dict[str, Any] = field(default_factory=dict)
    #: the cluster as this node sees it (CLUSTER), for a node of a cluster
    cluster: dict[str, Any] | None = None


def sample(client: Any, timeout: float) -> Sample:
    """Ask the node for one :class:`Sample`."""
    status = client.status(timeout=timeout)
    values: dict[tuple[str, Labels], float] = {}
    for _name, _type, _help, samples in client.metrics(timeout=timeout):
        for name, labels, value in samples:
            values[(name, tuple(sorted(labels.items())))] = float(value)
    hot = client.top(HOT_SHOWN, "busy", timeout=timeout)
    tree: dict[str, Any] = {}
    for p in status["processes"]:
        if p.get("role") == "tree" and p.get("up"):
            for name in sorted(p.get("supervisors") or {}):
                try:
                    tree[name] = client.supervisor(name).which_children(timeout=timeout)
                except ActorError as exc:
                    tree[name] = f"{type(exc).__name__}: {exc}"
    cluster = client.cluster(timeout=timeout) if isinstance(status.get("cluster"), dict) else None
    return Sample(time.monotonic(), status, values, hot, tree, cluster)


def _value(s: Sample, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s values whose labels include ``labels`` (None: none)."""
    want = set(labels.items())
    got = [v for (n, ls), v in s.values.items() if n == name and want <= set(ls)]
    return sum(got) if got else None


def _buckets(s: Sample, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative buckets (upper bound -> count) summed over ``labels``."""
    want = set(labels.items())
    out: dict[float, float] = {}
    for (n, ls), v in s.values.items():
        if n == name + "_bucket" and want <= set(ls):
            le = float(dict(ls)["le"])
            out[le] = out.get(le, 0.0) + v
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``buckets`` (None: no observation)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if b == float("inf"):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def _rate(now: Sample, before: Sample | None, name: str, **labels: str) -> float | None:
    a = _value(now, name, **labels)
    if a is None or before is None:
        return None
    b = _value(before, name, **labels) or 0.0
    return max(a - b, 0.0) / max(now.at - before.at, 1e-3)


def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{unit}"


def _t(v: Any) -> Text:
    """A cell of text as it is: an actor's key or a name is never read as rich markup
    (``[red]`` in a key would style, and ``[/]`` would crash the frame)."""
    return Text(str(v))


def _up(p: dict[str, Any]) -> str | Text:
    """The "up" cell: yes, busy (a worker in a long sync turn: ``actorsys/node/slots.py``),
    not answering (up, loop blocked), or NO."""
    if not p.get("up"):
        return Text("NO", style="bold red")
    if p.get("state") == "busy":
        return Text(f"busy {(p.get('busy') or {}).get('seconds', 0):.0f}s", style="yellow")
    if p.get("answered") is False:
        return Text("silent", style="yellow")
    return "yes"


def frame(now: Sample, before: Sample | None) -> Group:
    """One frame: the tables of the module docstring."""
    st = now.status
    head = Text(f"actorsys top  {st['endpoint']}  epoch {st['epoch']}  shards {st['shards']}  "
                f"uptime {st['uptime']:.0f}s", style="bold")   # (Text: no markup)
    procs = Table(title="processes", title_justify="left", expand=False)
    for col in ("role", "slot", "pid", "up", "cpu %", "rss MB", "restarts", "turns/s",
                "resident", "mailbox", "failures"):
        procs.add_column(col, justify="left" if col in ("role", "up") else "right")
    commits = Table(title="group commits (last interval)", title_justify="left")
    for col in ("slot", "commits/s", "p50 ms", "p99 ms"):
        commits.add_column(col, justify="right")
    timed = False
    for p in st["processes"]:
        role, slot = p.get("role", "?"), p.get("slot")
        who = {"role": role} if slot is None else {"role": role, "slot": str(slot)}
        cpu = _rate(now, before, "process_cpu_seconds_total", **who)
        restarts = _value(now, "actorsys_process_restarts_total", **who)
        turns = None
        if role == "worker" and before is not None:
            old = next((q for q in before.status["processes"]
                        if q.get("role") == "worker" and q.get("slot") == slot), None)
            if old is not None and old.get("pid") == p.get("pid") and "turns" in p:
                turns = max(p["turns"] - old.get("turns", 0), 0) / max(now.at - before.at, 1e-3)
        procs.add_row(role, "-" if slot is None else str(slot), str(p.get("pid") or "-"),
                      _up(p),
                      _fmt(None if cpu is None else cpu * 100, ".0f"),
                      _fmt(p["rss"] / 1e6 if p.get("rss") else None, ".1f"),
                      _fmt(restarts or (0.0 if p.get("up") else None), ".0f"),
                      _fmt(turns, ",.0f"), str(p.get("resident", "-")),
                      _fmt(_value(now, "actorsys_mailbox_depth", **who) if role == "worker" else None,
                           ".0f"),
                      str(p.get("failures", "-")))
        if role == "worker":
            b_now = _buckets(now, "actorsys_commit_duration_seconds", **who)
            if b_now:
                timed = True
                b_old = _buckets(before, "actorsys_commit_duration_seconds", **who) if before else {}
                diff = {le: c - b_old.get(le, 0.0) for le, c in b_now.items()}
                n = _rate(now, before, "actorsys_commit_duration_seconds_count", **who)
                p50, p99 = quantile(0.5, diff), quantile(0.99, diff)
                commits.add_row(str(slot), _fmt(n, ",.0f"),
                                _fmt(None if p50 is None else p50 * 1e3, ".2f"),
                                _fmt(None if p99 is None else p99 * 1e3, ".2f"))
    hot = Table(title="hot actors (about the last minute, by busy)", title_justify="left")
    for col in ("type", "key", "slot", "turns/s", "busy %", "errors", "mailbox"):
        hot.add_column(col, justify="left" if col in ("type", "key") else "right")
    for h in now.hot:
        hot.add_row(_t(h["type"]), _t(h["key"]), str(h.get("slot", "-")),
                    f"{h['turns_per_s']:,.1f}", f"{h['busy'] * 100:.1f}", str(h["errors"]),
                    str(h["mailbox"]))
    parts: list[Any] = [head, procs]
    if now.cluster is not None:
        parts.append(cluster_table(now.cluster))
    parts.append(commits if timed else Text("group commits: not timed ([node] metrics is off)",
                                            style="dim"))
    parts.append(hot if now.hot else Text("hot actors: no turn in the last minute", style="dim"))
    if now.tree:
        tree = Table(title="supervision tree", title_justify="left")
        for col in ("supervisor", "child", "actor", "state"):
            tree.add_column(col)
        for name, children in now.tree.items():
            if isinstance(children, str):
                tree.add_row(_t(name), "-", "-", Text(children, style="red"))
                continue
            for ch in children[:CHILDREN_SHOWN]:
                state = str(ch.get("status", "?"))
                what = _t(f"{ch.get('actor') or '-'} {ch.get('key') or ''}")
                tree.add_row(_t(name), _t(ch.get("id")), what,
                             Text(state, style="green" if state == "running" else "yellow"))
            if len(children) > CHILDREN_SHOWN:
                tree.add_row(_t(name), f"... {len(children) - CHILDREN_SHOWN} more", "", "")
        parts.append(tree)
    return Group(*parts)


def cluster_table(view: dict[str, Any]) -> Table:
    """The cluster's nodes as this node sees them (what ``actorsys cluster`` prints)."""
    replicas = view.get("replicas", 1)
    t = Table(title=Text(f"cluster {view.get('name')}  epoch {view.get('epoch')}  replicas {replicas}  "
                    f"under-replicated shards {view.get('under_replicated', 0)}  unavailable "
                    f"shards {view.get('unavailable', 0)}"), title_justify="left")
    for col in ("node", "endpoint", "alive", "shards", "follows", "learning", "to move"):
        t.add_column(col, justify="right" if col in ("shards", "follows", "learning", "to move")
                     else "left")
    for n in view.get("nodes", []):
        t.add_row(_t(n.get("id") or "-"), _t(n.get("endpoint") or "-"),
                  "yes" if n.get("alive") else Text("NO", style="bold red"),
                  str(n.get("shards", "-")), str(n.get("follows", "-")), str(n.get("learning", "-")),
                  str(n.get("moving", 0)) + ("  leaving" if n.get("leaving") else ""))
    return t


def run(client: Any, interval: float, once: bool, timeout: float,
        console: Console | None = None) -> int:
    """The live view (until Ctrl-C), or with ``once`` one frame after one interval."""
    if console is None:
        console = Console()
        if not console.is_terminal:      # (a pipe or a file: no terminal width to fit)
            console = Console(width=WIDE)
    before = sample(client, timeout)
    if once:
        time.sleep(interval)
        console.print(frame(sample(client, timeout), before))
        return 0
    try:
        with Live(frame(before, None), console=console, refresh_per_second=4,
                  screen=False) as live:
            while True:
                time.sleep(interval)
                try:
                    now = sample(client, timeout)
                except ActorError as exc:     # shown, and tried again next interval
                    live.update(Text(f"actorsys top: the node did not answer: "
                                     f"{type(exc).__name__}: {exc}", style="bold red"))
                    continue
                live.update(frame(now, before))
                before = now
    except KeyboardInterrupt:
        return 0
