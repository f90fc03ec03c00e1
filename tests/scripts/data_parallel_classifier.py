"""Train a classifier on 1 device and on every host device; print the largest relative
difference of the parameters (run with JAX_NUM_CPU_DEVICES=8). The run on every device is
checkpointed; resuming it on the mesh from its first epoch's checkpoint must give the same
final state, byte for byte.

    python data_parallel_classifier.py ARCHITECTURE...    # transformer, lstm

One process for every architecture asked for (a process's start is much of a small run's
time); prints one JSON line, {architecture: report}."""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from plain_install import hide_torch  # beside this script

hide_torch()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.data.bracket_nesting import bracket_nesting_task  # noqa: E402
from jaxseq.data.vocabulary import Vocabulary  # noqa: E402
from jaxseq.models.classifiers import build_classifier  # noqa: E402
from jaxseq.train import ClassifierTrainConfig, train_classifier  # noqa: E402

splits = bracket_nesting_task(256, 64, 8, seed=0, max_pairs=6)
vocab = Vocabulary.build(splits.train.sentences)
train, _ = vocab.encode_labelled(splits.train, 14)
val, _ = vocab.encode_labelled(splits.val, 14)


def report(architecture: str) -> dict:
    """The comparisons of one architecture's runs on 1 device and on every device."""
    sizes = (dict(hidden_dim=16, num_heads=2, dim_k=8, dim_q=8, dim_v=8, dim_feedforward=32)
             if architecture == "transformer" else dict(embed_dim=16, hidden_size=16, num_layers=2, dropout=0.1))
    model = build_classifier(architecture, len(vocab), 14, **sizes)
    config = ClassifierTrainConfig(epochs=2, batch_size=32, learning_rate=3e-3)
    folder = Path(tempfile.mkdtemp())
    params = {}
    for devices in (1, jax.device_count()):
        checkpoints = folder / "straight" if devices > 1 else None
        result = train_classifier(model, train, val, config, progress=False, log=None, devices=devices,
                                  checkpoint_dir=checkpoints)
        params[devices] = result.params
    first_epoch = sorted((folder / "straight").glob("ckpt-*"))[0]
    shutil.copytree(first_epoch, folder / "resumed" / first_epoch.name)
    resumed = train_classifier(model, train, val, config, progress=False, log=None, devices=jax.device_count(),
                               checkpoint_dir=folder / "resumed", resume=True)
    last = [sorted((folder / run).glob("ckpt-*"))[-1] / "state.msgpack" for run in ("straight", "resumed")]
    resumed_identical = len(resumed.history) == 2 and last[0].read_bytes() == last[1].read_bytes()
    shutil.rmtree(folder)
    # The key projection's bias gets an exactly-zero gradient (adding q.b_k to every score of a
    # query leaves its softmax unchanged), so Adam turns rounding noise into steps there: it is
    # compared through the model's outputs, not as a parameter.
    differences = {
        jax.tree_util.keystr(path): float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(params[1])),
                                jax.tree_util.tree_leaves(jax.device_get(params[jax.device_count()])))
    }
    differences.pop("['k_proj']['bias']", None)
    # One compiled program for both runs' outputs (both sets of parameters on the host), not an
    # op-by-op evaluation that compiles every operation of the model.
    logits_of = jax.jit(lambda p: model.apply({"params": p}, val.ids, val.ids != 0, method="logits"))
    logits = [np.asarray(logits_of(jax.device_get(p))) for p in params.values()]
    return {"devices": jax.device_count(), "max_relative_difference": max(differences.values()),
            "max_logit_difference": float(np.max(np.abs(logits[0] - logits[1]))),
            "resumed_on_the_mesh_identical": resumed_identical}


print(json.dumps({architecture: report(architecture) for architecture in sys.argv[1:]}))
