"""Training data: synthetic tasks with known mechanisms, text corpora, file loaders and tokenizers.

Every task yields a finite list of examples of one fixed length (``seq_len`` tokens, ``<bos>``
first, ``<pad>`` after the end), so training draws batches from a known set and training-data
attribution is well defined. Synthetic tasks use a word-level tokenizer over made-up words; text
uses a byte-level BPE tokenizer trained on the corpus with the ``tokenizers`` library.

Tasks:

* ``induction``: a random block of 4–31 tokens repeated to fill the sequence; predicting the
  repeats needs an induction head (a random repeat length stops position shortcuts).
* ``copy``: a random block, ``=``, the same block again.
* ``recall``: eight key–value pairs, ``?``, a key from them and its value.
* ``text``: a corpus cut into chunks: files (``.txt``, ``.jsonl`` with a ``text`` field,
  ``.parquet`` with a ``text`` column, or a folder of them), the bundled ``python-docs`` corpus
  (the standard library's ``pydoc_data`` topics, ~65k words of public documentation), or
  ``default-model[:N]``: N (default 32) texts of 128 tokens sampled from whyllm's default model,
  Gemma 3 270M.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from whyllm.errors import InputError, UnknownMethodError

__all__ = [
    "SPECIALS",
    "TASKS",
    "Dataset",
    "bundled_corpus",
    "make_dataset",
    "read_texts",
    "text_tokenizer",
    "word_tokenizer",
]

TASKS = ("induction", "copy", "recall", "text")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0..3 in every tokenizer whyllm trains
PAD, BOS, EOS, UNK = 0, 1, 2, 3
N_WORDS = 62  # vocabulary of the synthetic tasks (the induction recipe's)
MIN_BLOCK, MAX_BLOCK = 4, 31
N_PAIRS, N_KEYS = 8, 26
CORPORA = ("python-docs", "default-model")
_OPENERS = (
    "Once upon a time",
    "The history of the city",
    "In the morning, she",
    "Scientists have found that",
    "The recipe calls for",
    "He opened the door and",
    "The best way to learn",
    "Dear friend,",
    "The river ran",
    "In 1905,",
    "The old man said",
    "Our team",
    "The weather today",
    "It was late when",
    "The first rule of",
    "Every child knows",
)


@dataclass(frozen=True)
class Dataset:
    """A finite training set and a held-out set, tokenized, with the tokenizer that made them.

    Attributes:
        examples: token id lists, each ``seq_len`` long (``<bos>`` first, ``<pad>`` at the end).
        eval_examples: held-out examples made the same way (never trained on).
        tokenizer: a ``PreTrainedTokenizerFast``.
        info: how the data was made (recorded in ``run.json``).
    """

    examples: list[list[int]]
    eval_examples: list[list[int]]
    tokenizer: object
    info: dict

    def text(self, ids: Sequence[int]) -> str:
        """Readable text of an example (padding dropped)."""
        return self.tokenizer.decode([i for i in ids if i != PAD], skip_special_tokens=False)


def _fast(tok) -> object:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def _with_bos(tok) -> None:
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS)])


def word_tokenizer(words: Sequence[str]):
    """Word-level tokenizer: the special tokens (ids 0–3), then ``words`` split on whitespace."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    _with_bos(tok)
    return _fast(tok)


