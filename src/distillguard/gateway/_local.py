"""The local backend: a small transformers causal LM run in-process, where generation-time
watermarking plugs in as a logits processor. torch and transformers load lazily."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from distillguard.gateway._protocol import ChatRequest, Delta, Reply

ProcessorFactory = Callable[[str], Any]

# The id `GET /v1/models` lists for the local model when it is routed by a pattern such as `*`.
LOCAL_MODEL_ID = "distillguard-local"


def _prompt_text(req: ChatRequest) -> str:
    # The chat the local model was trained on (`distillguard.localmodel.chat_prompt` for one turn).
    lines = [req.system] if req.system else []
    if req.api == "completions":
        lines.append(req.prompt)
        return "\n".join(lines)
    for m in req.messages:
        lines.append(f"{m.role}: {m.content}")
    lines.append("assistant:")
    return "\n".join(lines)


#: worked answers antidistillation sampling protects on the built-in model (its proxy's gradient)
REFERENCE_ANSWERS = 64


def reference_answers() -> list[str]:
    """The built-in model's protected task: worked answers of its answer corpus, as chats."""
    from distillguard.localmodel import DEFAULT_ANSWER_CORPUS, chat_prompt, read_answer_pairs

    return [f"{chat_prompt(q)} {a}" for q, a in read_answer_pairs(DEFAULT_ANSWER_CORPUS, REFERENCE_ANSWERS)]


class LocalUpstream:
    """Generates with `model` and `tokenizer` in a worker thread, one request at a time.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer.
        processors: `account_id -> LogitsProcessor` (e.g. `WatermarkKey.logits_processor`).
        max_new_tokens: cap when the request sets none.
        name: the upstream's name in messages.
        repetition_penalty: transformers' own, against loops.
        no_repeat_ngram_size: transformers' own, against loops.
        min_new_tokens: shortest answer (capped by the request's max_tokens).
        guard: `(prompts, prompt_length) -> LogitsProcessor` run on every step, e.g.
            `distillguard.localmodel.answer_guard(tokenizer)` (answers never empty, in the
            prompt's script).
        reference: texts of the task antidistillation sampling protects (the proxy student's
            gradient is taken on them); see `use_antidistill`.
    """

    def __init__(self, model: Any, tokenizer: Any, processors: ProcessorFactory | None = None,
                 max_new_tokens: int = 128, name: str = "local", *,
                 repetition_penalty: float | None = None, no_repeat_ngram_size: int | None = None,
                 min_new_tokens: int = 0, guard: Callable[[list[str], int], Any] | None = None,
                 reference: Sequence[str] = ()) -> None:
        self.name = name
        self.model_ids = (LOCAL_MODEL_ID,)
        self.model = model
        self.tokenizer = tokenizer
        self.processors = processors
        self.watermarks_itself = processors is not None
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.min_new_tokens = min_new_tokens
        self.guard = guard
        self.reference = tuple(reference)
        self._flagged: Callable[[str], bool] | None = None
        self._ads_lam = 0.0
        self._ads: Any = None  # the AntidistillHook, built on the first flagged request
        self._lock = threading.Lock()

    def use_antidistill(self, flagged: Callable[[str], bool], lam: float) -> None:
        """Generate with antidistillation sampling (tilt `lam`) for the accounts `flagged` names;
        every other account's answer is generated exactly as without it."""
        if not self.reference:
            from distillguard._errors import ConfigError

            raise ConfigError("Antidistillation sampling on the local model needs reference texts "
                              "(LocalUpstream(reference=...)) to take the proxy student's gradient on.")
        self._flagged, self._ads_lam = flagged, lam

    def _antidistill(self) -> Any:
        # called under self._lock: built once, from a copy of the model as the proxy student
        if self._ads is None:
            from distillguard.antidistill import ADSConfig, antidistill_processor

            window = int(getattr(self.model.config, "n_positions", 0) or 512)
            rows = [self.tokenizer(t)["input_ids"][:window] for t in self.reference]
            self._ads = antidistill_processor(self.model, [r for r in rows if len(r) > 1], ADSConfig(lam=self._ads_lam))
        return self._ads

    @classmethod
    def default(cls, processors: ProcessorFactory | None = None, *, progress: bool = True) -> LocalUpstream:
        """The project's built-in local model (`distillguard.localmodel.load_default_model`),
        answering with its guard and sampling settings (never empty, in the prompt's script)."""
        from distillguard.localmodel import (  # type: ignore[import-not-found,unused-ignore]
            MIN_ANSWER_TOKENS,
            NO_REPEAT_NGRAM_SIZE,
            REPETITION_PENALTY,
            answer_guard,
            load_default_model,
        )

        model, tokenizer = load_default_model(progress=progress)
        return cls(model, tokenizer, processors, repetition_penalty=REPETITION_PENALTY,
                   no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE, min_new_tokens=MIN_ANSWER_TOKENS,
                   guard=answer_guard(tokenizer), reference=reference_answers())

    def _kwargs(self, req: ChatRequest, account_id: str) -> tuple[Any, dict[str, Any]]:
        import torch
        from transformers import LogitsProcessorList

        enc = self.tokenizer(_prompt_text(req), return_tensors="pt")
        n = min(req.max_tokens or self.max_new_tokens, 1024)
        # keep prompt + answer inside the model's position table (the tiny local model has 256)
        window = int(getattr(self.model.config, "n_positions", 0) or getattr(self.model.config, "max_position_embeddings", 0) or 1536)
        n = max(1, min(n, window // 2))
        ids = enc["input_ids"][:, -min(512, window - n):]
        kw: dict[str, Any] = {"max_new_tokens": n, "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0}
        if req.temperature:
            kw.update(do_sample=True, temperature=req.temperature, top_p=req.top_p or 1.0)
        else:
            kw["do_sample"] = False
        if self.repetition_penalty is not None:
            kw["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size is not None:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.min_new_tokens:
            kw["min_new_tokens"] = min(self.min_new_tokens, n)
        steps = [self._antidistill()] if self._flagged is not None and self._flagged(account_id) else []
        if self.processors is not None:
            steps.append(self.processors(account_id))
        if self.guard is not None:
            steps.append(self.guard([req.prompt], int(ids.shape[1])))
        if steps:
            kw["logits_processor"] = LogitsProcessorList(steps)
        kw["attention_mask"] = torch.ones_like(ids)
        return ids, kw

    def _generate(self, req: ChatRequest, account_id: str, streamer: Any = None) -> Reply:
        import torch

        with self._lock, torch.no_grad():
            ids, kw = self._kwargs(req, account_id)
            if streamer is not None:
                kw["streamer"] = streamer
            out = self.model.generate(ids, **kw)
        new = out[0, ids.shape[1]:]
        # A character cut by max_new_tokens decodes as U+FFFD: drop it.
        text = self.tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd")
        finish = "length" if len(new) >= kw["max_new_tokens"] else "stop"
        return Reply(text, "", finish, int(ids.shape[1]), int(len(new)))  # type: ignore[arg-type]

    async def complete(self, req: ChatRequest, account_id: str) -> Reply:
        return await asyncio.to_thread(self._generate, req, account_id)

    async def stream(self, req: ChatRequest, account_id: str) -> AsyncIterator[Delta]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)
        fut = asyncio.get_running_loop().run_in_executor(None, self._generate, req, account_id, streamer)
        it = iter(streamer)
        sentinel = object()
        while True:
            piece = await asyncio.to_thread(next, it, sentinel)
            if piece is sentinel:
                break
            if piece:
                yield Delta(text=str(piece))
        reply = await fut
        yield Delta(finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)

    async def aclose(self) -> None:
        return None
