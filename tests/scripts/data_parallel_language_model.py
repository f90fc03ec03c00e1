"""Train a small language model (2-layer LSTM, dropout between layers) on the built-in text on
1 device and on every host device (the streams split over them); print as one JSON line the
largest relative difference of the parameters and of the validation losses (run with
JAX_NUM_CPU_DEVICES=8). The run on every device is checkpointed mid-epoch; resuming it on the
mesh from there must give the same final state, byte for byte."""

import json
import shutil
import tempfile
from pathlib import Path

from plain_install import hide_torch  # beside this script

hide_torch()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.data.builtin_text import load_builtin_text  # noqa: E402
from jaxseq.models.language_model import LanguageModel  # noqa: E402
from jaxseq.train.checkpoint import list_checkpoints, read_metadata  # noqa: E402
from jaxseq.train.language_model import LMTrainConfig, train_language_model  # noqa: E402

corpus = load_builtin_text(num_train_chars=6_000, num_val_chars=1_000)
model = LanguageModel(vocab_size=len(corpus.vocab), embed_size=16, hidden_size=16, num_layers=2, hidden_dropout=0.1,
                      locked_dropout=True)
config = LMTrainConfig(epochs=2, batch_size=16, bptt=24, optimizer="sgd", learning_rate=2.0, clip_norm=0.5)
folder = Path(tempfile.mkdtemp())
results = {}
for devices in (1, jax.device_count()):
    checkpoints = folder / "straight" if devices > 1 else None
    results[devices] = train_language_model(model, corpus, config, progress=False, log=None, devices=devices,
                                            checkpoint_dir=checkpoints, checkpoint_every=5, keep=100)
middle = next(path for path in list_checkpoints(folder / "straight") if read_metadata(path)["metric"] is None)
middle_step = read_metadata(middle)["step"]
shutil.copytree(middle, folder / "resumed" / middle.name)
(folder / "straight" / "vocab.json").replace(folder / "resumed" / "vocab.json")
resumed = train_language_model(model, corpus, config, progress=False, log=None, devices=jax.device_count(),
                               checkpoint_dir=folder / "resumed", resume=True, checkpoint_every=5, keep=100)
last = [list_checkpoints(folder / run)[-1] / "state.msgpack" for run in ("straight", "resumed")]
resumed_identical = len(resumed.history) == 2 and last[0].read_bytes() == last[1].read_bytes()
shutil.rmtree(folder)
one, many = results[1], results[jax.device_count()]
differences = [float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))  # on the host: no op compiled
               for a, b in zip(*(jax.tree.leaves(jax.device_get(result.params)) for result in (one, many)))]
val = [[record["val_loss"] for record in result.history] for result in (one, many)]
print(json.dumps({"devices": jax.device_count(), "max_relative_difference": max(differences),
                  "max_val_loss_difference": float(np.max(np.abs(np.subtract(*val)))),
                  "resumed_from_step": middle_step,
                  "resumed_on_the_mesh_identical": resumed_identical}))