def text_tokenizer(texts: Sequence[str], vocab_size: int = 2048):
    """Byte-level BPE tokenizer trained on ``texts`` (special tokens first, ``<bos>`` prepended)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    _with_bos(tok)
    return _fast(tok)


# ---- synthetic tasks ------------------------------------------------------------------------------
def _induction(rng: random.Random, seq_len: int) -> list[int]:
    n = seq_len - 1
    block = [rng.randrange(N_WORDS) + len(SPECIALS) for _ in range(rng.randint(MIN_BLOCK, MAX_BLOCK))]
    return [BOS] + (block * (n // len(block) + 1))[:n]


def _copy(rng: random.Random, seq_len: int) -> list[int]:
    sep = len(SPECIALS) + N_WORDS
    block = [rng.randrange(N_WORDS) + len(SPECIALS) for _ in range(rng.randint(MIN_BLOCK, MAX_BLOCK))]
    ids = [BOS, *block, sep, *block, EOS]
    return ids + [PAD] * (seq_len - len(ids))


def _recall(rng: random.Random, seq_len: int) -> list[int]:
    key0 = len(SPECIALS) + 1  # after "?"
    val0 = key0 + N_KEYS
    keys = rng.sample(range(N_KEYS), N_PAIRS)
    values = [rng.randrange(N_KEYS) for _ in keys]
    q = rng.randrange(N_PAIRS)
    ids = [BOS] + [t for k, v in zip(keys, values, strict=True) for t in (key0 + k, val0 + v)]
    ids += [len(SPECIALS), key0 + keys[q], val0 + values[q], EOS]
    return ids + [PAD] * (seq_len - len(ids))


_SYNTHETIC = {
    "induction": (_induction, 65, [f"w{i:02d}" for i in range(N_WORDS)]),
    "copy": (_copy, 2 * MAX_BLOCK + 3, [*(f"w{i:02d}" for i in range(N_WORDS)), "="]),
    "recall": (
        _recall,
        2 * N_PAIRS + 5,
        ["?", *(f"k{i:02d}" for i in range(N_KEYS)), *(f"v{i:02d}" for i in range(N_KEYS))],
    ),
}
_MIN_LEN = {"induction": 2 * MAX_BLOCK + 2, "copy": 2 * MAX_BLOCK + 3, "recall": 2 * N_PAIRS + 5}


def _synthetic(task: str, n: int, n_eval: int, seed: int, seq_len: int | None) -> Dataset:
    make, default_len, words = _SYNTHETIC[task]
    seq_len = seq_len or default_len
    if seq_len < _MIN_LEN[task]:
        raise InputError(f"seq_len {seq_len} is too short for the {task} task; use at least {_MIN_LEN[task]}")
    rng, held = random.Random(seed), random.Random(seed + 1_000_003)
    info = {
        "kind": "synthetic",
        "task": task,
        "vocabulary": len(words),
        "seq_len": seq_len,
        "generator": f"random.Random(seed={seed}); held-out set random.Random({seed + 1_000_003})",
    }
    return Dataset(
        [make(rng, seq_len) for _ in range(n)],
        [make(held, seq_len) for _ in range(n_eval)],
        word_tokenizer(words),
        info,
    )


# ---- text -------------------------------------------------------------------------------------
def bundled_corpus(name: str = "python-docs") -> list[str]:
    """Documents of a corpus that ships with Python (no download)."""
    if name != "python-docs":
        raise UnknownMethodError("corpus", name, list(CORPORA))
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def model_corpus(n_docs: int = 32, *, new_tokens: int = 128, seed: int = 0, model=None) -> list[str]:
    """Texts sampled from a model (default: whyllm's bundled Gemma 3 270M), seeded.

    Each text continues one of a few everyday openings (temperature 1, top-p 0.95), so the corpus
    is the model's own language, made offline.
    """
    import torch

    from whyllm.model.load import load_model

    m = model or load_model(progress=False)
    tok = m.tokenizer
    prompts = [_OPENERS[i % len(_OPENERS)] for i in range(n_docs)]
    side, tok.padding_side = tok.padding_side, "left"
    texts: list[str] = []
    try:
        torch.manual_seed(seed)
        for i in range(0, n_docs, 32):
            batch = tok(prompts[i : i + 32], return_tensors="pt", padding=True).to(m.device)
            with torch.no_grad():
                out = m.hf.generate(
                    **batch,
                    do_sample=True,
                    top_p=0.95,
                    temperature=1.0,
                    top_k=0,
                    max_new_tokens=new_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            texts += tok.batch_decode(out, skip_special_tokens=True)
    finally:
        tok.padding_side = side
    return texts


def _read_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            docs = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise InputError(
                            f"{str(path)!r} line {n} has no string field 'text'; each JSONL "
                            'line must be an object like {"text": "..."}'
                        )
                    docs.append(row["text"])
            return docs
        if suffix == ".parquet":
            import pandas as pd

            frame = pd.read_parquet(path)
            if "text" not in frame.columns:
                raise InputError(f"{str(path)!r} has no 'text' column (columns: {list(frame.columns)})")
            return [t for t in frame["text"].tolist() if isinstance(t, str)]
        return [path.read_text(encoding="utf-8")]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{str(path)!r} could not be read as {suffix or 'text'}: {e}") from e


def read_texts(path: str | Path) -> list[str]:
    """Documents in a ``.txt``/``.jsonl``/``.parquet`` file or a folder of them (non-blank only).

    Raises:
        InputError: the path is missing, has no readable files, or holds no text.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"the data path {str(path)!r} does not exist; give a .txt, .jsonl or .parquet "
            "file or a folder of them"
        )
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if p.suffix.lower() in (".txt", ".jsonl", ".parquet", ".md", "")]
    docs = [d for f in files for d in _read_file(f) if d.strip()]
    if not docs:
        raise InputError(
            f"the corpus {str(path)!r} has no text ({len(files)} readable file(s), all empty); "
            "give files with some text"
        )
    return docs


