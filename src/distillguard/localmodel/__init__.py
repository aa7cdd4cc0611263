"""A tiny local causal LM: built from a config, trained on the shipped corpora, cached.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the
permissive corpora and the model a small GPT-2 built from a config and trained by
`train_lm` on one-turn chats. `answer` replies to prompts the way the gateway's
local backend does: never empty, in the prompt's script, without loops. The gateway's local backend and the watermark tests use it.

    >>> model, tokenizer = load_default_model()
    >>> generate(model, tokenizer, ["Give three tips for staying healthy."], seed=0)
    >>> answer(model, tokenizer, ["¿Cuál es el río más largo del mundo?"])  # guarded answers
"""

from distillguard.localmodel._answer import (
    MIN_ANSWER_TOKENS,
    NO_REPEAT_NGRAM_SIZE,
    REPETITION_PENALTY,
    AnswerGuard,
    AnswerGuardFactory,
    answer_guard,
    answers_in_script,
    dominant_script,
    letter_script,
)
from distillguard.localmodel._config import (
    DEFAULT_ANSWER_CORPUS,
    DEFAULT_CORPORA,
    LocalModelConfig,
    cache_dir,
    corpora_dir,
)
from distillguard.localmodel._generate import answer, chat_prompt, generate, generate_ids
from distillguard.localmodel._train import (
    build_model,
    chat_documents,
    encode_documents,
    load_default_model,
    load_model,
    model_path,
    read_answer_pairs,
    read_corpus_texts,
    train_lm,
    train_local_model,
    train_tokenizer,
)

__all__ = [
    "DEFAULT_ANSWER_CORPUS",
    "DEFAULT_CORPORA",
    "MIN_ANSWER_TOKENS",
    "NO_REPEAT_NGRAM_SIZE",
    "REPETITION_PENALTY",
    "AnswerGuard",
    "AnswerGuardFactory",
    "LocalModelConfig",
    "answer",
    "answer_guard",
    "answers_in_script",
    "build_model",
    "chat_documents",
    "chat_prompt",
    "dominant_script",
    "cache_dir",
    "corpora_dir",
    "encode_documents",
    "generate",
    "generate_ids",
    "letter_script",
    "load_default_model",
    "load_model",
    "model_path",
    "read_answer_pairs",
    "read_corpus_texts",
    "train_lm",
    "train_local_model",
    "train_tokenizer",
]
