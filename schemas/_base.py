"""Shared pydantic base classes: frozen, strict about unknown fields and non-finite numbers."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Frozen(BaseModel):
    """Boundary data: immutable, unknown fields rejected, NaN/inf rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False,
                              str_strip_whitespace=True)


class FrozenOpen(Frozen):
    """Like Frozen but tolerates extra fields (plans carry solver metadata)."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)


Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/+@-]+$")]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
