"""Run `jaxseq ARGS...` as a plain install of jaxseq runs it, without the torch extra:

    python tests/scripts/plain_install.py ARGS...

The test environment has torch (for the PyTorch twins and the benchmarks), and tensorboardX,
which the run log writes its event files with, imports torch whenever it can: about 2 s of
CPU at every start of a training command, a third of a small run's. A user's plain
`pip install jaxseq` has no torch. The tests' child processes that train only to be
interrupted run as that install does; `hide_torch()` is what the other scripts here call
first for the same reason.
"""

import sys


def hide_torch() -> None:
    """Make `import torch` fail with ImportError in this process, as where it is not installed."""
    sys.modules["torch"] = None  # type: ignore[assignment]


if __name__ == "__main__":
    hide_torch()
    from jaxseq import cli

    sys.exit(cli.main(sys.argv[1:]))
