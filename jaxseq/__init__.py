"""jaxseq: readable, verified and fast sequence models in JAX.

Sub-packages (imports point down only):
  jaxseq.layers  pure functions with hand-written backward passes (custom_vjp)
  jaxseq.nn      Flax linen RNN/LSTM/GRU stacks with PyTorch's semantics and weights
  jaxseq.nnx     the same stacks as Flax NNX modules (PyTorch's constructor; one implementation)
  jaxseq.models  Flax linen modules and decoding
  jaxseq.train   trainers, optimizers, checkpoints
  jaxseq.data    loaders, vocabularies, built-in data sets
  jaxseq.metrics, jaxseq.gradcheck, jaxseq.theory
"""

__version__ = "0.1.0"
