"""The words the command lines print, one spelling each: plural forms, and protobuf enum values in JSON.

``plural(1, "query")`` is "1 query" and ``plural(2, "query")`` "2 queries": every count a command prints goes
through it. ``enum_word`` is how an enum value reads in every JSON a command prints: the value's name
without its enum's prefix, lower case (``SITE_STATUS_ANSWERED`` -> ``answered``, ``STUDY_STATE_APPROVED`` ->
``approved``, ``QUERY_KIND_COHORT_COUNT`` -> ``cohort_count``: the words the command line itself accepts and
the query JSON uses), except error reasons, which stay the upper-case names ``genogate.errors.Reason`` gives
them everywhere (``ERROR_REASON_BUDGET_EXHAUSTED`` -> ``BUDGET_EXHAUSTED``). ``message_json`` is
``MessageToDict`` with every enum so spelled. Nothing here imports the generated wire code: enums are read
from the descriptors of the messages handed in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, EnumValueDescriptor
    from google.protobuf.message import Message

UPPER_CASE_ENUMS = frozenset({"ErrorReason"})
"""Enums whose words keep their upper-case names (the reasons ``genogate.errors.Reason`` names)."""


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``n`` and the noun in the right number: ``1 query``, ``2 queries``, ``0 sites``, ``1,204 entries``
    (``plural_form`` where the English rule below is wrong, e.g. ``plural(n, "person", "people")``)."""
    if n == 1:
        return f"{n} {singular}"
    if plural_form is None:
        if singular.endswith("y") and singular[-2:-1] not in tuple("aeiou"):
            plural_form = singular[:-1] + "ies"
        elif singular.endswith(("s", "x", "ch", "sh")):
            plural_form = singular + "es"
        else:
            plural_form = singular + "s"
    return f"{n:,} {plural_form}"


def _prefix(enum_name: str) -> str:
    """``SiteStatus`` -> ``SITE_STATUS_`` (the proto style guide's prefix of every value)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


def enum_word(value: EnumValueDescriptor) -> str:
    """How ``value`` reads in JSON and tables (see the module docstring)."""
    enum_name = value.type.name
    word = value.name.removeprefix(_prefix(enum_name))
    return word if enum_name in UPPER_CASE_ENUMS else word.lower()


def message_json(message: Message) -> dict[str, Any]:
    """``message`` in the protobuf JSON mapping (proto field names), every enum value an ``enum_word``."""
    from google.protobuf.json_format import MessageToDict

    doc: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    _words(message.DESCRIPTOR, doc)  # type: ignore[arg-type]  # upb's Descriptor is the same type at run time
    return doc


def _words(descriptor: Descriptor, doc: dict[str, Any]) -> None:
    for field in descriptor.fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        if field.enum_type is not None:
            by_name = field.enum_type.values_by_name

            def word(name: Any, by_name: Any = by_name) -> Any:
                return enum_word(by_name[name]) if isinstance(name, str) and name in by_name else name

            doc[field.name] = [word(v) for v in value] if isinstance(value, list) else word(value)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _words(field.message_type, item)
