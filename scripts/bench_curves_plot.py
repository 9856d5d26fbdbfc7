"""The plots of ``scripts/bench --curves`` (``scripts/bench_curves.py``): two PNG files,
actorsys beside the raw pyzmq + msgpack echo measured in the same run.

* :func:`plot_clients`: asks answered per second, and p50 / p99 latency (ms, log scale),
  against the number of client processes (1, 2, 4, ..., log scale).
* :func:`plot_actors`: the same against resident actors (log scale), with a third panel:
  the workers' RSS beside the raw echo server's (MB).

matplotlib (the ``bench`` extra) draws them off screen (its Agg backend); the benchmark
calls these only when it is installed. Each figure's title says what was measured.
"""
from __future__ import annotations

from typing import Any

COLORS = {"actorsys": "tab:blue", "raw": "tab:gray"}
LABELS = {"actorsys": "actorsys", "raw": "raw pyzmq + msgpack echo"}


def _figure(panels: int) -> tuple[Any, list[Any]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), constrained_layout=True)
    return fig, list(axes)


def _throughput_and_latency(axes: list[Any], xs: list[int], points: list[dict],
                            xlabel: str) -> None:
    thr, lat = axes
    for side in ("actorsys", "raw"):
        c = COLORS[side]
        thr.plot(xs, [pt[side]["per_s"] for pt in points], "o-", color=c, label=LABELS[side])
        lat.plot(xs, [pt[side]["p99_us"] / 1e3 for pt in points], "o-", color=c,
                 label=f"{LABELS[side]}, p99")
        lat.plot(xs, [pt[side]["p50_us"] / 1e3 for pt in points], "s--", color=c, alpha=0.6,
                 markersize=4, label=f"{LABELS[side]}, p50")
    thr.set_ylabel("throughput (asks answered per second)")
    thr.set_ylim(bottom=0)
    thr.yaxis.set_major_formatter(_thousands())
    lat.set_ylabel("latency, send to reply (ms, log scale)")
    lat.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator
    lat.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    lat.yaxis.set_major_formatter(plain)
    lat.yaxis.set_minor_formatter(plain)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _pos: f"{v:,.0f}")


def _log_x(axes: list[Any], xs: list[int], base: int, names: list[str]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator
    for ax in axes:
        ax.set_xscale("log", base=base)
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels(names)


def _done(fig: Any, path: str) -> str:
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_clients(curve: dict, meta: dict, path: str) -> str:
    """Curve 1 to ``path``; returns ``path``."""
    p, points = meta["params"], curve["points"]
    xs = [pt["actorsys"]["clients"] for pt in points]
    fig, axes = _figure(2)
    _throughput_and_latency(axes, xs, points, "client processes (log scale)")
    _log_x(axes, xs, 2, [str(x) for x in xs])
    fig.suptitle(f"Client processes: each keeps {p['inflight']} asks in flight ('add', to random "
                 f"ones of {curve['actors']:,} actors)\n{p['workers']} workers, "
                 f"{meta['cpus']} CPUs, {p['seconds']:g} s per point, {meta['date']}", fontsize=10)
    return _done(fig, path)


def plot_actors(curve: dict, meta: dict, path: str) -> str:
    """Curve 2 to ``path``; returns ``path``."""
    p, points = meta["params"], curve["points"]
    xs = [pt["actors"] for pt in points]
    fig, axes = _figure(3)
    _throughput_and_latency(axes[:2], xs, points, "resident actors (log scale)")
    rss = axes[2]
    rss.plot(xs, [pt["worker_rss_mb"] for pt in points], "o-", color=COLORS["actorsys"],
             label=f"actorsys, its {p['workers']} workers together")
    rss.plot(xs, [pt["raw_rss_mb"] for pt in points], "o-", color=COLORS["raw"],
             label=f"{LABELS['raw']} (one counter per key)")
    rss.set_xlabel("resident actors (log scale)")
    rss.set_ylabel("resident memory, RSS (MB)")
    rss.set_ylim(bottom=0)
    rss.yaxis.set_major_formatter(_thousands())
    rss.grid(True, alpha=0.3)
    rss.legend(fontsize=8)
    _log_x(axes, xs, 10, [_short(x) for x in xs])
    fig.suptitle(f"Resident actors: {curve['clients']} client processes, each keeping "
                 f"{p['inflight']} asks in flight ('add', to random live actors)\n"
                 f"{p['workers']} workers, {meta['cpus']} CPUs, {p['seconds']:g} s per point, "
                 f"{meta['date']}", fontsize=10)
    return _done(fig, path)


def _short(n: int) -> str:
    """1000 -> 1k, 1000000 -> 1M."""
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return f"{n:,}"
