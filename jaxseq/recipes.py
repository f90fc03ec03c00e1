"""Measured training recipes, as plain data: importable without JAX, so the command line
can show them as option defaults without loading JAX (or NumPy) to build its parser."""

# The recipe that reached the CoLA MCC targets with the seed architecture (hidden
# 128, 2 heads of 96, FFN 2048); `benchmarks/cola_quality.py` measures it ("seed"), and it
# is what `jaxseq cola train` / `classify train` use by default.
COLA_RECIPE = dict(
    min_count=3,
    model=dict(dropout=0.1),
    train=dict(epochs=30, batch_size=16, learning_rate=1e-4, weight_decay=0.01, label_smoothing=0.1,
               schedule="cosine", warmup_epochs=1.0, patience=10),
)
