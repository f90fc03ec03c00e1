"""Errors of a 4-device mesh (run with JAX_NUM_CPU_DEVICES=4). Prints one JSON line."""

import json

from jaxseq.train.parallel import DataParallel

parallel = DataParallel.create()
try:
    parallel.check_batch_size(10)
    error = None
except ValueError as exc:
    error = str(exc)
print(json.dumps({"error": error}))
