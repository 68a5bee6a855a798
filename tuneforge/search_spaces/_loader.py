"""Reading and validating search-space YAML files.

Every problem raises :class:`~tuneforge.errors.ConfigError` with the file and the key,
for example ``rf.yaml: params.max_depth: low (32) > high (2)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Hashable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tuneforge._checks import did_you_mean, is_int, is_number
from tuneforge.errors import ConfigError
from tuneforge.search_spaces._params import CategoricalParam, FloatParam, IntParam, Param
from tuneforge.search_spaces._yaml import load_yaml
from tuneforge.search_spaces.space import SearchSpace

__all__ = ["bundled_spaces", "load_space", "parse_space", "read_yaml", "space_document"]

_TOP_LEVEL_KEYS = {"trainable", "metric", "mode", "config", "params", "description", "max_epochs",
                   "grace_period", "start_from", "trial_minutes"}
_REQUIRED_KEYS = ("trainable", "metric", "mode", "params")
_MODES = ("max", "min")
_NUMERIC_KEYS = {"type", "low", "high", "log", "step", "grid"}
_CATEGORICAL_KEYS = {"type", "choices"}
_MAX_INT_BOUND = 2**53
"""Largest |bound| (and step) of an int param: the unit cube and Optuna compute in float64,
which holds every integer only up to 2**53, and Ray's randint draws int64 (1e30 fails)."""
_MAX_FLOAT_BOUND = 1e300
"""Largest |bound| (and step) of a float param: Ray's uniform draws low + u * (high - low),
which overflows once high - low passes 1.8e308 (+-1.7e308 does); 1e300 leaves room for the
half step a stepped float's encoding widens its bounds by."""
_MAX_SHOWN_CHARS = 40


def bundled_spaces() -> dict[str, Path]:
    """The spaces shipped with tuneforge, by name (the file name without ``.yaml``)."""
    folder = resources.files("tuneforge.search_spaces") / "spaces"
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def load_space(source: str | Path) -> SearchSpace:
    """Load a space from a YAML file path or the name of a bundled space."""
    path = Path(source)
    if not path.is_file():
        bundled = bundled_spaces()
        if str(source) not in bundled:
            raise ConfigError(f"{source}: no such space file or bundled space; bundled: "
                              f"{', '.join(sorted(bundled))}{_suggestion(path, bundled)}")
        path = bundled[str(source)]
    return parse_space(read_yaml(path), name=path.stem, source=path)


def _suggestion(path: Path, bundled: Mapping[str, Path]) -> str:
    """The file the user may have meant (``my_space`` for ``my_space.yaml``), else the closest
    bundled space's name, as "; did you mean ...?"; "" where nothing is close."""
    for suffix in (".yaml", ".yml"):
        if path.suffix != suffix and path.with_name(path.name + suffix).is_file():
            return f"; did you mean {str(path) + suffix!r}?"
    return did_you_mean(str(path), bundled)


def read_yaml(path: Path) -> Any:
    """A YAML file's document; ConfigError naming the file (and line) when it cannot be read,
    is not UTF-8, or is not YAML as :func:`~._yaml.load_yaml` reads it (no duplicate keys, no
    alias bombs, no deep nesting). Spaces and cluster configs are read with it."""
    try:
        return load_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def parse_space(data: Any, *, name: str, source: Path | None = None) -> SearchSpace:
    """Validate a parsed YAML document and build its :class:`SearchSpace`."""
    where = str(source) if source else name
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(_TOP_LEVEL_KEYS)}")
    _check_keys(data, _TOP_LEVEL_KEYS, where)
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise ConfigError(f"{where}: missing required key '{key}'")
    mode = data["mode"]
    if mode not in _MODES:
        raise ConfigError(f"{where}: mode: {_shown(mode)} is not one of {list(_MODES)}")
    config = data.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: config: expected a mapping of fixed settings")
    for key in config:
        _name(key, f"{where}: config")
    params = _parse_params(data["params"], where)
    clashes = sorted(set(config) & {p.name for p in params})
    if clashes:
        raise ConfigError(f"{where}: {clashes} set both in config and in params; keep one")
    return SearchSpace(
        name=name,
        trainable=_name(data["trainable"], f"{where}: trainable"),
        metric=_name(data["metric"], f"{where}: metric"),
        mode=mode,
        params=params,
        config=dict(config),
        description=str(data.get("description") or ""),
        source=source,
        max_epochs=_optional_count(data, "max_epochs", where),
        grace_period=_optional_count(data, "grace_period", where),
        start_from=_parse_start_from(data.get("start_from"), params, where),
        trial_minutes=_optional_minutes(data, where),
    )