def _text(
    data: str | None,
    n: int | None,
    n_eval: int,
    seed: int,
    seq_len: int | None,
    vocab_size: int,
    tokenizer=None,
) -> Dataset:
    seq_len = seq_len or 128
    if data is not None and data.split(":")[0] == "default-model":
        count = data.partition(":")[2]
        if count and not count.isdigit():
            raise InputError(f"--data {data!r}: write default-model or default-model:N (N texts)")
        n_docs = int(count or 32)
        docs = model_corpus(n_docs, seed=seed)
        source = {
            "corpus": "default-model",
            "model": "gemma-3-270m",
            "texts": n_docs,
            "new_tokens": 128,
            "sampling": f"temperature 1, top-p 0.95, torch seed {seed}",
        }
    elif data is None or data in CORPORA:
        name = data or "python-docs"
        docs, source = bundled_corpus(name), {"corpus": name}
    else:
        docs, source = read_texts(data), {"path": str(Path(data).resolve())}
    tok = tokenizer or text_tokenizer(docs, vocab_size)
    stream: list[int] = []
    for ids in tok(docs, add_special_tokens=False)["input_ids"]:
        stream += [*ids, EOS]
    width = seq_len - 1
    chunks = [[BOS, *stream[i : i + width]] for i in range(0, len(stream) - width + 1, width)]
    if len(chunks) < 2:
        raise InputError(
            f"the corpus has {len(stream)} tokens, too few for two {seq_len}-token examples; "
            "give more text or a shorter --seq-len"
        )
    random.Random(seed).shuffle(chunks)
    n_eval = min(n_eval, max(1, len(chunks) // 10))
    held, train = chunks[:n_eval], chunks[n_eval:]
    if n is not None:
        train = train[:n]
    info = {
        "kind": "text",
        **source,
        "documents": len(docs),
        "tokens": len(stream),
        "seq_len": seq_len,
        "vocab_size": len(tok),
        "tokenizer": "trained BPE" if tokenizer is None else "given",
        "split": f"chunks shuffled with random.Random({seed}); first {n_eval} held out",
    }
    return Dataset(train, held, tok, info)


def make_dataset(
    task: str,
    *,
    data: str | None = None,
    n_examples: int | None = None,
    n_eval: int = 64,
    seed: int = 0,
    seq_len: int | None = None,
    vocab_size: int = 2048,
    tokenizer=None,
) -> Dataset:
    """Build the examples of ``task`` (see the module docstring).

    Args:
        task: ``induction``, ``copy``, ``recall`` or ``text``.
        data: for ``text``: a file/folder path or a bundled corpus name (default ``python-docs``).
        n_examples: training examples (synthetic default 4096; text: all chunks).
        n_eval: held-out examples.
        seed: generator seed.
        seq_len: tokens per example (with ``<bos>``); task default when ``None``.
        vocab_size: BPE vocabulary for ``text``.
        tokenizer: for ``text``: use this tokenizer instead of training one.
    """
    if task not in TASKS:
        raise UnknownMethodError("task", task, list(TASKS))
    if n_examples is not None and (not isinstance(n_examples, int) or n_examples < 1):
        raise InputError(f"n_examples must be a positive integer, got {n_examples!r}")
    if task == "text":
        return _text(data, n_examples, n_eval, seed, seq_len, vocab_size, tokenizer)
    if data is not None:
        raise InputError(f"the {task} task is generated; --data applies only to --task text (got {data!r})")
    return _synthetic(task, n_examples or 4096, n_eval, seed, seq_len)
