"""A trained Transformer as an MLflow pyfunc model: strings in, strings out.

``mlflow.pyfunc.load_model("runs:/<run_id>/model").predict(["transformer", "tuneforge"])``
returns each input's output as a string: CMUdict's pronunciations as space-separated phones
(``"T R AE0 N S F AO1 R M ER0"``), a TSV's targets joined as they were tokenised. The folder holds
the weights (``weights.pt``) and everything else in one JSON file (``seq2seq.json``: the model
config, both vocabularies, the tokenisation, the beam width and the longest output), so its
vocabularies travel with it. Loading needs torch, MLflow and tuneforge installed (this module is
the model's code).

Written by the trial after its last epoch (:func:`save_pyfunc`), as its ``model`` artifact.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch

from tuneforge.trainables.transformer.data import EOS, SequenceData, Vocabulary, join, tokenise
from tuneforge.trainables.transformer.model import Seq2SeqConfig, Seq2SeqTransformer, beam_search

__all__ = ["Seq2SeqModel", "save_pyfunc"]

_WEIGHTS, _SPEC = "weights", "spec"


class Seq2SeqModel(mlflow.pyfunc.PythonModel):
    """What MLflow loads: the Transformer and its vocabularies, decoding by beam search on the CPU."""

    def load_context(self, context: Any) -> None:
        spec = json.loads(Path(context.artifacts[_SPEC]).read_text(encoding="utf-8"))
        self.source_vocab = Vocabulary.from_json(spec["source_vocab"])
        self.target_vocab = Vocabulary.from_json(spec["target_vocab"])
        self.source_tokens, self.target_tokens = spec["source_tokens"], spec["target_tokens"]
        self.lowercase, self.beam_width = spec["lowercase"], spec["beam_width"]
        self.output_limit = spec["output_limit"]
        self.model = Seq2SeqTransformer(Seq2SeqConfig(**spec["config"]))
        weights = torch.load(context.artifacts[_WEIGHTS], map_location="cpu", weights_only=True)
        self.model.load_state_dict(weights)
        self.model.eval()

    def predict(self, context: Any, model_input: list[str],
                params: dict[str, Any] | None = None) -> list[str]:
        """Each input string's most likely output (beam search), as a string."""
        if not model_input:
            return []
        ids = [self._source_ids(text) for text in model_input]
        source = torch.full((len(ids), max(map(len, ids))), 0, dtype=torch.long)
        for row, sequence in enumerate(ids):
            source[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        with torch.no_grad():
            output = beam_search(self.model, source, self.beam_width, self.output_limit).tolist()
        return [join(self.target_vocab.decode(row[:row.index(EOS)] if EOS in row else row),
                     self.target_tokens) for row in output]

    def _source_ids(self, text: str) -> list[int]:
        tokens = tokenise(text, self.source_tokens, lowercase=self.lowercase)
        if not tokens or len(tokens) > self.model.config.max_len:
            raise ValueError(f"input {text!r} has {len(tokens)} tokens; the model takes 1 to "
                             f"{self.model.config.max_len}")
        return self.source_vocab.encode(tokens)


def save_pyfunc(model: Seq2SeqTransformer, data: SequenceData, beam_width: int, output_limit: int,
                folder: Path, example: Sequence[str]) -> None:
    """Write ``model`` (its weights on the CPU) with ``data``'s vocabularies and tokenisation as an
    MLflow pyfunc model folder at ``folder``, decoding outputs of at most ``output_limit`` tokens by
    beam search of ``beam_width``, with ``example`` (source strings) as its input example."""
    with tempfile.TemporaryDirectory() as staging:
        weights, spec = Path(staging) / "weights.pt", Path(staging) / "seq2seq.json"
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, weights)
        spec.write_text(json.dumps({
            "config": dataclasses.asdict(model.config), "source_vocab": data.source_vocab.to_json(),
            "target_vocab": data.target_vocab.to_json(), "source_tokens": data.source_tokens,
            "target_tokens": data.target_tokens, "lowercase": data.lowercase, "beam_width": beam_width,
            "output_limit": output_limit},
            indent=1), encoding="utf-8")
        mlflow.pyfunc.save_model(str(folder), python_model=Seq2SeqModel(),
                                 artifacts={_WEIGHTS: str(weights), _SPEC: str(spec)},
                                 input_example=list(example),
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "mlflow",
                                                   "tuneforge"])
