"""The ``actorsys`` command line.

* ``actorsys run CONFIG [--log-level LEVEL] [--log-json] [--drain [--drain-timeout S]]``:
  run a node in the foreground (SIGINT/SIGTERM stop it cleanly); its processes log to
  standard error at ``LEVEL`` (default info), one JSON object per line with
  ``--log-json``. ``--drain``: a cluster node stopped cleanly first hands its shards off
  to the other nodes (at most ``--drain-timeout`` seconds; :mod:`.drain`).
* ``actorsys status [--json]``: the node's processes and counters (and its part in a
  cluster, if it is in one).
* ``actorsys top [--once] [--interval S]``: a live view of the node, refreshed every
  second (:mod:`.top`): processes, group commits, hot actors, the supervision tree.
* ``actorsys cluster [--json]``: the cluster as the node sees it: its name, map epoch and
  one line per node (id, endpoint, alive, shards); a single node is a cluster of one.
* ``actorsys leave``: ask the node (``-e`` names one) to hand its shards off to the other
  nodes of its cluster, and print what it did once they are moved.
* ``actorsys ask TYPE KEY METHOD [JSON_ARG ...] [--kw JSON_OBJECT]``: ask an actor; prints
  the result as JSON. ``actorsys tell`` sends one-way. Each ``JSON_ARG`` is one positional
  argument (``'{"by": 10}'`` is one dict); ``--kw '{"by": 10}'`` passes keyword arguments,
  as a JSON object body does over HTTP.
* ``actorsys sup NAME COMMAND [ARG]``: a supervisor's runtime API
  (``which_children``, ``count_children``, ``start_child JSON_SPEC``,
  ``terminate_child ID``, ``restart_child ID``, ``delete_child ID``).
* ``actorsys ls``, ``history``, ``rewind``, ``destroy``: listing and one actor's history.
* ``actorsys keygen DIR [--name NAME] [--role client|admin] [--types T1,T2]``: write a
  CURVE key pair, ``DIR/NAME.key`` (public, with the role and types a node's
  ``authorized_keys`` grants it: ``actorsys/net/authz.py``) and ``DIR/NAME.key_secret``.
* ``actorsys new NAME [--directory DIR]``: write a new project (a config, an actor, a
  test, a README with the commands that run them) into ``./NAME`` or ``DIR``
  (:mod:`.newproject`).

Every command that talks to a node finds it with ``--endpoint``/``-e E`` (a cluster's
several routers: ``-e E1,E2``, the first that answers) or from the
node's config, ``--config NODE.toml`` (default ``$ACTORSYS_CONFIG``; see
:mod:`.target`), and takes ``--key SECRET_FILE --server-key NODE_PUBLIC_FILE`` for a tcp
node with CURVE (defaults: ``$ACTORSYS_KEY``, ``$ACTORSYS_SERVER_KEY``, else the
config's ``curve_secret_key``). Two deadlines, each blamed by name when it passes:
``--connect-timeout`` (the node's router must answer; ``NodeUnavailable``) and
``--timeout`` (the request itself; an ask's is ``AskTimeout: no answer from
TYPE/KEY.METHOD within T s``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from ..client.common import CONNECT_TIMEOUT
from ..config.defaults import DRAIN_TIMEOUT
from ..errors import ActorError, AskTimeout, NodeUnavailable
from ..log import LEVELS
from . import slots
from .target import TargetError, resolve


def _parse_args(values: list[str]) -> list[Any]:
    out = []
    for v in values:
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            raise SystemExit(f"actorsys: argument {v!r} is not JSON (quote strings: '\"text\"')") from None
    return out


def _parse_kw(text: str | None) -> dict[str, Any]:
    """``--kw``: a JSON object, the keyword arguments (an HTTP body's meaning)."""
    if text is None:
        return {}
    try:
        kw = json.loads(text)
    except json.JSONDecodeError:
        raise SystemExit(f"actorsys: --kw {text!r} is not JSON (a JSON object: "
                         f"--kw '{{\"by\": 10}}')") from None
    if not isinstance(kw, dict):
        raise SystemExit(f"actorsys: --kw takes a JSON object of keyword arguments, "
                         f"not {type(kw).__name__} (positional arguments go after the method)")
    return kw


def _connect(a: argparse.Namespace) -> Any:
    """A client of the command's node (:mod:`.target`) with its keys, waiting up to
    ``--connect-timeout`` for the router."""
    from ..client import connect

    try:
        t = resolve(a.endpoint, a.config, a.curve_key or None, a.server_key or None)
        endpoints = [e.strip() for e in t.endpoint.split(",") if e.strip()]
        return connect(endpoints if len(endpoints) > 1 else t.endpoint,
                       connect_timeout=a.connect_timeout, key=t.key, server_key=t.server_key)
    except (TargetError, ValueError) as exc:    # no node to talk to; a key file that cannot be used
        raise SystemExit(f"actorsys: {exc}") from None


@contextmanager
def _deadline(a: argparse.Namespace, what: str) -> Iterator[None]:
    """Name the deadline that passed: ``--timeout`` of the request to ``what`` (the
    node answered the connect; the router is not to blame)."""
    try:
        yield
    except AskTimeout:
        raise AskTimeout(f"no answer from {what} within {a.timeout:g} s (the deadline "
                         f"set by --timeout; the node is reachable)") from None


def _key_options(p: argparse.ArgumentParser, main: bool) -> None:
    """``--key`` / ``--server-key``: on the main parser (defaults from the environment)
    and again on each command (given there, they win; absent, they leave the main's)."""
    p.add_argument("--key", dest="curve_key", metavar="SECRET_FILE",
                   default=os.environ.get("ACTORSYS_KEY") if main else argparse.SUPPRESS,
                   help="this client's CURVE key pair (.key_secret) for a tcp node "
                        "(default: $ACTORSYS_KEY, else --config's curve_secret_key)")
    p.add_argument("--server-key", dest="server_key", metavar="PUBLIC_FILE",
                   default=os.environ.get("ACTORSYS_SERVER_KEY") if main else argparse.SUPPRESS,
                   help="the node's public key (.key) for a tcp node "
                        "(default: $ACTORSYS_SERVER_KEY, else --config's curve_secret_key)")


def _client_options(p: argparse.ArgumentParser, timeout: float = 30.0) -> None:
    p.add_argument("--endpoint", "-e", default=None,
                   help="the node's router endpoint, as 'actorsys run' prints it (wins over "
                        "--config); a cluster's several, comma-separated: the first that answers")
    p.add_argument("--config", "-c", default=None, metavar="NODE.toml",
                   help="find the endpoint (and a tcp node's keys) in the node's config "
                        "(default: $ACTORSYS_CONFIG)")
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"seconds the request may take (default {timeout:g})")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT,
                   help=f"seconds to wait for the node's router (default {CONNECT_TIMEOUT:g})")
    _key_options(p, main=False)


