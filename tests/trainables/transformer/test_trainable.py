"""The transformer family: its checks before a search, its metrics, and real ``--smoke`` searches
on a local Ray with a real MLflow store (CMUdict, and a user's TSV), down to the logged model."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

import tuneforge
from tests.conftest import parent_and_children, write_space
from tuneforge.dashboards import REPORT_ARTIFACT
from tuneforge.errors import ConfigError
from tuneforge.schema import TrialStatus
from tuneforge.search_spaces import load_space
from tuneforge.trainables import get_trainable
from tuneforge.trainables.torch.loop import split_config
from tuneforge.trainables.transformer import TRANSFORMER
from tuneforge.trainables.transformer.data import load_sequence_dataset
from tuneforge.trainables.transformer.trainable import error_rates


def _space(**config):
    space = load_space("transformer-cmudict")
    return dataclasses.replace(space, config={**space.config, **config})


def test_prepare_fills_the_vocabulary_sizes_from_the_training_split() -> None:
    config = get_trainable("transformer").prepare(load_space("transformer-cmudict"))
    assert config["target_vocab_size"] == 69 + 4, "69 phones with stress digits, and PAD BOS EOS UNK"
    assert 30 <= config["source_vocab_size"] <= 40, "letters, apostrophe, dot, hyphen and the specials"
    settings, model = split_config(TRANSFORMER, {**config, "width": 160, "heads": 8})
    assert (settings.epochs, settings.lr, settings.batch_size) == (10, 1e-3, 64)
    assert (model.width, model.heads, model.encoder_layers) == (160, 8, 3)


BAD = {
    "unknown setting": (_space(colour="red"), "'colour' is not a setting of trainable 'transformer'"),
    "derived setting": (_space(target_vocab_size=10), "'target_vocab_size' is not a setting"),
    "no dataset": (dataclasses.replace(load_space("transformer-cmudict"), config={"epochs": 2}),
                   "config.dataset: missing"),
    "beam width zero": (_space(beam_width=0), "config.beam_width: 0 is not allowed"),
    "tokens for cmudict": (_space(tokens="words"), "config.tokens"),
    "width not divisible by a searched heads choice": (_space(width=100), "is not divisible by heads"),
}


@pytest.mark.parametrize(("space", "message"), BAD.values(), ids=BAD.keys())
def test_prepare_refuses_bad_settings_with_one_line(space, message: str) -> None:
    if "width" in space.config:  # width is searched in the bundled space: fix it instead
        space = dataclasses.replace(space, params=tuple(p for p in space.params if p.name != "width"))
    with pytest.raises(ConfigError, match=message) as caught:
        get_trainable("transformer").prepare(space)
    assert "\n" not in str(caught.value)


def test_error_rates_count_a_source_right_when_it_matches_any_reference() -> None:
    references = [[[5, 6, 7], [5, 8, 7]], [[9, 9]], [[4, 5, 6, 7]]]
    predictions = [[5, 8, 7], [9], [4, 6, 6]]  # right; one deletion; a substitution and a deletion
    wer, per = error_rates(predictions, references)
    assert wer == pytest.approx(2 / 3)
    assert per == pytest.approx((0 + 1 + 2) / (3 + 2 + 4))


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_smoke_search_logs_each_epoch_decoded_examples_and_a_model_that_pronounces(
        smoke_search, tmp_path: Path) -> None:
    import mlflow

    searched = smoke_search("transformer-cmudict")
    result, tracking_uri = searched.result, searched.tracking_uri
    parent, children = parent_and_children(tracking_uri, "transformer-cmudict")
    client = MlflowClient(tracking_uri)
    assert result.status is TrialStatus.FINISHED and len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        for metric in ("wer", "per", "token_accuracy", "val_loss"):
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == [1, 2], f"{metric}: one value per epoch"
        metrics = child.data.metrics
        assert 0 <= metrics["wer"] <= 1 and metrics["per"] >= 0 and 0 <= metrics["token_accuracy"] <= 1
        assert {"test_wer", "test_per", "tokens_per_s"} <= set(metrics)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "test_wer")] == [2]
        assert _artifacts(client, child.info.run_id, "decoded") == {"decoded/epoch-0001.csv",
                                                                   "decoded/epoch-0002.csv"}
        table = Path(client.download_artifacts(child.info.run_id, "decoded/epoch-0002.csv", str(tmp_path)))
        rows = list(csv.DictReader(table.open(encoding="utf-8")))
        assert len(rows) == 20 and set(rows[0]) == {"source", "references", "prediction", "right"}
        assert all(r["right"] == ("yes" if r["prediction"] in r["references"].split(" | ") else "no")
                   for r in rows)
    # The report the search logged shows the best trial's decoded words of its last epoch.
    page = Path(client.download_artifacts(parent.info.run_id, REPORT_ARTIFACT, str(tmp_path))).read_text()
    assert "<h3>Best trial: decoded/epoch-0002.csv</h3>" in page
    assert "<tr><th>source</th><th>references</th><th>prediction</th><th>right</th></tr>" in page
    # The held-out words, on the parent run, one a line: the full test split, not the smoke subset.
    words = Path(client.download_artifacts(parent.info.run_id, "test_words.txt", str(tmp_path))).read_text()
    expected = load_sequence_dataset("cmudict").test
    assert words.splitlines() == ["".join(source) for source in expected.sources]
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    pronunciations = model.predict(["transformer", "Tuneforge"])
    phones = set(load_sequence_dataset("cmudict").target_vocab.symbols[4:])
    assert len(pronunciations) == 2 and all(isinstance(p, str) for p in pronunciations)
    assert all(set(p.split()) <= phones for p in pronunciations), pronunciations


TSV = "".join(f"{word}\t{word[::-1]}\n" for word in
              ("abc", "bca", "cab", "abcd", "dcba", "bad", "dab", "cad", "add", "dad", "bb", "cc"))
TSV_SPACE = """\
trainable: transformer
metric: per
mode: min
config:
  dataset: {tsv: pairs.tsv}
  tokens: chars
  epochs: 2
  width: 32
  heads: 2
  encoder_layers: 1
  decoder_layers: 1
  beam_width: 2
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}
"""


def test_a_search_on_users_tsv_pairs_learns_on_them_and_its_model_outputs_their_alphabet(
        ray_local, tracking_uri: str, tmp_path: Path) -> None:
    import mlflow

    (tmp_path / "pairs.tsv").write_text(TSV, encoding="utf-8")
    space = write_space(tmp_path, TSV_SPACE)
    result = tuneforge.search(space, algo="random", trials=1, seed=0, tracking_uri=tracking_uri,
                              storage=tmp_path / "ray")
    assert result.status is TrialStatus.FINISHED
    parent, [child] = parent_and_children(tracking_uri, "space")
    assert child.info.status == "FINISHED" and child.data.metrics["per"] >= 0
    assert json.loads(parent.data.params["config.dataset"]) == {"tsv": str(tmp_path / "pairs.tsv")}
    mlflow.set_tracking_uri(tracking_uri)
    [output] = mlflow.pyfunc.load_model(result.model_uri).predict(["abd"])
    assert set(output) <= set("abcd"), output


def test_the_pyfunc_model_outputs_what_its_network_decodes_with_its_own_vocabularies(tmp_path: Path) -> None:
    """Saved and loaded back: lower-cased CMUdict words in, the beam search's phones out, joined by
    spaces; an input the model cannot take is refused naming it."""
    import mlflow
    import torch

    from tuneforge.trainables.transformer.model import Seq2SeqConfig, Seq2SeqTransformer, beam_search
    from tuneforge.trainables.transformer.pyfunc import save_pyfunc

    data = load_sequence_dataset("cmudict").subset(50, 5, 5)
    torch.manual_seed(0)
    network = Seq2SeqTransformer(Seq2SeqConfig(source_vocab_size=len(data.source_vocab), width=32, heads=2,
                                               target_vocab_size=len(data.target_vocab), encoder_layers=1,
                                               decoder_layers=1, max_len=12)).eval()
    save_pyfunc(network, data, beam_width=3, output_limit=8, folder=tmp_path / "model", example=["cat"])
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    words = ["cat", "Dog", "transformer"]
    expected = []
    for word in words:
        source = torch.tensor([data.source_vocab.encode(list(word.lower()))])
        ids = beam_search(network, source, 3, max_len=8)[0].tolist()
        expected.append(" ".join(data.target_vocab.decode(ids)))
    assert loaded.predict(words) == expected
    with pytest.raises(ValueError, match="has 13 tokens; the model takes 1 to 12"):
        loaded.predict(["a" * 13])