def _optional_minutes(data: Mapping, where: str) -> float | None:
    """``trial_minutes``: a positive number, or None when the key is absent."""
    value = data.get("trial_minutes")
    if value is None:
        return None
    if not is_number(value) or value <= 0:
        raise ConfigError(f"{where}: trial_minutes: expected a positive number of minutes, "
                          f"got {_shown(value)}")
    return float(value)


def _parse_start_from(data: Any, params: tuple[Param, ...], where: str) -> tuple[dict[str, Any], ...]:
    """The space's starting points: a list of mappings of searched params to values inside
    their ranges (each may leave params out; the runner fills them from the family's defaults)."""
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(point, Mapping) for point in data):
        raise ConfigError(f"{where}: start_from: expected a list of mappings like [{{lr: 0.003}}]")
    by_name = {param.name: param for param in params}
    points = []
    for i, point in enumerate(data, start=1):
        values = {}
        for key, value in point.items():
            param = by_name.get(key)
            if param is None:
                raise ConfigError(f"{where}: start_from[{i}]: unknown key {_shown(key)}; the space's params: "
                                  f"{', '.join(by_name)}")
            value = _start_value(param, value)
            if not param.contains(value):
                raise ConfigError(f"{where}: start_from[{i}].{key}: {_shown(value)} is outside the param's "
                                  f"range ({param.describe()})")
            values[key] = value
        points.append(values)
    return tuple(points)


def _start_value(param: Param, value: Any) -> Any:
    """A starting value as the param holds it: ``1e-3`` (a string to YAML 1.1) a float, ``4.0``
    of an int param an int."""
    if isinstance(param, FloatParam) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    if isinstance(param, FloatParam) and is_int(value):
        return float(value)
    if isinstance(param, IntParam) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _optional_count(data: Mapping, key: str, where: str) -> int | None:
    """A positive whole number, or None when the key is absent."""
    value = data.get(key)
    if value is None:
        return None
    if not is_int(value, minimum=1):
        raise ConfigError(f"{where}: {key}: expected a whole number of epochs, at least 1; got {value!r}")
    return value


