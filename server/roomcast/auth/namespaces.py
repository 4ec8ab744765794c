"""Per-namespace options: who may read and publish, and the rooms' defaults.

A room's namespace is the part of its name before the first ``:``
(``feed:prices`` is in ``feed``; ``lobby`` is in ``""``). Options come from
the ``namespaces`` setting and the ``namespaces_file`` (TOML or JSON, the
setting wins on a clash); ``*`` is the default of every namespace not named.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from ..hub.archive import RoomOptions
from ..protocol.frames import namespace_of
from ..settings import NamespaceConfig, Settings

__all__ = ["Namespaces", "load_namespaces"]

_CONFIGS = TypeAdapter(dict[str, NamespaceConfig])


def load_namespaces(settings: Settings) -> dict[str, NamespaceConfig]:
    """The namespace options of the settings and their file. Raises ValueError."""
    configs: dict[str, NamespaceConfig] = {}
    path = settings.namespaces_file
    if path is not None:
        text = Path(path).read_text()
        raw: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        try:
            configs.update(_CONFIGS.validate_python(raw))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    configs.update(settings.namespaces)
    return configs


class Namespaces:
    """Looks up the options of a room's namespace."""

    def __init__(self, configs: dict[str, NamespaceConfig], *, presence: bool = True) -> None:
        self.configs = configs
        self.default = configs.get("*", NamespaceConfig())
        self.presence = presence
        self.any_public = any(config.public for config in configs.values())

    def of(self, room: str) -> NamespaceConfig:
        return self.configs.get(namespace_of(room), self.default)

    def room_options(self, room: str) -> RoomOptions:
        """The options of a room nobody created: its namespace's."""
        config = self.of(room)
        presence = self.presence if config.presence is None else config.presence
        return RoomOptions(
            persist=config.persist, presence=presence, history_size=config.history_size
        )

    @property
    def any_persisted(self) -> bool:
        """Whether some namespace persists rooms nobody created."""
        return any(config.persist for config in self.configs.values())
