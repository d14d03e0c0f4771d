"""The one base of gridbridge's value objects: frozen pydantic models that refuse fields they
do not know, so a misspelt key in a config file or a job spec fails and names the valid ones.
Change one with ``model_copy(update=...)``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen"]


class Frozen(BaseModel):
    """Immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
