"""The seq2seq Transformer's bar (issue 10): it learns CMUdict, and the Tune wrapper costs little.

Two measurements, each printed as Markdown for BENCHMARKS.md:

``search``    ``tuneforge search transformer-cmudict`` (``--algo``, ``--trials``, ``--scheduler``);
              the best trial's logged MLflow pyfunc model, loaded back, scored on the parent run's
              ``test_words.txt`` (the held-out words, each right if it equals any of its CMUdict
              pronunciations): word and phoneme error rates, beside what the trial itself reported.
``score``     the same for a search kept with ``--keep`` (one interrupted too): its best trial
              that finished.
``overhead``  target tokens/s of a trial under tuneforge (Ray Tune, MLflow, checkpoints, decoded
              examples) against the same model, data, batches and threads in a plain PyTorch loop,
              alternating, ``--repeats`` times, in one invocation.
``decoding``  words/s of greedy decoding and of beam search (``--beam``) of ``--words`` test words
              with the key/value cache against without it (re-running the decoder over the prefix
              at every step), alternating, ``--repeats`` times, in one invocation; the default
              model trained ``--steps`` steps on CMUdict first, so that its outputs end as a
              trained model's do. Both sides must decode the same words.

    .venv/bin/python benchmarks/transformer.py search --algo bayes --trials 6 --scheduler asha
    .venv/bin/python benchmarks/transformer.py score --keep FOLDER     # a search kept with --keep
    .venv/bin/python benchmarks/transformer.py overhead --repeats 3 --train 20000 --epochs 4
    .venv/bin/python benchmarks/transformer.py decoding --repeats 3 --words 1000 --beam 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    alternate,
    machine,
    metric_history,
    rate_comparison,
    search_in_folder,
    tracking_uri_in,
    trial_rate_per_s,
    with_epochs,
)

from tuneforge.search_spaces import CategoricalParam, load_space


def score_logged_model(tracking_uri: str, parent_run_id: str, model_uri: str) -> tuple[float, float, int]:
    """(WER, PER, words) of a logged pyfunc model on its search's parent run's test words."""
    import mlflow
    from mlflow import MlflowClient

    from tuneforge.trainables.transformer.data import load_sequence_dataset
    from tuneforge.trainables.transformer.trainable import error_rates

    client = MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        words = Path(client.download_artifacts(parent_run_id, "test_words.txt", tmp)).read_text()
    words = words.split()
    data = load_sequence_dataset("cmudict")
    references = {"".join(source): refs for source, refs in zip(data.test.sources, data.test.references,
                                                                strict=True)}
    model = mlflow.pyfunc.load_model(model_uri)
    by_length = sorted(words, key=len)
    predicted = {}
    for start in range(0, len(by_length), 256):
        chunk = by_length[start:start + 256]
        predicted.update(zip(chunk, model.predict(chunk), strict=True))
    vocab = data.target_vocab
    wer, per = error_rates([vocab.encode(predicted[w].split()) for w in words],
                           [[vocab.encode(r) for r in references[w]] for w in words])
    return wer, per, len(words)


def search(args: argparse.Namespace) -> None:
    space = with_epochs(load_space("transformer-cmudict"), args.epochs)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="transformer-bench-"))
    started = time.perf_counter()
    options = {"scheduler": args.scheduler}
    if args.grace_period:
        options["grace_period"] = args.grace_period
    result = search_in_folder(space, folder, args.cpus, algo=args.algo, trials=args.trials, seed=args.seed,
                              **options)
    wall = time.perf_counter() - started
    wer, per, n_words = score_logged_model(result.tracking_uri, result.parent_run_id, result.model_uri)
    epochs = sum(int(t.metrics.get("epoch", 0)) for t in result.trials)
    best = result.best
    print(f"\n## transformer-cmudict: a {args.algo} search ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/transformer.py search --algo {args.algo} --trials "
          f"{args.trials} --seed {args.seed} --scheduler {args.scheduler}"
          f"{f' --grace-period {args.grace_period}' if args.grace_period else ''}"
          f"{f' --epochs {args.epochs}' if args.epochs else ''} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- budget: {len(result.trials)} trials, {epochs} epochs in all, {args.cpus:g} CPUs a trial, "
          f"wall {wall / 60:.1f} min (results kept in {folder}); the search {result.status.value}")
    for rank, trial in enumerate(result.ranked()[:6], 1):
        print(f"  {rank}. wer {trial.metrics['wer']:.4f} per {trial.metrics['per']:.4f} after "
              f"{int(trial.metrics['epoch'])} epochs: {trial.params}")
    print(f"- best trial's validation wer per epoch: "
          f"{', '.join(f'{v:.3f}' for v in metric_history(result.tracking_uri, best.run_id, 'wer'))}")
    nan = float("nan")
    print(f"- best trial's own test numbers (beam search, last epoch): wer "
          f"{best.metrics.get('test_wer', nan):.4f}, per {best.metrics.get('test_per', nan):.4f}")
    print(f"- **its logged MLflow model on the parent run's {n_words} test words: WER {wer:.4f}, "
          f"PER {per:.4f}** "
          f"(bar: WER <= 0.30, PER <= 0.08)")


def score(args: argparse.Namespace) -> None:
    """The best finished trial of the search kept in ``--keep`` (one that was interrupted, too):
    its own numbers and its logged model's on the test words."""
    from mlflow import MlflowClient

    tracking_uri = tracking_uri_in(Path(args.keep))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("transformer-cmudict")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r is not parent]
    with_model = [r for r in trials if "test_wer" in r.data.metrics]
    best = min(with_model, key=lambda r: r.data.metrics["wer"])
    model_uri = f"runs:/{best.info.run_id}/model"
    wer, per, n_words = score_logged_model(tracking_uri, parent.info.run_id, model_uri)
    epochs = sum(int(r.data.metrics.get("epoch", 0)) for r in trials)
    print(f"\n## transformer-cmudict: the search in {args.keep}, parent run {parent.info.status} "
          f"({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/transformer.py score --keep {args.keep}`")
    print(f"- machine: {machine('torch')}")
    print(f"- budget: {len(trials)} trials, {epochs} epochs in all")
    for trial in sorted(trials, key=lambda r: r.data.metrics.get("wer", 1.0)):
        history = metric_history(tracking_uri, trial.info.run_id, "wer")
        print(f"  - {trial.info.run_name} ({trial.data.tags.get('tuneforge.status', trial.info.status)}): "
              f"wer per epoch {', '.join(f'{v:.3f}' for v in history)}")
    print(f"- best finished trial {best.info.run_name}: its own test numbers (beam search): "
          f"wer {best.data.metrics['test_wer']:.4f}, per {best.data.metrics['test_per']:.4f}")
    print(f"- **its logged MLflow model on the parent run's {n_words} test words: WER {wer:.4f}, "
          f"PER {per:.4f}** (bar: WER <= 0.30, PER <= 0.08)")


