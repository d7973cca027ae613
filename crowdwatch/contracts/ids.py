"""The one id format of the config (sites, zones, cameras, rules, channels)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Ids become MQTT topic levels and SQL values: lower-case, no ``/``, ``+``, ``#`` or spaces."""

Identifier = Annotated[
    str, Field(pattern=ID_PATTERN, description="lower-case id: a-z, 0-9, - and _")
]