def _check_keys(data: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {sorted(allowed)}")


def _name(value: Any, where: str) -> str:
    """A param's, config key's, metric's or trainable's name: a non-empty string that prints on
    one line (messages quote names; a line break in one would split the message)."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigError(f"{where}: {_shown(value)} is not a name; names are text on one line, "
                          "without control characters")
    return value


def _shown(value: Any) -> str:
    """``repr(value)``, cut short for a message (an integer of 400 digits, a long string)."""
    text = repr(value)
    if len(text) <= _MAX_SHOWN_CHARS:
        return text
    return f"{text[:_MAX_SHOWN_CHARS // 2]}... ({len(text)} characters)"


def _parse_params(data: Any, where: str) -> tuple[Param, ...]:
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{where}: params: expected a non-empty mapping of name -> spec")
    return tuple(_parse_param(_name(name, f"{where}: params"), spec, f"{where}: params.{name}")
                 for name, spec in data.items())


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{type: float, low: 0.1, high: 1.0}}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _PARSERS:
        raise ConfigError(f"{where}: type: {_shown(kind)} is not one of {sorted(_PARSERS)}")
    return _PARSERS[kind](name, spec, where)


def _number(spec: Mapping, key: str, where: str, limit: float) -> int | float:
    """A finite number from YAML, at most ``limit`` in magnitude; strings such as ``1e-4``
    (YAML 1.1 leaves them strings) are parsed."""
    if key not in spec:
        raise ConfigError(f"{where}: missing '{key}'")
    value = spec[key]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if not is_number(value):
        raise ConfigError(f"{where}: {key}: expected a finite number, got {_shown(spec[key])}")
    if abs(value) > limit:
        raise ConfigError(f"{where}: {key}: {_shown(value)} is out of range; bounds and steps of this "
                          f"type lie within +-{limit:.16g}, as Ray's sampling needs")
    return value


def _real(spec: Mapping, key: str, where: str) -> float:
    return float(_number(spec, key, where, _MAX_FLOAT_BOUND))


def _integer(spec: Mapping, key: str, where: str) -> int:
    value = _number(spec, key, where, _MAX_INT_BOUND)
    if value != int(value):
        raise ConfigError(f"{where}: {key}: expected an integer, got {_shown(spec[key])}")
    return int(value)


def _flag(spec: Mapping, key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
    return value


def _check_bounds(low: float, high: float, log: bool, where: str) -> None:
    if low > high:
        raise ConfigError(f"{where}: low ({low}) > high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got low = {low}")


def _parse_float(name: str, spec: Mapping, where: str) -> FloatParam:
    _check_keys(spec, _NUMERIC_KEYS, where)
    low, high = _real(spec, "low", where), _real(spec, "high", where)
    log = _flag(spec, "log", where)
    _check_bounds(low, high, log, where)
    if low == high:
        raise ConfigError(f"{where}: low == high ({low}); put a fixed value under config instead")
    step = None
    if "step" in spec:
        step = _real(spec, "step", where)
        _check_step(low, high, step, log, where)
    param = FloatParam(name=name, low=low, high=high, log=log, step=step)
    return _with_grid(param, spec, where, lambda v: float(v) if _is_plain_int(v, _MAX_FLOAT_BOUND) else v)


def _parse_int(name: str, spec: Mapping, where: str) -> IntParam:
    _check_keys(spec, _NUMERIC_KEYS, where)
    low, high, log = _integer(spec, "low", where), _integer(spec, "high", where), _flag(spec, "log", where)
    _check_bounds(low, high, log, where)
    step = _integer(spec, "step", where) if "step" in spec else 1
    _check_step(low, high, step, log, where)
    param = IntParam(name=name, low=low, high=high, log=log, step=step)
    return _with_grid(param, spec, where, lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)


def _is_plain_int(value: Any, limit: float) -> bool:
    """An int (not a bool) of magnitude at most ``limit``."""
    return is_int(value) and abs(value) <= limit


def _check_step(low: float, high: float, step: float, log: bool, where: str) -> None:
    if step <= 0:
        raise ConfigError(f"{where}: step: expected a positive number, got {step}")
    if log and step != 1:
        raise ConfigError(f"{where}: log and step cannot be combined; drop one")
    span = (high - low) / step
    if abs(span - round(span)) > 1e-6:
        raise ConfigError(f"{where}: high - low ({high - low:g}) is not a multiple of step ({step:g})")


def _with_grid(param: Param, spec: Mapping, where: str, coerce: Callable[[Any], Any]) -> Param:
    if "grid" not in spec:
        return param
    values = spec["grid"]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: grid: expected a non-empty list of values")
    grid = tuple(coerce(v) for v in values)
    bad = [v for v in grid if not param.contains(v)]
    if bad:
        raise ConfigError(f"{where}: grid: {_shown(bad[0])} is outside the param's range "
                          f"({param.describe()})")
    return dataclasses.replace(param, grid=grid)


def _parse_categorical(name: str, spec: Mapping, where: str) -> CategoricalParam:
    _check_keys(spec, _CATEGORICAL_KEYS, where)
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices: expected a non-empty list")
    for choice in choices:
        if not isinstance(choice, Hashable):  # a list, a mapping or a set (!!set)
            raise ConfigError(f"{where}: choices: {_shown(choice)} is a {type(choice).__name__}, not a "
                              "scalar; choices are strings, numbers, true/false or null")
    param = CategoricalParam(name=name, choices=tuple(choices))
    if len({(type(c), c) for c in choices}) < len(choices):
        raise ConfigError(f"{where}: choices: duplicate values in {choices}")
    return param


_PARSERS: dict[str, Callable[[str, Mapping, str], Param]] = {
    "float": _parse_float,
    "int": _parse_int,
    "categorical": _parse_categorical,
}


def _param_document(param: Param) -> dict[str, Any]:
    if isinstance(param, CategoricalParam):
        return {"type": "categorical", "choices": list(param.choices)}
    document = {"type": "float" if isinstance(param, FloatParam) else "int",
                "low": param.low, "high": param.high}
    if param.log:
        document["log"] = True
    if param.step != (1 if isinstance(param, IntParam) else None):
        document["step"] = param.step
    if param.grid:
        document["grid"] = list(param.grid)
    return document


def space_document(space: SearchSpace) -> dict[str, Any]:
    """The YAML document of ``space``: ``parse_space`` gives the space back. Config values YAML
    cannot hold (an estimator object, say) are written as their ``repr``."""
    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)

    document = {"trainable": space.trainable, "metric": space.metric, "mode": space.mode,
                "config": plain(space.config),
                "params": {param.name: _param_document(param) for param in space.params}}
    if space.description:
        document["description"] = space.description
    for key in ("max_epochs", "grace_period"):
        if getattr(space, key) is not None:
            document[key] = getattr(space, key)
    if space.start_from:
        document["start_from"] = [plain(point) for point in space.start_from]
    if space.trial_minutes is not None:
        document["trial_minutes"] = space.trial_minutes
    return document
