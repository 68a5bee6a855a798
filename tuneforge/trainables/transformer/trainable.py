"""The ``transformer`` trainable: the encoder-decoder Transformer (:mod:`.model`) on sequence pairs
(:mod:`.data`: CMUdict's spellings and pronunciations, or a user's TSV), on the epoch loop.

Config keys: ``dataset`` (``cmudict`` or ``{tsv: FILE}``), ``tokens`` (a TSV's tokenisation:
``chars`` or ``words``, or ``{source: ..., target: ...}``), ``beam_width`` (of the test decoding
and the logged model; default 5), the model's :class:`~.model.Seq2SeqConfig` fields (``width``,
``heads``, ``encoder_layers``, ``decoder_layers``, ``ffn_ratio``, ``dropout``,
``label_smoothing``, ``max_len``, ``norm_first``, ``tie_embeddings``; the vocabulary sizes come
from the data) and the loop's :class:`~tuneforge.trainables.torch.loop.TrainSettings`.

Every epoch reports ``train_loss`` and ``val_loss`` (label-smoothed cross-entropy per target
token, EOS included), ``token_accuracy`` (teacher-forced next-token accuracy on the validation
pairs), and, from greedy decoding of every validation source, ``wer`` (the fraction of sources
whose output equals none of their references) and ``per`` (edit distance to the closest
reference, summed, over those references' summed lengths: the phoneme error rate on CMUdict),
with ``tokens_per_s`` (target tokens trained a second) and a table of decoded examples
(``decoded/epoch-NNNN.csv``). The last epoch also reports ``test_wer`` and ``test_per``, from beam
search of the test sources (never searched on: they are the held-out numbers), and carries the
model as an MLflow pyfunc (:mod:`.pyfunc`) that maps source strings to output strings.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tuneforge._checks import check_int
from tuneforge.errors import ConfigError
from tuneforge.trainables.torch.loop import (
    EpochRun,
    LossMean,
    TorchFamily,
    TrialState,
    run_trial,
    warmup_cosine,
)
from tuneforge.trainables.transformer.data import (
    BOS,
    EOS,
    PAD,
    SequenceData,
    Split,
    check_sequence_dataset,
    load_sequence_dataset,
    test_words,
)
from tuneforge.trainables.transformer.model import (
    Seq2SeqConfig,
    Seq2SeqTransformer,
    beam_search,
    greedy_decode,
)

__all__ = ["TRANSFORMER", "decode_all", "error_rates", "length_batches", "output_limit", "train_transformer"]

_SMOKE_TRAIN, _SMOKE_VAL, _SMOKE_TEST = 5000, 50, 50
"""``--smoke``: sources of each split (CMUdict's pronunciations of them all)."""
_POOL_BATCHES = 50
"""Length bucketing: each epoch's permutation is cut into pools of this many batches, each pool
sorted by length and cut into batches, so a batch pads little and the epoch stays shuffled."""
_EVAL_BATCH = 512
_N_EXAMPLES = 20
"""Validation sources in each epoch's table of decoded examples (the first, so the same each epoch)."""
_DEFAULT_BEAM = 5
_OUTPUT_MARGIN = 5
"""Decoding stops this many tokens past the longest training target (or at max_len): an output
longer than any the model learned is wrong anyway, and an untrained model, which rarely says EOS,
decodes in a fraction of the time."""


@dataclass(frozen=True)
class _Encoded:
    """A split as ids: one (source, target) training pair per reference, and the distinct sources."""

    split: Split
    pair_sources: list[np.ndarray]
    pair_targets: list[np.ndarray]
    sources: list[np.ndarray]
    references: list[list[np.ndarray]]


@dataclass(frozen=True)
class _TrialData:
    data: SequenceData
    train: _Encoded
    val: _Encoded
    test: _Encoded
    output_limit: int
    """The longest output decoding produces (see ``_OUTPUT_MARGIN``)."""


def _encode(data: SequenceData, split: Split) -> _Encoded:
    def ids(vocab: Any, tokens: Sequence[str]) -> np.ndarray:
        return np.asarray(vocab.encode(tokens), dtype=np.int64)

    pairs = split.pairs()
    return _Encoded(split=split,
                    pair_sources=[ids(data.source_vocab, source) for source, _ in pairs],
                    pair_targets=[ids(data.target_vocab, target) for _, target in pairs],
                    sources=[ids(data.source_vocab, source) for source in split.sources],
                    references=[[ids(data.target_vocab, r) for r in refs] for refs in split.references])


def _padded(sequences: Sequence[np.ndarray], *, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """(N, L) ids: each sequence with BOS before and/or EOS after it, PAD-padded to the longest."""
    extra = int(bos) + int(eos)
    out = np.full((len(sequences), max(len(s) for s in sequences) + extra), PAD, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        if bos:
            out[row, 0] = BOS
        out[row, int(bos):int(bos) + len(sequence)] = sequence
        if eos:
            out[row, int(bos) + len(sequence)] = EOS
    return torch.from_numpy(out)


def length_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Batches of ``order``'s indices with similar ``lengths``: pools of ``_POOL_BATCHES`` batches,
    each sorted by length and cut, all the batches then shuffled by ``rng``."""
    pool = batch_size * _POOL_BATCHES
    cut = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        cut.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    for index in rng.permutation(len(cut)):
        yield cut[index]


def error_rates(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]
                ) -> tuple[float, float]:
    """(word error rate, token error rate) of predicted id sequences against each source's
    references: a source is right if its prediction equals any reference; token errors are the
    edit distance to the closest reference (torchmetrics' Levenshtein), over that reference's length,
    both summed over the sources."""
    from torchmetrics.functional.text import edit_distance

    def text(ids: Sequence[int]) -> str:  # one character a token, for a character edit distance
        return "".join(chr(0x4E00 + int(i)) for i in ids)

    flat_predictions = [text(p) for p, refs in zip(predictions, references, strict=True) for _ in refs]
    flat_references = [text(r) for refs in references for r in refs]
    distances = edit_distance(flat_predictions, flat_references, reduction="none").tolist()
    wrong, errors, length, at = 0, 0, 0, 0
    for refs in references:
        closest = min(range(len(refs)), key=lambda i: (distances[at + i], len(refs[i])))
        wrong += distances[at + closest] > 0
        errors += distances[at + closest]
        length += len(refs[closest])
        at += len(refs)
    return wrong / len(references), errors / max(1, length)


def output_limit(train_targets: Sequence[Sequence[int]], max_len: int) -> int:
    """The longest output decoding produces: ``_OUTPUT_MARGIN`` past the longest training target,
    at most ``max_len``."""
    return min(max_len, max(len(target) for target in train_targets) + _OUTPUT_MARGIN)


def decode_all(model: Seq2SeqTransformer, sources: Sequence[np.ndarray], device: torch.device,
               beam_width: int = 1, max_len: int | None = None, cache: bool = True) -> list[list[int]]:
    """Each source's output ids (EOS and what follows dropped; at most ``max_len``, default the
    model's), greedy or by beam search, in batches of similar length, without gradients.
    ``cache=False`` decodes without the key/value cache (:class:`~.model.DecoderState`)."""
    order = np.argsort([len(s) for s in sources], kind="stable")
    outputs: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), _EVAL_BATCH):
        rows = order[start:start + _EVAL_BATCH]
        source = _padded([sources[i] for i in rows]).to(device)
        ids = (greedy_decode(model, source, max_len, cache) if beam_width == 1
               else beam_search(model, source, beam_width, max_len, cache))
        for row, decoded in zip(rows, ids.tolist(), strict=True):
            outputs[row] = decoded[:decoded.index(EOS)] if EOS in decoded else decoded
    return outputs


class TransformerFamily(TorchFamily):
    name = "transformer"
    model_config = Seq2SeqConfig
    derived = ("source_vocab_size", "target_vocab_size")
    extra_keys = ("dataset", "tokens", "beam_width")
    # Batch 64: on a CPU the words/s of a step hardly depend on the batch (see transformer-cmudict),
    # and a short budget learns more from 4x the steps of batch 256.
    train_defaults = MappingProxyType({"lr": 1e-3, "warmup_epochs": 1.0, "weight_decay": 0.01,
                                       "batch_size": 64})

    def prepare(self, config: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        if "dataset" not in config:
            raise ConfigError("config.dataset: missing; name cmudict, or {tsv: FILE} of "
                              "source<TAB>target lines")
        max_len = config.get("max_len", Seq2SeqConfig.max_len)  # a bad one is refused with the model's
        config["dataset"] = check_sequence_dataset(  # other settings, after this
            config["dataset"], config.get("tokens"),
            max_len if isinstance(max_len, int) else Seq2SeqConfig.max_len, base_dir)
        beam = config.get("beam_width", _DEFAULT_BEAM)
        check_int("config.beam_width", beam, minimum=1)
        data = load_sequence_dataset(config["dataset"], config.get("tokens"))
        config.update(source_vocab_size=len(data.source_vocab), target_vocab_size=len(data.target_vocab))
        return config

    def default_config(self) -> dict[str, Any]:
        return {**super().default_config(), "beam_width": _DEFAULT_BEAM}

    def metrics(self) -> frozenset[str]:
        return frozenset({"train_loss", "val_loss", "token_accuracy", "wer", "per", "tokens_per_s"})

    def search_artifacts(self, config: Mapping[str, Any]) -> dict[str, str]:
        words = test_words(config["dataset"], config.get("tokens"))
        return {"test_words.txt": "".join(f"{word}\n" for word in words)}

    def load_data(self, config: Mapping[str, Any], smoke: bool) -> _TrialData:
        data = load_sequence_dataset(config["dataset"], config.get("tokens"))
        if smoke:
            data = data.subset(_SMOKE_TRAIN, _SMOKE_VAL, _SMOKE_TEST)
        train = _encode(data, data.train)
        limit = output_limit(train.pair_targets, config.get("max_len", Seq2SeqConfig.max_len))
        return _TrialData(data=data, train=train, val=_encode(data, data.val), test=_encode(data, data.test),
                          output_limit=limit)

    def build(self, run: EpochRun) -> TrialState:
        data, settings = run.data.data, run.settings
        # The smoke subset's vocabularies may be smaller than the full data's sizes in the config.
        model_config = Seq2SeqConfig(**{**vars(run.model_config), "source_vocab_size": len(data.source_vocab),
                                        "target_vocab_size": len(data.target_vocab)})
        run.model_config = model_config
        model = Seq2SeqTransformer(model_config).to(run.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                                      betas=(0.9, 0.98))
        steps_per_epoch = run.steps_per_epoch(len(run.data.train.pair_sources))
        schedule = warmup_cosine(settings.n_warmup_epochs * steps_per_epoch,
                                 settings.n_epochs * steps_per_epoch)
        return TrialState(model=model, optimizers={"main": optimizer},
                          schedulers={"main": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)},
                          extras={"source_vocab": data.source_vocab.to_json(),
                                  "target_vocab": data.target_vocab.to_json()})

    def _loss(self, run: EpochRun, sources: list[np.ndarray], targets: list[np.ndarray]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Mean label-smoothed loss per target token, the logits, the output ids (N, T), and how
        many of those are not PAD (counted on the host, before the ids go to the device)."""
        source = _padded(sources).to(run.device)
        target_in = _padded(targets, bos=True).to(run.device)  # BOS y1 .. yn
        target_out = _padded(targets, eos=True)  # y1 .. yn EOS
        n_tokens = int((target_out != PAD).sum())
        target_out = target_out.to(run.device)
        with run.autocast():
            logits = run.state.model(source, target_in)
        loss = F.cross_entropy(logits.float().flatten(0, 1), target_out.flatten(), ignore_index=PAD,
                               label_smoothing=run.model_config.label_smoothing)
        return loss, logits, target_out, n_tokens

    def train_epoch(self, run: EpochRun) -> dict[str, float]:
        train = run.data.train
        n = len(train.pair_sources)
        lengths = np.array([len(t) for t in train.pair_targets])
        rng = np.random.default_rng([run.settings.seed, run.epoch, 1])
        losses, n_pairs = LossMean(), 0  # weighted by target tokens
        for idx in length_batches(run.shuffled(n), lengths, run.batch_size, rng):
            loss, _, _, n_tokens = self._loss(run, [train.pair_sources[i] for i in idx],
                                              [train.pair_targets[i] for i in idx])
            run.step(loss)
            losses.add(loss, n_tokens)
            n_pairs += len(idx)
        return {"train_loss": losses.value(), "n_samples": float(n_pairs),
                "n_tokens": float(losses.total_weight)}

    def evaluate(self, run: EpochRun) -> dict[str, float]:
        val, model = run.data.val, run.state.model
        total, right, n_tokens = 0.0, 0, 0
        for start in range(0, len(val.pair_sources), _EVAL_BATCH):
            rows = slice(start, start + _EVAL_BATCH)
            loss, logits, target_out, _ = self._loss(run, val.pair_sources[rows], val.pair_targets[rows])
            real = target_out != PAD
            total += float(loss) * int(real.sum())
            right += int(((logits.argmax(-1) == target_out) & real).sum())
            n_tokens += int(real.sum())
        predictions = decode_all(model, val.sources, run.device, max_len=run.data.output_limit)
        wer, per = error_rates(predictions, val.references)
        run.evaluation = predictions
        metrics = {"val_loss": total / n_tokens, "token_accuracy": right / n_tokens, "wer": wer, "per": per}
        if run.epoch == run.settings.n_epochs:
            test = run.data.test
            decoded = decode_all(model, test.sources, run.device, self._beam(run), run.data.output_limit)
            test_wer, test_per = error_rates(decoded, test.references)
            metrics.update(test_wer=test_wer, test_per=test_per)
        return metrics

    def inference(self, run: EpochRun) -> tuple[nn.Module, Callable[[], Any]]:
        """The logged model decodes one validation word, by beam search of the trial's width."""
        source = _padded([run.data.val.sources[0]]).to(run.device)
        beam, limit = self._beam(run), run.data.output_limit
        model = run.state.model
        return model, (lambda: greedy_decode(model, source, limit) if beam == 1
                       else beam_search(model, source, beam, limit))

    def _beam(self, run: EpochRun) -> int:
        return int(run.config.get("beam_width", _DEFAULT_BEAM))

    def epoch_artifacts(self, run: EpochRun, folder: Path) -> None:
        data, val = run.data.data, run.data.val
        target_text = data.join_target
        path = folder / "decoded" / f"epoch-{run.epoch:04d}.csv"
        path.parent.mkdir(parents=True)
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["source", "references", "prediction", "right"])
            for source, refs, predicted in zip(val.split.sources[:_N_EXAMPLES], val.split.references,
                                               run.evaluation, strict=False):
                output = target_text(data.target_vocab.decode(predicted))
                references = [target_text(r) for r in refs]
                writer.writerow([data.join_source(source), " | ".join(references), output,
                                 "yes" if output in references else "no"])

    def save_model(self, run: EpochRun, folder: Path) -> None:
        from tuneforge.trainables.transformer.pyfunc import save_pyfunc

        save_pyfunc(run.state.model, run.data.data, self._beam(run), run.data.output_limit, folder,
                    example=[run.data.data.join_source(s) for s in run.data.val.split.sources[:2]])


TRANSFORMER = TransformerFamily()


def train_transformer(config: dict[str, Any]) -> None:
    """One Transformer trial: what Ray Tune runs."""
    run_trial(TRANSFORMER, config)
