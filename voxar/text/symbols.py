"""``SymbolTable``: the ordered symbol inventory behind token ids, saved as JSON next to model weights."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from voxar.errors import VoxarTextError

__all__ = ["BOS", "EOS", "PAD", "SPACE", "SPECIALS", "UNK", "SymbolTable"]

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # always ids 0, 1, 2, 3
SPACE = " "  # the word-boundary symbol, always present


class SymbolTable:
    """An immutable ordered list of symbols; a symbol's id is its position.

    Ids 0-3 are the specials ``<pad>`` (0), ``<unk>`` (1), ``<bos>`` (2), ``<eos>`` (3); the word boundary ``" "``
    is always present (id 4 unless the given symbols place it elsewhere). Two tables are equal when their symbol
    lists are identical, which is what guarantees identical ids.
    """

    PAD_ID = 0
    UNK_ID = 1
    BOS_ID = 2
    EOS_ID = 3

    def __init__(self, symbols: Iterable[str]) -> None:
        """Build a table from the regular symbols (specials are prepended, ``" "`` added if missing).

        Raises:
            VoxarTextError: a symbol is repeated, empty, not a string, or is one of the specials.
        """
        regular = list(symbols)
        for sym in regular:
            if not isinstance(sym, str) or not sym:
                raise VoxarTextError(f"symbol table: symbols must be non-empty strings, got {sym!r}")
            if sym in SPECIALS:
                raise VoxarTextError(f"symbol table: {sym!r} is a reserved special symbol; do not list it")
        if SPACE not in regular:
            regular.insert(0, SPACE)
        self._symbols: tuple[str, ...] = (*SPECIALS, *regular)
        self._ids: dict[str, int] = {}
        for i, sym in enumerate(self._symbols):
            if sym in self._ids:
                raise VoxarTextError(f"symbol table: duplicate symbol {sym!r} (ids {self._ids[sym]} and {i})")
            self._ids[sym] = i

    @property
    def symbols(self) -> tuple[str, ...]:
        """All symbols in id order, specials included."""
        return self._symbols

    @property
    def space_id(self) -> int:
        """Id of the word-boundary symbol ``" "``."""
        return self._ids[SPACE]

    def __len__(self) -> int:
        return len(self._symbols)

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __contains__(self, sym: object) -> bool:
        return sym in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SymbolTable):
            return NotImplemented
        return self._symbols == other._symbols

    def __hash__(self) -> int:
        return hash(self._symbols)

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"

    def index(self, sym: str) -> int:
        """Id of ``sym``; symbols not in the table map to ``<unk>`` (id 1)."""
        return self._ids.get(sym, self.UNK_ID)

    def symbol(self, i: int) -> str:
        """Symbol with id ``i``.

        Raises:
            VoxarTextError: ``i`` is not a valid id (0 <= i < len(self)).
        """
        if not 0 <= int(i) < len(self._symbols):
            raise VoxarTextError(f"symbol table: id {i} out of range (table has {len(self._symbols)} symbols)")
        return self._symbols[int(i)]

    def to_dict(self) -> dict[str, Any]:
        """``{"symbols": [...]}`` with the full list, specials included (JSON-safe)."""
        return {"symbols": list(self._symbols)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "symbol table") -> SymbolTable:
        """Rebuild a table saved by :meth:`to_dict`.

        Raises:
            VoxarTextError: not a mapping with a ``symbols`` list, specials missing or out of place, duplicates.
        """
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise VoxarTextError(f"{where}: expected a mapping with a 'symbols' list")
        symbols = data["symbols"]
        if tuple(symbols[: len(SPECIALS)]) != SPECIALS:
            raise VoxarTextError(
                f"{where}: the first symbols must be the specials {list(SPECIALS)}, got {symbols[: len(SPECIALS)]}"
            )
        if SPACE not in symbols:
            raise VoxarTextError(f"{where}: the word-boundary symbol ' ' is missing")
        try:
            return cls(symbols[len(SPECIALS) :])
        except VoxarTextError as e:
            raise VoxarTextError(f"{where}: {str(e).removeprefix('symbol table: ')}") from e

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON to ``path`` atomically (temporary file in the same folder, then rename)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SymbolTable:
        """Read a table written by :meth:`save`; a missing/unreadable/invalid file raises VoxarTextError."""
        return cls.from_dict(read_json(path), where=str(path))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as UTF-8 JSON to ``path`` so that readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved model files should be readable like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a UTF-8 JSON file; a missing file or bad JSON raises VoxarTextError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise VoxarTextError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VoxarTextError(f"{path}: cannot read JSON ({e})") from None