def cmd_new(a: argparse.Namespace) -> int:
    from .newproject import ProjectError, write_project

    try:
        files = write_project(a.name, a.directory)
    except (ProjectError, OSError) as exc:
        raise SystemExit(f"actorsys new: {exc}") from None
    where = a.directory or a.name
    print(f"wrote project {a.name} in {where}/: {', '.join(files)}")
    print(f"next, in {where}/ (with this Python, {sys.executable}):")
    print(f"  python -m {a.name}                                       # run it on an embedded node")
    print("  python -m pip install -e '.[test]' && python -m pytest   # install its test tools, "
          "run its tests")
    return 0


def cmd_keygen(a: argparse.Namespace) -> int:
    from ..net.keys import keygen

    try:
        public, secret = keygen(a.directory, a.name, role=a.role, types=a.types)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"actorsys: {exc}") from None
    print(f"public key: {public}")
    print(f"secret key: {secret}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from .. import log
    from ..actor.classes import check_actor_classes
    from ..config import load_config
    from ..config.layout import plan_layout
    from .launch import supervisor_command

    cfg = load_config(a.config)
    # Import the actor classes in a throw-away child: this process becomes the node
    # supervisor and forks the workers, which must import user code fresh (so a restart
    # picks up the code on disk, and no user import runs in the supervisor).
    pid = os.fork()
    if pid == 0:
        try:
            check_actor_classes(cfg)
            code = 0
        except BaseException as exc:   # SystemExit from a user module too
            print(f"actorsys: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 2
        os._exit(code)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        return 2
    layout = plan_layout(cfg)
    print(f"actorsys: node endpoint {layout.router}", flush=True)
    drain: tuple[str, ...] = ()
    if a.drain and cfg.cluster is None:
        print("actorsys: --drain: this node is not in a cluster, it has no shards to hand off "
              "(no-op)", flush=True)
    elif a.drain:
        drain = ("--drain", f"{a.drain_timeout:g}")
    log.export(a.log_level, a.log_json)      # for the node's processes
    # This process becomes the node supervisor (same pid, so signals reach it as before);
    # it removes the temporary socket directory (layout.run_dir) when the node stops.
    argv, env = supervisor_command(cfg, layout, *drain)
    os.execve(argv[0], argv, env)


def cmd_status(a: argparse.Namespace) -> int:
    with _connect(a) as c:
        try:
            st = c.status(timeout=a.timeout)
        except NodeUnavailable as exc:   # connected: the status request's own deadline
            raise NodeUnavailable(f"status: {exc} (the deadline set by --timeout)") from None
    if a.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    print(f"endpoint {st['endpoint']}  epoch {st['epoch']}  shards {st['shards']}  "
          f"durability {st['durability']}  uptime {st['uptime']:.0f}s")
    print(f"{'ROLE':<11}{'SLOT':>5}{'PID':>9}  {'UP':<4}{'RSS MB':>8}{'RESIDENT':>10}{'TURNS':>10}"
          f"{'FAILURES':>10}{'BAD':>7}")
    for p in st["processes"]:
        rss = f"{p['rss'] / 1e6:.1f}" if p.get("rss") else "-"
        slot = "-" if p.get("slot") is None else p["slot"]
        print(f"{p['role']:<11}{slot:>5}{p.get('pid') or '-':>9}  {'yes' if p.get('up') else 'NO':<4}"
              f"{rss:>8}{p.get('resident', '-'):>10}{p.get('turns', '-'):>10}"
              f"{p.get('failures', '-'):>10}{p.get('bad_frames', '-'):>7}")
    for p in st["processes"]:
        if p.get("answered") is False:
            print(slots.note(p))
    for p in st["processes"]:
        if p["role"] == "gateway" and p.get("up") and p.get("answered") is not False:
            subs = p.get("subscribers", 0)
            print(f"gateway http://{p['listen']}: {p['sockets']} sockets"
                  f"{f' ({subs} Python subscriptions)' if subs else ''} on "
                  f"{p['actors_with_sockets']} actors, {p['events']} events in {p['batches']} "
                  f"batches, {p['http_requests']} HTTP asks ({p['http_errors']} errors)")
    if isinstance(st.get("cluster"), dict):
        print(cluster_status_line(st["cluster"]))
    return 0


def cmd_top(a: argparse.Namespace) -> int:
    from . import top

    if a.interval <= 0:
        raise SystemExit("actorsys: top --interval must be a positive number of seconds")
    with _connect(a) as c:
        return top.run(c, a.interval, a.once, a.timeout)


def cluster_status_line(cl: dict[str, Any]) -> str:
    """The "cluster" part of a cluster node's status, in one line (its known keys first)."""
    fenced = cl.get("fenced")
    words = [f"cluster {cl.get('name')}", f"node {cl.get('node_id')}",
             f"shards owned {cl.get('shards_owned', '-')}",
             f"FENCED: {fenced}" if fenced else "not fenced"]
    words += [f"{k} {v}" for k, v in cl.items()
              if k not in ("name", "node_id", "shards_owned", "fenced")]
    return "  ".join(words)


def cmd_cluster(a: argparse.Namespace) -> int:
    """The cluster as the node sees it."""
    with _connect(a) as c, _deadline(a, "the router (cluster)"):
        view = c.cluster(timeout=a.timeout)
    if a.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    print(f"cluster {view.get('name')}  epoch {view.get('epoch')}" if view.get("name") is not None
          else f"a single node, not in a cluster  epoch {view.get('epoch')}")
    replicas = view.get("replicas", 1)
    if view.get("name") is not None:
        print(f"replicas {replicas}  under-replicated shards {view.get('under_replicated', 0)}  "
              f"unavailable shards {view.get('unavailable', 0)}")
    nodes = view.get("nodes", [])
    iw = max([len(str(n.get("id") or "-")) for n in nodes] + [4]) + 2
    ew = max([len(str(n.get("endpoint") or "-")) for n in nodes] + [8]) + 2
    more = f"{'FOLLOWS':>9}{'LEARNING':>10}" if replicas > 1 else ""
    print(f"{'NODE':<{iw}}{'ENDPOINT':<{ew}}{'ALIVE':<7}{'SHARDS':>7}{more}{'TO MOVE':>9}")
    for n in nodes:
        note = "  leaving" if n.get("leaving") else ""
        more = f"{n.get('follows', 0):>9}{n.get('learning', 0):>10}" if replicas > 1 else ""
        print(f"{n.get('id') or '-':<{iw}}{n.get('endpoint') or '-':<{ew}}"
              f"{'yes' if n.get('alive') else 'NO':<7}{n.get('shards', '-'):>7}{more}"
              f"{n.get('moving', 0):>9}{note}")
    return 0


def cmd_leave(a: argparse.Namespace) -> int:
    """Ask one node to hand its shards off to the others; print what it did."""
    t = a.endpoint or ""
    if "," in t:
        raise SystemExit("actorsys: leave asks one node: pass its endpoint alone with -e")
    with _connect(a) as c, _deadline(a, "the node handing its shards off (leave)"):
        result = c.leave(timeout=a.timeout)
    print(json.dumps(result, default=repr) if a.json or not isinstance(result, dict) else
          "  ".join(f"{k} {v}" for k, v in result.items()))
    return 0


def cmd_ask(a: argparse.Namespace) -> int:
    args, kw = _parse_args(a.args), _parse_kw(a.kw)
    reserved = sorted({"timeout", "retry"} & set(kw)) if a.command == "ask" else []
    if reserved:
        raise SystemExit(f"actorsys: --kw cannot pass {reserved[0]!r} to an ask (the client's "
                         f"own option has that name): pass it positionally")
    with _connect(a) as c:
        if a.command == "tell":
            c.tell(a.type, a.key, a.method, *args, **kw)
            # close() discards unsent messages: a round trip on the same sockets (ordered
            # after the tell) makes sure the tell has reached its worker first
            try:
                c.ping_workers(timeout=a.timeout)
            except NodeUnavailable as exc:
                raise NodeUnavailable(f"tell {a.type}/{a.key}.{a.method} was sent but not "
                                      f"confirmed delivered within {a.timeout:g} s (--timeout): "
                                      f"{exc}") from None
            return 0
        with _deadline(a, f"{a.type}/{a.key}.{a.method}"):
            result = c.ask(a.type, a.key, a.method, *args, timeout=a.timeout, **kw)
    print(json.dumps(result, default=repr))
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    """Keys of the actors of a type, one per line; ``--all`` pages through every one,
    with its progress on standard error (a bar on a terminal, a line every few seconds
    otherwise)."""
    from .progress import Progress

    progress = Progress(f"listing {a.type}", unit=" keys") if a.all else None
    with _connect(a) as c, _deadline(a, f"the workers listing {a.type}"), \
            (progress or contextlib.nullcontext()):
        after, left = a.after, None if a.all else a.limit
        while left is None or left > 0:
            page = c.list_actors(a.type, start_after=after,
                                 limit=min(left if left is not None else 1000, 1000),
                                 timeout=a.timeout)
            for key in page:
                print(key)
            if progress is not None:       # (on standard error: the keys go to standard output)
                progress.advance(len(page))
            if not page or (left is None and len(page) < 1000):
                break
            after = page[-1]
            if left is not None:
                left -= len(page)
    return 0


def cmd_actor(a: argparse.Namespace) -> int:
    """history / rewind / destroy of one actor."""
    with _connect(a) as c, _deadline(a, f"{a.type}/{a.key} ({a.command})"):
        ref = c.ref(a.type, a.key)
        if a.command == "history":
            result: Any = ref.history(timeout=a.timeout)
        elif a.command == "rewind":
            if (a.version is None) == (a.time is None):
                raise SystemExit("actorsys: rewind takes one of --version N or --time EPOCH_SECONDS")
            result = ref.rewind(a.version, time=a.time, timeout=a.timeout)
        else:
            result = ref.destroy(timeout=a.timeout)
    print(json.dumps(result))
    return 0


SUP_COMMANDS = ("which_children", "count_children", "start_child", "terminate_child",
                "restart_child", "delete_child")


def cmd_sup(a: argparse.Namespace) -> int:
    with _connect(a) as c, _deadline(a, f"supervisor {a.name} ({a.sup_command})"):
        sup = c.supervisor(a.name)
        if a.sup_command in ("which_children", "count_children"):
            if a.arg is not None:
                raise SystemExit(f"actorsys: {a.sup_command} takes no argument")
            result = getattr(sup, a.sup_command)(timeout=a.timeout)
        elif a.arg is None:
            raise SystemExit(f"actorsys: {a.sup_command} needs an argument "
                             f"({'a JSON child spec' if a.sup_command == 'start_child' else 'a child id'})")
        elif a.sup_command == "start_child":
            result = sup.start_child(_parse_args([a.arg])[0], timeout=a.timeout)
        else:
            result = getattr(sup, a.sup_command)(a.arg, timeout=a.timeout)
    if a.sup_command == "which_children" and not a.json:
        for ch in result:
            what = (f"{ch['actor']}/{ch['key']}" if ch["type"] == "worker"
                    else f"supervisor {ch['supervisor']}")
            print(f"{ch['id']:<20} {what:<30} {ch['status']:<11} {ch['restart']}")
        return 0
    print(json.dumps(result, default=repr))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="actorsys", description="Durable actors on a ZeroMQ worker pool.")
    _key_options(p, main=True)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a node in the foreground")
    r.add_argument("config", help="the node's TOML config file")
    r.add_argument("--log-level", type=str.lower, choices=LEVELS, default=None,
                   help="what the node's processes log (default: $ACTORSYS_LOG_LEVEL, else info)")
    r.add_argument("--log-json", action="store_true",
                   help="log one JSON object per line (default: $ACTORSYS_LOG_JSON)")
    r.add_argument("--drain", action="store_true",
                   help="a cluster node stopped cleanly (SIGTERM, SIGINT) first hands its shards "
                        "off to the other nodes (a single node: no-op)")
    r.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT, metavar="SECONDS",
                   help=f"the longest --drain waits for the handoff (default {DRAIN_TIMEOUT:g})")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("status", help="show a node's processes and counters")
    _client_options(s, timeout=10.0)
    s.add_argument("--json", action="store_true", help="print the full status as JSON")
    s.set_defaults(func=cmd_status)
    t = sub.add_parser("top", help="a live view of a node: processes, commits, hot actors, the "
                                   "supervision tree (Ctrl-C ends it)")
    _client_options(t, timeout=5.0)
    t.add_argument("--once", action="store_true",
                   help="print one frame (after one interval, for the rates) and exit")
    t.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between two frames (default 1)")
    t.set_defaults(func=cmd_top)
    cl = sub.add_parser("cluster", help="show the cluster: its nodes, alive or not, and their shards")
    _client_options(cl, timeout=10.0)
    cl.add_argument("--json", action="store_true", help="print the cluster's view as JSON")
    cl.set_defaults(func=cmd_cluster)
    lv = sub.add_parser("leave", help="ask a cluster node to hand its shards off to the others")
    _client_options(lv, timeout=DRAIN_TIMEOUT)
    lv.add_argument("--json", action="store_true", help="print the result as JSON")
    lv.set_defaults(func=cmd_leave)
    for name in ("ask", "tell"):
        q = sub.add_parser(
            name, help=f"{name} an actor (arguments are JSON values)",
            description=f"{name.capitalize()} actor TYPE/KEY to run METHOD. Each ARG after the "
                        "method is one JSON value passed positionally: 5, '\"text\"', "
                        "'{\"by\": 10}' (one dict argument). Keyword arguments go in --kw as "
                        "one JSON object, as a JSON object body does over HTTP: "
                        "--kw '{\"by\": 10}' is add(by=10). Both may be combined.")
        _client_options(q)
        q.add_argument("type")
        q.add_argument("key")
        q.add_argument("method")
        q.add_argument("args", nargs="*", metavar="ARG",
                       help="positional arguments, one JSON value each: 5 '\"text\"' '{\"a\": 1}'")
        q.add_argument("--kw", default=None, metavar="JSON_OBJECT",
                       help="keyword arguments as one JSON object: --kw '{\"by\": 10}'")
        q.set_defaults(func=cmd_ask)
    u = sub.add_parser("sup", help="a supervisor's runtime API (which_children, start_child, ...)")
    _client_options(u)
    u.add_argument("--json", action="store_true", help="print which_children as JSON")
    u.add_argument("name", help="the supervisor's name ([supervisors.NAME] in the config)")
    u.add_argument("sup_command", metavar="command", choices=SUP_COMMANDS)
    u.add_argument("arg", nargs="?", default=None, help="a child id, or a JSON spec for start_child")
    u.set_defaults(func=cmd_sup)
    ls = sub.add_parser("ls", help="list the keys of the actors of a type (with persisted data)")
    _client_options(ls)
    ls.add_argument("--after", default=None, help="start after this key (paging)")
    ls.add_argument("--limit", type=int, default=1000, help="at most this many keys (default 1000)")
    ls.add_argument("--all", action="store_true", help="every key, paging as needed")
    ls.add_argument("type")
    ls.set_defaults(func=cmd_ls)
    for name, what in (("history", "list an actor's retained versions"),
                       ("rewind", "restore an actor to a version or a time"),
                       ("destroy", "delete an actor's state, storage, alarms and history")):
        h = sub.add_parser(name, help=what)
        _client_options(h)
        h.add_argument("type")
        h.add_argument("key")
        if name == "rewind":
            h.add_argument("--version", type=int, default=None)
            h.add_argument("--time", type=float, default=None, help="epoch seconds")
        h.set_defaults(func=cmd_actor)
    k = sub.add_parser("keygen", help="write a CURVE key pair (NAME.key public, NAME.key_secret secret)")
    k.add_argument("directory", help="where to write it (created with mode 0700 if missing)")
    k.add_argument("--name", default="node", help="file name stem (default: node)")
    k.add_argument("--role", choices=("client", "admin"), default=None,
                   help="the role a node grants this key (default: none written, i.e. admin)")
    k.add_argument("--types", default=None, help="comma-separated actor types it may reach")
    k.set_defaults(func=cmd_keygen)
    n = sub.add_parser("new", help="write a new project: a config, an actor, a test and a README")
    n.add_argument("name", help="the project's name, its package's: a lowercase Python identifier")
    n.add_argument("--directory", "-d", default=None, metavar="DIR",
                   help="where to write it: a new or empty directory (default: ./NAME)")
    n.set_defaults(func=cmd_new)
    a = p.parse_args(argv)
    try:
        code: int = a.func(a)
        return code
    except ActorError as exc:
        print(f"actorsys: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
