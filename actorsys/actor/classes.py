"""Finding the actor classes a config registers: each ``module:Class`` must import and be
an :class:`~actorsys.Actor` subclass."""
from __future__ import annotations


from ..config import NodeConfig, import_function, import_object, line_of
from ..errors import ConfigError
from .actor import Actor


def import_actor_class(spec: str, python_path: list[str] | None = None) -> type:
    """Import ``"module:Class"``; raise ImportError/AttributeError/TypeError with a clear text."""

    obj = import_object(spec, python_path)
    if not (isinstance(obj, type) and issubclass(obj, Actor)):
        raise TypeError(f"{spec} is not a subclass of actorsys.Actor")
    return obj


def check_actor_classes(cfg: NodeConfig) -> dict[str, type]:
    """Import every registered actor class; a failure is a ConfigError naming the type."""
    text = None
    if cfg.source:
        with open(cfg.source, encoding="utf-8") as f:
            text = f.read()
    classes = {}
    for name, spec in cfg.actors.items():
        try:
            classes[name] = import_actor_class(spec, cfg.python_path)
        except Exception as exc:
            raise ConfigError(f"cannot load actor class {spec!r}: {type(exc).__name__}: {exc}",
                              file=cfg.source, line=line_of(text, "actors", name),
                              key=f"actors.{name}") from None
    if cfg.gateway is not None and cfg.gateway["auth"]:
        try:
            import_function(cfg.gateway["auth"], cfg.python_path)
        except Exception as exc:
            raise ConfigError(f"cannot load the gateway's auth hook {cfg.gateway['auth']!r}: "
                              f"{type(exc).__name__}: {exc}", file=cfg.source,
                              line=line_of(text, "gateway", "auth"), key="gateway.auth") from None
    return classes


