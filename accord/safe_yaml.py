"""The one YAML reader for files a user or another machine hands us (configs, run.yaml, suite files).

Hostile or broken files are refused with one line naming the file, before they can use much time or
memory: a size cap, text that must decode (UTF-8, or UTF-16/32 with a byte-order mark), a cap on the
nesting depth (checked while composing, far below Python's recursion limit) and a cap on the size of
the document with every alias expanded ("billion laughs"). The caps bound the parse, so no timeout
thread is needed: a file at the caps parses in well under a second.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from accord.errors import AccordError, ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: configs are a few KiB
MAX_DEPTH = 100  # nested mappings/sequences
MAX_NODES = 100_000  # scalars + collections, aliases expanded

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class _Refused(Exception):
    pass


class _CappedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and documents whose alias-expanded size is too large."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = self._sizes.get(id(node))
        if size is None:  # a new node (an alias returns a node already sized: it counts again here)
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._sizes.get(id(v), 1) for v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        if size > MAX_NODES:
            raise _Refused(f"expands to more than {MAX_NODES:,} values (alias bomb?)")
        return node


def decode(data: bytes, where: str, error: type[AccordError] = ConfigError) -> str:
    """Bytes of a text file -> str: UTF-8, or UTF-16/32 with a BOM; anything else is refused."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as e:
                raise error(f"{where}: not valid {codec.upper()} text ({e.reason} at byte {e.start})") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise error(f"{where}: a binary file, not YAML text (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                    "save it as UTF-8") from None


def loads(text: str, where: str, error: type[AccordError] = ConfigError) -> Any:
    """Parse YAML text with the caps; any problem is one ``error`` line naming ``where``."""
    if len(text) > MAX_BYTES:
        raise error(f"{where}: {len(text):,} characters, more than the {MAX_BYTES:,} a YAML file may have")
    depth = _flow_depth(text)
    if depth > MAX_DEPTH:  # PyYAML's scanner is slow on deep [[[...]]]: refuse before it starts
        raise error(f"{where}: refused: nested more than {MAX_DEPTH} levels deep ({depth} brackets)")
    loader = _CappedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise error(f"{where}: refused: {e}") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise error(f"{where}: not valid YAML ({first})") from None
    except RecursionError:
        raise error(f"{where}: refused: nested too deeply") from None
    finally:
        loader.dispose()


def _flow_depth(text: str) -> int:
    """Deepest nesting of [ ] and { } (quotes ignored: an overestimate only for odd strings)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def load_file(path: str | Path, error: type[AccordError] = ConfigError) -> Any:
    """Read and parse a YAML file with the caps (see the module docstring)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise error(f"{p}: {size:,} bytes, more than the {MAX_BYTES:,} a YAML file may have")
        data = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read {p}: {e.strerror or e}") from None
    return loads(decode(data, str(p), error), str(p), error)
