"""The table of ``scripts/bench --all`` (``scripts/bench_all.py``), made from its three
steps' JSON: rows the workloads, columns actorsys | raw echo | durable floor | Pykka |
Thespian | Ray (the durable floor: the raw echo committing to LevelDB before it answers,
``rawecho.raw_durable_server``).

A cell beside actorsys holds the value and, in brackets, actorsys' value divided by it:
for a rate (higher is better) above 1 actorsys is faster, for a latency (lower is better)
below 1 actorsys is faster. ``-``: nothing to measure there (the raw echo has no Savina
workload; Thespian no non-blocking ask from outside); ``not run``: the peer was not
selected or not installed; ``FAILED``: the step or the check failed (the reason is in the
list under the table and the JSON).
"""
from __future__ import annotations

from typing import Any

from savina import workloads as W

COLUMNS = ("actorsys", "raw", "floor", "pykka", "thespian", "ray")
TITLES = {"actorsys": "actorsys", "raw": "raw echo", "floor": "durable floor", "pykka": "Pykka",
          "thespian": "Thespian", "ray": "Ray"}
#: the core rows with a durable floor (creations make no actor there)
FLOOR_ROWS = {"ask_latency": "ask_latency", "pipelined_asks": "pipelined_asks",
              "tells_async": "tells"}
#: the core rows: (key in the peers' core results, key in scripts/bench.py's, label, unit)
CORE = (("latency", "ask_latency", "ask latency p50, sequential, from outside", "us"),
        ("pipelined", "pipelined_asks", "pipelined asks, many in flight", "asks/s"),
        ("tells", "tells_async", "tells, then one ask (asyncio client)", "msgs/s"),
        ("creations", "activations", "actor creations from outside", "actors/s"))


class _Cell:
    """A value (or why there is none) and how to show it."""

    def __init__(self, value: float | None = None, text: str = "", note: str = "") -> None:
        self.value, self.text, self.note = value, text, note


def _fmt(v: float, unit: str) -> str:
    return f"{v:,.1f} us" if unit == "us" else f"{v:,.0f}/s"


def _core_cells(data: dict[str, Any], peers: list[str], failed: list[str]) -> list[list[_Cell]]:
    core = (data.get("core") or {}).get("results")
    pc = (data.get("peers_core") or {}).get("results", {})
    rows = []
    for key, core_key, _label, _unit in CORE:
        row = []
        if core is None:
            row += [_Cell(text="FAILED"), _Cell(text="FAILED"), _Cell(text="FAILED")]
            failed.append(f"actorsys/raw {key}: the core step gave no results")
        else:
            c = core[core_key]
            field = "p50_us" if key == "latency" else "per_s"
            floor = core[FLOOR_ROWS[core_key]].get("floor") if core_key in FLOOR_ROWS else None
            row += [_Cell(c["actorsys"][field]),
                    _Cell(c["raw"][field], note=" (echo, no actor)" if key == "creations" else ""),
                    _Cell(floor[field]) if floor else _Cell(text="-")]
        for rt in ("pykka", "thespian", "ray"):
            if rt not in peers:
                row.append(_Cell(text="not run"))
                continue
            r = pc.get(rt)
            if r is None:
                row.append(_Cell(text="FAILED"))
                failed.append(f"{TITLES[rt]} {key}: the peers' core step gave no results")
            elif "skipped" in r:
                row.append(_Cell(text="not run"))
            elif "problem" in r or r["workloads"].get(key, {}) and r["workloads"][key].get("problem"):
                row.append(_Cell(text="FAILED"))
                failed.append(f"{TITLES[rt]} {key}: "
                              f"{r.get('problem') or r['workloads'][key]['problem']}")
            elif r["workloads"].get(key) is None:
                row.append(_Cell(text="-"))
            else:
                w = r["workloads"][key]
                row.append(_Cell(w["p50_us"] if key == "latency" else w["per_s"]))
        rows.append(row)
    return rows


