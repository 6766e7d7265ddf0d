"""One safe YAML reader for configs, presets and study files.

``yaml.safe_load`` only (no arbitrary Python objects); every failure becomes a
:class:`~ecgcore.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import os

from .errors import ConfigError


def load_mapping(path, what: str = "config") -> dict:
    """Read a YAML file that must hold a mapping; an empty file gives ``{}``.

    Parameters
    ----------
    path : str or path-like
        The YAML file.
    what : str
        What the file is, for error messages ("config", "preset file", ...).
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a declared dependency
        raise ConfigError(f"reading a {what} from YAML needs pyyaml", path) from None
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"the {what} must be a YAML mapping", path)
    return data
