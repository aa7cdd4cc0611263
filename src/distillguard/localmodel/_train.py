"""Build, train and cache a tiny causal LM from a config; never downloads anything."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard.localmodel._config import LocalModelConfig, cache_dir, corpora_dir

EOS = "<|endoftext|>"


def read_corpus_texts(names: Sequence[str], max_docs: int, root: Path | None = None) -> list[str]:
    """The `text` field of the first `max_docs` rows of each named corpus."""
    root = root or corpora_dir()
    texts: list[str] = []
    for name in names:
        path = root / f"{name}.jsonl.gz"
        if not path.exists():
            raise ConfigError(
                f"Corpus {name!r} is not at {path}; set DISTILLGUARD_CORPORA to the folder "
                "holding the shipped *.jsonl.gz corpora."
            )
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= max_docs:
                    break
                text = json.loads(line).get("text")
                if isinstance(text, str) and text.strip():
                    texts.append(text)
    return texts


# A prompt or answer longer than this is cut: a few very long chats would fill most windows.
MAX_TURN_CHARS = 1200


def read_answer_pairs(name: str, max_docs: int, root: Path | None = None) -> list[tuple[str, str]]:
    """(`text`, `answer`) of the first `max_docs` rows of a question/answer corpus."""
    root = root or corpora_dir()
    path = root / f"{name}.jsonl.gz"
    if not path.exists():
        raise ConfigError(f"Answer corpus {name!r} is not at {path}; it ships with the package.")
    pairs: list[tuple[str, str]] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= max_docs:
                break
            row = json.loads(line)
            if isinstance(row.get("text"), str) and isinstance(row.get("answer"), str):
                pairs.append((row["text"], row["answer"]))
    return pairs


def chat_documents(config: LocalModelConfig, root: Path | None = None) -> list[str]:
    """The training chats: `user: PROMPT` then `assistant: ANSWER`, one per prompt.

    Prompts with a known answer (the answer corpus) get it; every other prompt is
    answered by the next prompt of its corpus written in the same script, which
    teaches the turn and the script without inventing text nobody wrote.
    """
    from distillguard.localmodel._answer import dominant_script
    from distillguard.localmodel._generate import chat_prompt

    known: dict[str, str] = {}
    if config.answers:
        known = dict(read_answer_pairs(config.answers, config.max_docs_per_corpus, root))
    docs = [f"{chat_prompt(q[:MAX_TURN_CHARS])} {a[:MAX_TURN_CHARS]}" for q, a in known.items()]
    for name in config.corpora:
        texts = [t for t in read_corpus_texts([name], config.max_docs_per_corpus, root)
                 if t not in known]
        by_script: dict[str | None, list[str]] = {}
        for t in texts:
            by_script.setdefault(dominant_script(t[:MAX_TURN_CHARS]), []).append(t)
        for group in by_script.values():
            for i, prompt in enumerate(group):
                reply = group[(i + 1) % len(group)].strip() if len(group) > 1 else prompt.strip()
                docs.append(f"{chat_prompt(prompt.strip()[:MAX_TURN_CHARS])} {reply[:MAX_TURN_CHARS]}")
    return docs


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS
    )
    fast.padding_side = "left"
    return fast


def build_model(config: LocalModelConfig, vocab_size: int) -> Any:
    """A randomly initialised GPT-2 style model from `config` (never downloaded)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    hf = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(hf)


def _batches(ids: Any, seq_len: int, batch_size: int, steps: int, seed: int) -> Iterator[Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    n = ids.numel() - seq_len - 1
    for _ in range(steps):
        starts = torch.randint(0, n, (batch_size,), generator=gen)
        yield torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


def train_lm(
    model: Any,
    token_ids: Sequence[int],
    *,
    steps: int,
    seq_len: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    description: str = "training",
    progress: bool = True,
) -> list[float]:
    """Train `model` on random windows of one token stream; return the loss per step.

    Shared by the teacher (trained on the corpora) and students (fine-tuned on
    harvested answers), so the whole pipeline uses one training loop.
    """
    import torch
    from rich.progress import Progress

    ids = torch.tensor(list(token_ids), dtype=torch.long)
    if ids.numel() <= seq_len + 1:
        raise ConfigError(
            f"Only {ids.numel()} training tokens for windows of {seq_len}; give more text "
            "or a shorter seq_len."
        )
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=learning_rate, total_steps=steps, pct_start=0.1
    )
    losses: list[float] = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(description, total=steps)
        for batch in _batches(ids, seq_len, batch_size, steps, seed):
            out = model(input_ids=batch, labels=batch)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(out.loss.detach()))
            bar.advance(task)
    model.eval()
    return losses


def encode_documents(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """One token stream: each document followed by the end-of-text token."""
    eos = int(tokenizer.eos_token_id)
    stream: list[int] = []
    for enc in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(enc)
        stream.append(eos)
    return stream


def train_local_model(config: LocalModelConfig, *, progress: bool = True) -> tuple[Any, Any]:
    """Tokenizer and model trained from scratch on chats built from the corpora in `config`."""
    texts = chat_documents(config)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model = build_model(config, len(tokenizer))
    train_lm(
        model,
        encode_documents(tokenizer, texts),
        steps=config.steps,
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=config.seed,
        description="training the local model",
        progress=progress,
    )
    return model, tokenizer


def model_path(config: LocalModelConfig) -> Path:
    """The cache folder of `config` (it may not exist yet)."""
    return cache_dir() / "localmodel" / config.cache_key()


def load_model(config: LocalModelConfig | None = None, *, progress: bool = True) -> tuple[Any, Any]:
    """`(model, tokenizer)` for `config`: from the cache, or trained now and cached.

    The cache folder is keyed by a hash of the config; it is written to a temporary
    folder and renamed into place, so concurrent first calls cannot leave half a model.
    """
    import torch
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    config = config or LocalModelConfig()
    path = model_path(config)
    if not (path / "done").exists():
        model, tokenizer = train_local_model(config, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "config.distillguard.json").write_text(json.dumps(repr(config)))
        (tmp / "done").write_text("ok\n")
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished first; keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    with torch.device("cpu"):
        model = GPT2LMHeadModel.from_pretrained(path)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "left"
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def load_default_model(*, progress: bool = True) -> tuple[Any, Any]:
    """The default tiny local model and tokenizer (trained and cached on first use)."""
    return load_model(LocalModelConfig(), progress=progress)