def _savina_cells(data: dict[str, Any], peers: list[str], failed: list[str]) -> list[list[_Cell]]:
    res = (data.get("peers") or {}).get("results")
    rows = []
    for name in W.WORKLOADS:
        row = []
        for rt in COLUMNS:
            if rt in ("raw", "floor"):
                row.append(_Cell(text="-"))
            elif rt != "actorsys" and rt not in peers:
                row.append(_Cell(text="not run"))
            elif res is None or rt not in res:
                row.append(_Cell(text="FAILED"))
                failed.append(f"{TITLES[rt]} {name}: the peers step gave no results")
            elif "skipped" in res[rt]:
                row.append(_Cell(text="not run"))
            elif "problem" in res[rt] or res[rt]["workloads"][name].get("problem"):
                row.append(_Cell(text="FAILED"))
                failed.append(f"{TITLES[rt]} {name}: "
                              f"{res[rt].get('problem') or res[rt]['workloads'][name]['problem']}")
            else:
                row.append(_Cell(res[rt]["workloads"][name]["per_s"]))
        rows.append(row)
    return rows


def build(data: dict[str, Any], peers: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """The table's head and rows (as text), and what failed."""
    failed: list[str] = []
    head = ["workload"] + [TITLES[c] for c in COLUMNS]
    labels = [(f"{label} ({unit}, {'lower' if unit == 'us' else 'higher'} is better)", unit)
              for _k, _c, label, unit in CORE]
    labels += [(f"Savina {W.TABLE[n].title} ({W.TABLE[n].unit}/s, higher is better)", "/s")
               for n in W.WORKLOADS]
    cells = _core_cells(data, peers, failed) + _savina_cells(data, peers, failed)
    rows = []
    for (label, unit), row in zip(labels, cells):
        mine = row[0].value
        text = [label]
        for i, c in enumerate(row):
            if c.value is None:
                text.append(c.text)
                continue
            s = _fmt(c.value, unit) + c.note
            if i > 0 and mine is not None and c.value > 0:
                x = mine / c.value
                s += f" ({x:.2f}x)" if x < 100 else f" ({x:,.0f}x)"
            text.append(s)
        rows.append(text)
    return head, rows, failed


def _counts(out: dict[str, Any]) -> list[str]:
    """What each column counted, a line per runtime (and per Savina workload)."""
    lines = []
    core = out.get("core")
    if core:
        p = core["meta"]["params"]
        lines.append(f"- actorsys, raw echo and durable floor: latency n={p['latency_n']:,}; pipelined "
                     f"n={p['pipe_n']:,}, window {p['window']:,}, {p['pipe_actors']} actors; "
                     f"tells n={p['tells_n']:,}; creations n={p['act_n']:,}; best of "
                     f"{p['rounds']} round(s); durability={core['meta']['durability']}, "
                     f"{core['meta']['workers']} workers")
    for rt, r in ((out.get("peers_core") or {}).get("results") or {}).items():
        if "params" in r:
            p = r["params"]
            pipe = (f"pipelined n={p['pipelined_n']:,}, window {p['window']:,}, "
                    f"{p['pipelined_actors']} actors" if p["pipelined_n"] else "pipelined: none")
            lines.append(f"- {TITLES[rt]}: latency n={p['latency_n']:,}; {pipe}; tells "
                         f"n={p['tells_n']:,}; creations n={p['creations_n']:,}; best of "
                         f"{p['rounds']} round(s)")
    peers = (out.get("peers") or {}).get("results") or {}
    for name in W.WORKLOADS:
        used = []
        for rt, r in peers.items():
            w = r.get("workloads", {}).get(name)
            if w:
                used.append(f"{TITLES[rt]} " + " ".join(f"{k}={v:,}" for k, v in w["params"].items()))
        if used:
            lines.append(f"- Savina {W.TABLE[name].title}: " + "; ".join(used))
    return lines


def render(out: dict[str, Any]) -> str:
    m, v = out["meta"], out["meta"]["versions"]
    lines = [f"Command: `{m['command']}` ({m['mode']} run, {m['seconds']:,.0f} s)", "",
             f"Date: {m['date']}", "",
             f"Machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['system']}; load average "
             f"{m['loadavg_before']} before, {m['loadavg_after']} after", "",
             "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()), "",
             "In brackets: actorsys / that column. Rates: above 1 actorsys is faster; "
             "latency: below 1 actorsys is faster.", ""]
    head, rows = out["table"]["head"], out["table"]["rows"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Counts:", *_counts(out)]
    if out["failed"]:
        lines += ["", "Failed:", *(f"- {f}" for f in out["failed"])]
    return "\n".join(lines)
