"""Settings as pydantic models: the base of every group of settings, the field helper that carries what the command
line shows of a setting, and the one wording of a refused value.

A group is a `Settings` subclass (trainer/config.py: a run's shared settings and the machine's; trainer/models/
settings.py: each model's own). pydantic checks the types and bounds; this module words its refusals as the
command line says them ("must be at least 1, not 0"), for a flag, a config file and a saved configuration alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


class Settings(BaseModel):
    """A group of settings: unknown names refused, frozen once built, types as declared (no '3' for 3, no 1 for
    true: a config file's typo is refused, not coerced)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# The largest whole numbers a setting may take: a run's figures are written into INTEGER (32-bit) and BIGINT (64-bit)
# columns, and a value past them would train for nothing, then fail to publish.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def setting(
    default: Any = PydanticUndefined,
    help: str = "",
    *,
    flags: tuple[str, ...] = (),
    envvar: str | None = None,
    too_big: str = "",
    internal: str = "",
    **bounds: Any,
) -> Any:
    """A field of a Settings group: its default, bounds (ge, gt, lt, le: pydantic's) and, for the command line, its
    help, option names (default --field-name, --x/--no-x for a bool), environment variable, what a value past its
    maximum would do (said with the refusal), or why it has no option (``internal``: set by presets or commands).
    Without a default it describes a type shared by several groups (``Annotated[float, setting(...)]``); a float
    must then say ``allow_inf_nan=False`` itself."""
    options: dict[str, Any] = {"description": help, **bounds}
    options["json_schema_extra"] = {"flags": flags, "envvar": envvar, "too_big": too_big, "internal": internal}
    if isinstance(default, float):
        options["allow_inf_nan"] = False
    return Field(default, **options)


@dataclass(frozen=True)
class Setting:
    """What the command line needs of one setting, read from its field."""

    help: str
    kind: Any  # the field's type
    default: Any
    flags: tuple[str, ...] = ()
    envvar: str | None = None
    internal: str = ""
    too_big: str = ""

    @property
    def choices(self) -> tuple[str, ...]:
        """The values a Literal setting allows; () when any value of its type goes."""
        return get_args(self.kind) if getattr(self.kind, "__origin__", None) is Literal else ()


def described(group: type[Settings]) -> dict[str, Setting]:
    """Each field of ``group`` as the command line shows it, by name."""
    found = {}
    for name, field in group.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        found[name] = Setting(
            field.description or "",
            field.annotation,
            field.get_default(call_default_factory=True),
            flags=tuple(extra.get("flags") or ()),  # type: ignore[arg-type]
            envvar=extra.get("envvar"),  # type: ignore[arg-type]
            internal=str(extra.get("internal") or ""),
            too_big=str(extra.get("too_big") or ""),
        )
    return found


def why_not(group: type[Settings], name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``group``'s setting ``name``, as "must be ..., not ..."; None when it is."""
    try:
        _adapter(group, name).validate_python(value)
    except ValidationError as error:
        return refusal(group, name, error.errors()[0])
    return None


def refusal(group: type[Settings], name: str, error: Any) -> str:
    """One pydantic error of ``group``'s setting ``name`` in the command line's words."""
    kind, context, value = error["type"], error.get("ctx") or {}, error["input"]
    field = described(group)[name]
    each = " each" if len(error["loc"]) > 1 and isinstance(error["loc"][-1], int) else ""  # hidden's widths
    words = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than": ("below", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in words:
        said, key = words[kind]
        bound = context[key]
        why = f" ({field.too_big})" if key == "le" and field.too_big else ""
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {said} {shown}{each}{why}, not {value}"
    if kind == "literal_error":
        return f"must be one of {', '.join(field.choices)}, not {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, not {value}"
    if kind == "too_short":
        return f"must list at least one value, not {value}"
    return f"must be {type_name(field.kind)}, not {value!r}"


def wrong_type(group: type[Settings], name: str, value: Any) -> bool:
    """Whether ``value`` is refused for its type alone (a string for a number), not for a bound or a choice."""
    try:
        _adapter(group, name).validate_python(value)
    except ValidationError as error:
        return error.errors()[0]["type"].endswith("_type")
    return False


def type_name(kind: Any) -> str:
    """A setting's type, in words."""
    names = {bool: "true or false", int: "a whole number", float: "a number"}
    return names.get(kind, "a list of whole numbers" if getattr(kind, "__origin__", None) is tuple else "a string")


@cache
def _adapter(group: type[Settings], name: str) -> TypeAdapter[Any]:
    field: FieldInfo = group.model_fields[name]
    return TypeAdapter(field.rebuild_annotation(), config=ConfigDict(strict=True))
