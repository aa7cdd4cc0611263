"""A tiny local causal LM: built from a config, trained on the shipped corpora, cached.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the prompt
corpora and the model a small GPT-2 built from a config and trained by
`train_lm`. The gateway's local backend and the watermark tests use it.

    >>> model, tokenizer = load_default_model()
    >>> generate(model, tokenizer, ["Give three tips for staying healthy."], seed=0)
"""

from distillguard.localmodel._config import LocalModelConfig, cache_dir, corpora_dir
from distillguard.localmodel._generate import generate, generate_ids
from distillguard.localmodel._train import (
    build_model,
    encode_documents,
    load_default_model,
    load_model,
    model_path,
    read_corpus_texts,
    train_lm,
    train_local_model,
    train_tokenizer,
)

__all__ = [
    "LocalModelConfig",
    "build_model",
    "cache_dir",
    "corpora_dir",
    "encode_documents",
    "generate",
    "generate_ids",
    "load_default_model",
    "load_model",
    "model_path",
    "read_corpus_texts",
    "train_lm",
    "train_local_model",
    "train_tokenizer",
]
