"""Translation behind one interface, with a persistent translation memory.

An *engine* names a translation system as ``<backend>:<model>``:

* ``transformers:<hub id or path>`` - a seq2seq MT model (NLLB-200, M2M100) run
  with transformers (:class:`TransformersBackend`);
* ``human:crosstune-seed`` - the bundled human translations of the seed data,
  which exist only in the memory.

Every translation is stored in a :class:`TranslationMemory` (SQLite) keyed by
(engine, source language, target language, source text), so no string is ever
translated twice by the same engine. Work is done in shards; each shard is
committed to the memory as soon as it is translated, so a crash loses at most
one shard and a rerun resumes where it stopped.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from . import faults, languages

log = logging.getLogger(__name__)


class MemoryMiss(LookupError):
    """A string is not in the memory and the memory may not be extended."""


class TranslationMemory:
    """SQLite store of translations; safe for several translate jobs at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS tm (engine TEXT NOT NULL, src TEXT NOT NULL, tgt TEXT NOT NULL,"
            " source TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (engine, src, tgt, source))"
        )
        self.db.commit()

    def get(self, engine: str, src: str, tgt: str, texts: Iterable[str]) -> dict[str, str]:
        """The stored translations of ``texts`` (those that are known)."""
        found: dict[str, str] = {}
        texts = list(dict.fromkeys(texts))
        for i in range(0, len(texts), 500):  # stay below SQLite's parameter limit
            chunk = texts[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT source, target FROM tm WHERE engine=? AND src=? AND tgt=? AND source IN ({marks})",
                (engine, src, tgt, *chunk),
            )
            found.update(rows)
        return found

    def put(self, engine: str, src: str, tgt: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Store (source, target) pairs in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO tm VALUES (?, ?, ?, ?, ?)",
                [(engine, src, tgt, s, t) for s, t in pairs],
            )

    def import_entries(self, engine: str, entries: Iterable[tuple[str, str, str, str]]) -> None:
        """Add (src, tgt, source, target) entries unless already present."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO tm VALUES (?, ?, ?, ?, ?)",
                [(engine, *e) for e in entries],
            )

    def count(self, engine: str | None = None) -> int:
        if engine is None:
            return self.db.execute("SELECT COUNT(*) FROM tm").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM tm WHERE engine=?", (engine,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()


class Backend:
    """A translation system: ``translate(texts, src, tgt)`` returns one string per text.

    ``engine`` names the system; ``key`` is what its translations are stored under
    in the memory (the engine plus the decoding settings that change outputs).
    """

    engine: str
    key: str | None = None

    @property
    def memory_key(self) -> str:
        return self.key or self.engine

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        raise NotImplementedError


class MemoryBackend(Backend):
    """Memory-only mode: every string must already be in the memory."""

    def __init__(self, engine: str):
        self.engine = engine

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        shown = "\n".join(f"  - {t[:120]!r}" for t in texts[:5])
        more = f"\n  ... and {len(texts) - 5} more" if len(texts) > 5 else ""
        raise MemoryMiss(
            f"translation memory has no {languages.name(src)} ({src}) -> {languages.name(tgt)} ({tgt}) "
            f"translation by engine {self.engine!r} for {len(texts)} string(s):\n{shown}{more}\n"
            "Set translate.memory_only: false with a 'transformers:<model>' engine to translate them."
        )


def memory_key(engine: str, num_beams: int = 1, max_new_tokens: int = 256, **_) -> str:
    """The memory key of an engine's translations.

    A model's output depends on its decoding settings, so they are part of the
    key: changing ``num_beams`` retranslates instead of returning stale entries.
    Human translations have no settings.
    """
    if engine.startswith("human:"):
        return engine
    return f"{engine}|num_beams={num_beams}|max_new_tokens={max_new_tokens}"


def make_backend(engine: str, memory_only: bool, **options) -> Backend:
    """The backend for ``engine`` (``<backend>:<model>``); ``options`` are decoding settings."""
    backend = _make_backend(engine, memory_only, **options)
    backend.key = memory_key(engine, **options)
    return backend


def _make_backend(engine: str, memory_only: bool, **options) -> Backend:
    kind, sep, model = engine.partition(":")
    if not sep or not model:
        raise ValueError(f"translate.engine: {engine!r} is not of the form '<backend>:<model>'")
    if kind not in ("transformers", "human"):
        raise ValueError(f"translate.engine: unknown backend {kind!r} in {engine!r} (expected 'transformers' or 'human')")
    if memory_only or kind == "human":  # human translations cannot be produced on demand
        return MemoryBackend(engine)
    from .mt import TransformersBackend

    return TransformersBackend(model, **options)


def translate_texts(texts: Sequence[str], src: str, tgt: str, backend: Backend,
                    memory: TranslationMemory, shard_size: int = 256) -> list[str]:  # fmt: skip
    """Translate ``texts`` (aligned output), reusing and extending the memory shard by shard."""
    unique = list(dict.fromkeys(texts))
    known = memory.get(backend.memory_key, src, tgt, unique)
    todo = [t for t in unique if t not in known]
    log.info("%s->%s: %d strings, %d in memory, %d to translate", src, tgt, len(unique), len(known), len(todo))
    if todo and isinstance(backend, MemoryBackend):
        backend.translate(todo, src, tgt)  # raises MemoryMiss naming the strings
    with tqdm(total=len(todo), desc=f"translate {src}->{tgt}", unit="str", disable=not todo) as bar:
        for start in range(0, len(todo), shard_size):
            shard = todo[start : start + shard_size]
            out = backend.translate(shard, src, tgt)
            if len(out) != len(shard):
                raise RuntimeError(f"{backend.engine} returned {len(out)} translations for {len(shard)} strings")
            memory.put(backend.memory_key, src, tgt, zip(shard, out, strict=True))
            known.update(zip(shard, out, strict=True))
            bar.update(len(shard))
            faults.point("translate.shard", start // shard_size + 1)
    return [known[t] for t in texts]


def translate_records(records: Sequence[dict], lang: str, backend: Backend, memory: TranslationMemory,
                      fields: Sequence[str], fields_to_en: Sequence[str],
                      shard_size: int = 256) -> list[dict]:  # fmt: skip
    """The records of target language ``lang`` with their English counterparts.

    * English records: ``fields`` are translated en -> lang; the originals are
      kept as ``<field>_en``.
    * Records already in ``lang``: ``fields_to_en`` are translated lang -> en
      into ``<field>_en``; other ``_en`` fields are None.
    """
    languages.check(lang)
    english = [r for r in records if r["lang"] == "en"]
    native = [r for r in records if r["lang"] == lang]
    out = []
    if english and lang != "en":
        columns = {f: translate_texts([r[f] for r in english], "en", lang, backend, memory, shard_size) for f in fields}
        for i, r in enumerate(english):
            rec = {"id": f"{r['id']}#{lang}", "lang": lang, "source": r["source"]}
            for f in ("instruction", "response"):
                rec[f] = columns[f][i] if f in columns else r[f]
                rec[f"{f}_en"] = r[f]
            out.append(rec)
    if native and lang != "en":
        columns = {f: translate_texts([r[f] for r in native], lang, "en", backend, memory, shard_size) for f in fields_to_en}
        for i, r in enumerate(native):
            rec = {"id": r["id"], "lang": lang, "source": r["source"],
                   "instruction": r["instruction"], "response": r["response"]}  # fmt: skip
            for f in ("instruction", "response"):
                rec[f"{f}_en"] = columns[f][i] if f in columns else None
            out.append(rec)
    return out
