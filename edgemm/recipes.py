"""Recipes: typed config dataclasses read from and written to YAML (the CLI builds the same objects)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgemm.runtimes.errors import EdgemmError

T = TypeVar("T")


class RecipeError(EdgemmError):
    """A recipe file that cannot be read or holds unknown or ill-typed keys."""


def to_plain(obj: Any) -> Any:
    """Dataclasses and tuples → dicts and lists (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def from_plain(cls: type[T], data: dict[str, Any], source: str = "recipe") -> T:
    """Build dataclass `cls` from a dict, recursing into dataclass fields; unknown keys are an error."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{source}: unknown keys {unknown}; known: {sorted(fields)}")
    defaults = cls()  # recipe classes give every field a default
    kwargs = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            value = from_plain(type(default), value, f"{source}.{name}")
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def read_recipe(cls: type[T], path: str | Path) -> T:
    """Read a YAML recipe file into `cls`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: unreadable recipe ({exc})") from exc
    return from_plain(cls, data, str(path))


def write_recipe(obj: Any, path: str | Path) -> Path:
    """Write a config object as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump(to_plain(obj), sort_keys=False))
    return path
