"""The ``actorsys`` command line.

* ``actorsys run CONFIG [--log-level LEVEL] [--log-json]``: run a node in the foreground
  (SIGINT/SIGTERM stop it cleanly); its processes log to standard error at ``LEVEL``
  (default info), one JSON object per line with ``--log-json``.
* ``actorsys status --endpoint E [--json]``: the node's processes and counters.
* ``actorsys ask --endpoint E TYPE KEY METHOD [JSON_ARG ...]``: ask an actor; prints
  the result as JSON. ``actorsys tell`` sends one-way.
* ``actorsys sup --endpoint E NAME COMMAND [ARG]``: a supervisor's runtime API
  (``which_children``, ``count_children``, ``start_child JSON_SPEC``,
  ``terminate_child ID``, ``restart_child ID``, ``delete_child ID``).
* ``actorsys keygen DIR [--name NAME]``: write a CURVE key pair, ``DIR/NAME.key``
  (public) and ``DIR/NAME.key_secret`` (secret, mode 0600).

Every command that talks to a node takes ``--key SECRET_FILE --server-key NODE_PUBLIC_FILE``
for a tcp node with CURVE (defaults: ``$ACTORSYS_KEY``, ``$ACTORSYS_SERVER_KEY``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import ActorError
from ..log import LEVELS


def _parse_args(values: list[str]) -> list[Any]:
    out = []
    for v in values:
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            raise SystemExit(f"actorsys: argument {v!r} is not JSON (quote strings: '\"text\"')") from None
    return out


def _connect(a: argparse.Namespace) -> Any:
    """A client of the node at ``--endpoint`` with the command's keys and timeout."""
    from ..client import connect

    try:
        return connect(a.endpoint, connect_timeout=a.timeout, key=a.curve_key or None,
                       server_key=a.server_key or None)
    except ValueError as exc:          # a key file that cannot be used
        raise SystemExit(f"actorsys: {exc}") from None


def _key_options(p: argparse.ArgumentParser, main: bool) -> None:
    """``--key`` / ``--server-key``: on the main parser (defaults from the environment)
    and again on each command (given there, they win; absent, they leave the main's)."""
    p.add_argument("--key", dest="curve_key", metavar="SECRET_FILE",
                   default=os.environ.get("ACTORSYS_KEY") if main else argparse.SUPPRESS,
                   help="this client's CURVE key pair (.key_secret) for a tcp node "
                        "(default: $ACTORSYS_KEY)")
    p.add_argument("--server-key", dest="server_key", metavar="PUBLIC_FILE",
                   default=os.environ.get("ACTORSYS_SERVER_KEY") if main else argparse.SUPPRESS,
                   help="the node's public key (.key) for a tcp node (default: $ACTORSYS_SERVER_KEY)")


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", "-e", required=True)
    _key_options(p, main=False)


def cmd_keygen(a: argparse.Namespace) -> int:
    from ..net.keys import keygen

    try:
        public, secret = keygen(a.directory, a.name)
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
    log.export(a.log_level, a.log_json)      # for the node's processes
    # This process becomes the node supervisor (same pid, so signals reach it as before);
    # it removes the temporary socket directory (layout.run_dir) when the node stops.
    argv, env = supervisor_command(cfg, layout)
    os.execve(argv[0], argv, env)


def cmd_status(a: argparse.Namespace) -> int:
    with _connect(a) as c:
        st = c.status(timeout=a.timeout)
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
        if p["role"] == "gateway" and p.get("up"):
            print(f"gateway http://{p['listen']}: {p['sockets']} sockets on "
                  f"{p['actors_with_sockets']} actors, {p['events']} events in {p['batches']} "
                  f"batches, {p['http_requests']} HTTP asks ({p['http_errors']} errors)")
    return 0


def cmd_ask(a: argparse.Namespace) -> int:
    args = _parse_args(a.args)
    with _connect(a) as c:
        if a.command == "tell":
            c.tell(a.type, a.key, a.method, *args)
            # close() discards unsent messages: a round trip on the same sockets (ordered
            # after the tell) makes sure the tell has reached its worker first
            c.ping_workers(timeout=a.timeout)
            return 0
        result = c.ask(a.type, a.key, a.method, *args, timeout=a.timeout)
    print(json.dumps(result, default=repr))
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    """Keys of the actors of a type, one per line; ``--all`` pages through every one."""
    with _connect(a) as c:
        after, left = a.after, None if a.all else a.limit
        while left is None or left > 0:
            page = c.list_actors(a.type, start_after=after,
                                 limit=min(left if left is not None else 1000, 1000),
                                 timeout=a.timeout)
            for key in page:
                print(key)
            if not page or (left is None and len(page) < 1000):
                break
            after = page[-1]
            if left is not None:
                left -= len(page)
    return 0


def cmd_actor(a: argparse.Namespace) -> int:
    """history / rewind / destroy of one actor."""
    with _connect(a) as c:
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
    with _connect(a) as c:
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
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("status", help="show a node's processes and counters")
    _client_options(s)
    s.add_argument("--json", action="store_true", help="print the full status as JSON")
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(func=cmd_status)
    for name in ("ask", "tell"):
        q = sub.add_parser(name, help=f"{name} an actor (arguments are JSON values)")
        _client_options(q)
        q.add_argument("--timeout", type=float, default=30.0)
        q.add_argument("type")
        q.add_argument("key")
        q.add_argument("method")
        q.add_argument("args", nargs="*", help="JSON arguments, e.g. 5 '\"text\"' '{\"a\": 1}'")
        q.set_defaults(func=cmd_ask)
    u = sub.add_parser("sup", help="a supervisor's runtime API (which_children, start_child, ...)")
    _client_options(u)
    u.add_argument("--timeout", type=float, default=30.0)
    u.add_argument("--json", action="store_true", help="print which_children as JSON")
    u.add_argument("name", help="the supervisor's name ([supervisors.NAME] in the config)")
    u.add_argument("sup_command", metavar="command", choices=SUP_COMMANDS)
    u.add_argument("arg", nargs="?", default=None, help="a child id, or a JSON spec for start_child")
    u.set_defaults(func=cmd_sup)
    ls = sub.add_parser("ls", help="list the keys of the actors of a type (with persisted data)")
    _client_options(ls)
    ls.add_argument("--timeout", type=float, default=30.0)
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
        h.add_argument("--timeout", type=float, default=30.0)
        h.add_argument("type")
        h.add_argument("key")
        if name == "rewind":
            h.add_argument("--version", type=int, default=None)
            h.add_argument("--time", type=float, default=None, help="epoch seconds")
        h.set_defaults(func=cmd_actor)
    k = sub.add_parser("keygen", help="write a CURVE key pair (NAME.key public, NAME.key_secret secret)")
    k.add_argument("directory", help="where to write it (created with mode 0700 if missing)")
    k.add_argument("--name", default="node", help="file name stem (default: node)")
    k.set_defaults(func=cmd_keygen)
    a = p.parse_args(argv)
    try:
        code: int = a.func(a)
        return code
    except ActorError as exc:
        print(f"actorsys: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
