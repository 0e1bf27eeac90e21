"""The one way the builder reads YAML a user wrote (config files, --set values, stage files,
cloud-config): strict, and whatever the bytes, a mistake is one line naming where it is.

Stricter than yaml.safe_load: a key given twice is an error (the last would silently win), dates
stay text (`2024-02-30` is a host name, not an impossible date), integers are of a sensible
length, and a document nested too deeply or too large once its aliases are followed is refused
before anything walks it.
"""

from typing import Any

import yaml

from .errors import UserError

MAX_DEPTH = 64
MAX_NODES = 100_000  # values in the document, an alias counted each time it is used
MAX_INT_DIGITS = 100
TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key that is a list or mapping", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(c.isalnum() for c in self.construct_scalar(node))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits", node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


class _TextDatesLoader(_StrictLoader):
    """Dates are read as the text they are."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load(data: str | bytes, where: str, dates: bool = False) -> Any:
    """The document in data (bytes must be UTF-8); UserError "where: …" on any fault. With
    dates, a date is read as one, as cloud-init reads its files (and an impossible one is a
    fault); without, as text."""
    if isinstance(data, bytes):
        data = text_of(data, where)
    try:
        document = yaml.load(data, Loader=_StrictLoader if dates else _TextDatesLoader)  # noqa: S506
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(e.problem or e.context or "unreadable").split())
        raise UserError(f"{where}: not valid YAML: {problem}{at}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except ValueError as e:  # a date that does not exist
        raise UserError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise UserError(f"{where}: expected at most {MAX_DEPTH} levels of nesting, "
                        "got more") from None
    _check_shape(document, where)
    return document


def text_of(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: expected UTF-8 text, got the byte 0x{data[e.start]:02x} at "
                        f"offset {e.start}") from None
    if "\0" in text:
        raise UserError(f"{where}: expected text, got a NUL byte at offset {text.index(chr(0))}")
    return text


def _check_shape(document: Any, where: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or larger than MAX_NODES, walked without
    recursion (so that nothing later recurses into them)."""
    pending, nodes = [(document, 0)], 0
    while pending:
        value, depth = pending.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: expected at most {MAX_DEPTH} levels of nesting, got more")
        if nodes > MAX_NODES:
            raise UserError(f"{where}: expected at most {MAX_NODES} values (aliases counted each "
                            "time they are used), got more")
        if isinstance(value, dict):
            pending += [(item, depth + 1) for pair in value.items() for item in pair]
        elif isinstance(value, list):
            pending += [(item, depth + 1) for item in value]