def _plain_model(settings: Any, model_config: Any, n_pairs: int, n_epochs: int) -> tuple[Any, Any, Any]:
    """The default model (seeded), AdamW and the loop's warm-up-cosine schedule over ``n_epochs``."""
    import torch

    from tuneforge.trainables.torch.loop import warmup_cosine
    from tuneforge.trainables.transformer.model import Seq2SeqTransformer

    torch.manual_seed(settings.seed)
    model = Seq2SeqTransformer(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                                  betas=(0.9, 0.98))
    steps = -(-n_pairs // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(settings.warmup_epochs * steps, n_epochs * steps))
    return model, optimizer, scheduler


def _plain_pass(model: Any, optimizer: Any, scheduler: Any, train: Any, settings: Any, epoch: int,
                max_steps: int | None = None) -> int:
    """One training pass (at most ``max_steps`` batches) over the encoded pairs ``train`` in the
    trainable's length batches; the target tokens trained."""
    import torch
    from torch.nn import functional as F

    from tuneforge.trainables.transformer.data import PAD
    from tuneforge.trainables.transformer.trainable import _padded, length_batches

    model.train()
    n = len(train.pair_sources)
    order = np.random.default_rng([settings.seed, epoch]).permutation(n)
    lengths = np.array([len(t) for t in train.pair_targets])
    rng = np.random.default_rng([settings.seed, epoch, 1])
    tokens = 0
    for step, idx in enumerate(length_batches(order, lengths, settings.batch_size, rng)):
        if max_steps is not None and step >= max_steps:
            break
        source = _padded([train.pair_sources[i] for i in idx])
        target_in = _padded([train.pair_targets[i] for i in idx], bos=True)
        target_out = _padded([train.pair_targets[i] for i in idx], eos=True)
        loss = F.cross_entropy(model(source, target_in).flatten(0, 1), target_out.flatten(),
                               ignore_index=PAD, label_smoothing=model.config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        tokens += int((target_out != PAD).sum())
    return tokens


def _plain_epochs(data: Any, settings: Any, model_config: Any, n_epochs: int) -> float:
    """Target tokens/s of the same model, optimiser, schedule and batches in a plain PyTorch loop,
    each epoch a training pass and the same validation (loss, greedy decoding); epoch 1 (warm-up)
    is not counted."""
    import torch

    from tuneforge.trainables.transformer.trainable import (
        _encode,
        _padded,
        decode_all,
        error_rates,
        output_limit,
    )

    train, val = _encode(data, data.train), _encode(data, data.val)
    model, optimizer, scheduler = _plain_model(settings, model_config, len(train.pair_sources), n_epochs)
    limit = output_limit(train.pair_targets, model_config.max_len)
    seconds, tokens = [], 0
    for epoch in range(1, n_epochs + 1):
        started = time.perf_counter()
        tokens = _plain_pass(model, optimizer, scheduler, train, settings, epoch)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(val.pair_sources), 512):
                rows = slice(start, start + 512)
                model(_padded(val.pair_sources[rows]), _padded(val.pair_targets[rows], bos=True))
            error_rates(decode_all(model, val.sources, torch.device("cpu"), max_len=limit), val.references)
        seconds.append(time.perf_counter() - started)
    return tokens / statistics.median(seconds[1:])


def overhead(args: argparse.Namespace) -> None:
    """Both sides train on the same TSV of --train CMUdict pairs (a user's file, so the trial reads
    exactly what the plain loop does), threads = --cpus, --epochs epochs, the space's defaults."""
    import torch

    from tuneforge.trainables.torch.loop import TrainSettings, split_config
    from tuneforge.trainables.transformer import TRANSFORMER
    from tuneforge.trainables.transformer.data import load_sequence_dataset

    cmudict = load_sequence_dataset("cmudict")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tsv = folder / "pairs.tsv"
        pairs = cmudict.train.pairs()[:args.train]
        tsv.write_text("".join(f"{''.join(s)}\t{' '.join(t)}\n" for s, t in pairs), encoding="utf-8")
        config = {"dataset": {"tsv": str(tsv)}, "tokens": {"source": "chars", "target": "words"},
                  "epochs": args.epochs, "beam_width": 1}
        space = dataclasses.replace(load_space("transformer-cmudict"), config=config,
                                    params=(CategoricalParam("seed", (0,)),), source=None)
        data = load_sequence_dataset(config["dataset"], config["tokens"])
        prepared = TRANSFORMER.prepare(dict(config), None)
        settings, model_config = split_config(TRANSFORMER, {**prepared, "seed": 0})
        assert isinstance(settings, TrainSettings)
        torch.set_num_threads(int(args.cpus))
        n_tokens = sum(len(t) + 1 for _, t in data.train.pairs())  # target tokens an epoch, EOS included

        def tuned_side(repeat: int) -> float:
            # training, validation, checkpoint, decoded examples and report: the trial's whole epochs
            result = search_in_folder(space, folder / f"r{repeat}", args.cpus, algo="grid", seed=0)
            return trial_rate_per_s(result, n_tokens)

        plain, tuned = alternate(args.repeats,
                                 lambda _: _plain_epochs(data, settings, model_config, args.epochs),
                                 tuned_side)
    print(f"\n## Transformer trial under tuneforge vs a plain PyTorch loop ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/transformer.py overhead --repeats {args.repeats} "
          f"--train {args.train} --epochs {args.epochs} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- data: {len(data.train.pairs())} CMUdict training pairs (of the first {args.train}, as a TSV); "
          f"the default model (width {model_config.width}, {model_config.encoder_layers}+"
          f"{model_config.decoder_layers} layers), batch {settings.batch_size}; "
          f"{int(args.cpus)} torch threads on both sides; each epoch a training pass, the validation loss "
          f"and greedy decoding of the validation words")
    print(rate_comparison(tuned, plain, "target tokens/s"))


def decoding(args: argparse.Namespace) -> None:
    """Cached against uncached decoding of the same test words by the same briefly trained model,
    greedy and beam search, threads = --cpus."""
    import torch

    from tuneforge.trainables.torch.loop import TrainSettings, split_config
    from tuneforge.trainables.transformer import TRANSFORMER
    from tuneforge.trainables.transformer.data import load_sequence_dataset
    from tuneforge.trainables.transformer.trainable import _encode, decode_all, output_limit

    torch.set_num_threads(int(args.cpus))
    data = load_sequence_dataset("cmudict")
    prepared = TRANSFORMER.prepare({"dataset": "cmudict"}, None)
    settings, model_config = split_config(TRANSFORMER, {**prepared, "seed": 0})
    assert isinstance(settings, TrainSettings)
    train = _encode(data, data.train)
    model, optimizer, scheduler = _plain_model(settings, model_config, len(train.pair_sources), 1)
    started = time.perf_counter()
    _plain_pass(model, optimizer, scheduler, train, settings, epoch=1, max_steps=args.steps)
    print(f"trained {args.steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    model.eval()
    sources = _encode(data, data.test).sources[:args.words]
    limit = output_limit(train.pair_targets, model_config.max_len)
    lines = []
    for beam in (1, args.beam):
        outputs: dict[bool, list[list[int]]] = {}

        def words_per_s(cache: bool, beam: int = beam, outputs: dict = outputs) -> float:
            started = time.perf_counter()
            outputs[cache] = decode_all(model, sources, torch.device("cpu"), beam, limit, cache=cache)
            return len(sources) / (time.perf_counter() - started)

        uncached, cached = alternate(args.repeats, lambda _: words_per_s(False), lambda _: words_per_s(True))
        # float32 rounds the two paths' sums differently: a near tie may rarely go the other way
        differ = sum(a != b for a, b in zip(outputs[True], outputs[False], strict=True))
        ratio = statistics.median(cached) / statistics.median(uncached)
        name = "greedy" if beam == 1 else f"beam width {beam}"
        lines += [f"- {name}, with the cache, words/s: {_rates(cached)}",
                  f"- {name}, without (the prefix re-run), words/s: {_rates(uncached)}",
                  f"- {name}: **ratio of medians {ratio:.2f}x**; outputs differ on {differ} of "
                  f"{len(sources)} words"]
    print(f"\n## Transformer decoding with a key/value cache against without ({time.strftime('%Y-%m-%d')})\n")
    print(f"- command: `.venv/bin/python benchmarks/transformer.py decoding --repeats {args.repeats} "
          f"--words {args.words} --beam {args.beam} --steps {args.steps} --cpus {args.cpus:g}`")
    print(f"- machine: {machine('torch')}")
    print(f"- model: the default (width {model_config.width}, {model_config.encoder_layers}+"
          f"{model_config.decoder_layers} layers), trained {args.steps} steps of batch "
          f"{settings.batch_size}; "
          f"the first {len(sources)} CMUdict test words, batches of similar length, outputs of at most "
          f"{limit} tokens; {int(args.cpus)} torch threads")
    print("\n".join(lines))


def _rates(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    handlers = (("search", search), ("score", score), ("overhead", overhead), ("decoding", decoding))
    for name, handler in handlers:
        command = commands.add_parser(name)
        command.set_defaults(handler=handler)
        command.add_argument("--epochs", type=int, help="override the space's epochs")
        command.add_argument("--cpus", type=float, default=2.0, help="CPUs (and torch threads) a trial")
        if name == "score":
            command.add_argument("--keep", required=True, help="the folder a search kept")
        if name == "search":
            command.add_argument("--algo", default="bayes")
            command.add_argument("--trials", type=int, default=6)
            command.add_argument("--seed", type=int, default=0)
            command.add_argument("--scheduler", default="asha")
            command.add_argument("--grace-period", type=int)
            command.add_argument("--keep", help="keep the MLflow store and Ray results in this folder")
        if name in ("overhead", "decoding"):
            command.add_argument("--repeats", type=int, default=3)
        if name == "overhead":
            command.add_argument("--train", type=int, default=20_000)
        if name == "decoding":
            command.add_argument("--words", type=int, default=1000, help="test words decoded a side")
            command.add_argument("--beam", type=int, default=5, help="beam width (besides greedy)")
            command.add_argument("--steps", type=int, default=1500, help="training steps before decoding")
    args = parser.parse_args()
    if args.command == "overhead" and not args.epochs:
        args.epochs = 4
    args.handler(args)


if __name__ == "__main__":
    main()
