"""The largest sizes jaxseq accepts from a command line or a file, as plain data.

A size read from a checkpoint's `meta.json`, a vocabulary file or an option is checked
against these before anything is built from it, so a hostile or mistyped number gives a
one-line error instead of a MemoryError or an overflow deep inside NumPy or JAX. The
command line and the checkpoint checks use the same bounds: whatever a command trains can
be loaded again. Importable without JAX or NumPy (the parser uses it).
"""

MAX_SEED = 2**63 - 1  # random seeds: [0, MAX_SEED] (JAX keys take a signed 64-bit seed)
MAX_COUNT = 2**31 - 1  # epochs, steps and other counts (int32 on the device)
MAX_WIDTH = 65_536  # model widths: hidden, word vector, feed-forward, heads, keys, values,
#                     feature size D, tokens per sentence
MAX_BATCH_SIZE = 65_536  # examples per training step
MAX_VOCAB_SIZE = 1_000_000  # tokens in a vocabulary (and a model's vocab_size)
MAX_TRAIN_CAPTIONS = 1_000_000  # --max-train, and scenes per split of the built-in set
MAX_BUILTIN_FEATURE_VALUES = 2**28  # (train + val scenes) x feature size of the built-in set
MAX_BEAM_WIDTH = 100  # beam search keeps (captions x beam x vocabulary) scores at once
MAX_TEXT_BYTES = 256 * 2**20  # one text file of a language-model corpus: room for enwik8 and
#                               text8 (10^8 bytes each), not for WikiText-103's 540 MB; a corpus
#                               is held in memory as int32 ids (4 bytes per token: ~1 GiB at
#                               this bound at character level)
MAX_CHAR_VOCAB_SIZE = 20_000  # distinct characters of a character-level vocabulary: Chinese
#                               and Japanese text use under ~10,000; more is not text a
#                               character model should read (or a word-level corpus)
MAX_GENERATE_LENGTH = 100_000  # tokens `jaxseq lm generate` samples in one call (a book chapter; far more
#                               than any sample anyone reads, and minutes of CPU time)
