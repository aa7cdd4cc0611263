"""`distillguard trace text|model` and `distillguard watermark keygen|rotate|train-model`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from distillguard.trace import TraceReport

KeyFile = Annotated[
    Path, typer.Option("--watermark-key-file", help="The provider's watermark key file.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the evidence as JSON.")]
Alpha = Annotated[float, typer.Option(help="Significance level for 'ours' and attribution.")]
TokenizerOpt = Annotated[
    str,
    typer.Option(
        help="Tokenizer of the generating model: a saved transformers tokenizer folder, "
        "'local' for the built-in local model's, or 'none' to score the lexical layer only."
    ),
]


def _fail(exc: Exception) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(2)


def _tokenizer(spec: str) -> Any:
    if spec == "none":
        return None
    if spec == "local":
        from distillguard.localmodel import load_default_model

        return load_default_model()[1]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec)


def _emit(report: TraceReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    for line in report.lines():
        console.print(line, markup=False)


def register(app: typer.Typer) -> None:
    trace = typer.Typer(help="Trace texts, datasets and models back to our watermark key.")
    wm = typer.Typer(help="Watermark keys and the local model.")
    app.add_typer(trace, name="trace")
    app.add_typer(wm, name="watermark")

    @trace.command("text")
    def trace_text(
        path: Annotated[Path, typer.Argument(help="A text file, a JSONL dataset (`text` per line) or a folder.")],
        watermark_key_file: KeyFile,
        accounts: Annotated[
            Path | None,
            typer.Option(help="Candidate account ids: one per line, JSONL, or a traffic log folder."),
        ] = None,
        tokenizer: TokenizerOpt = "local",
        lexical: Annotated[bool, typer.Option(help="Also score the post-hoc lexical layer.")] = True,
        alpha: Alpha = 1e-6,
        as_json: JsonFlag = False,
    ) -> None:
        """Is this text or dataset ours (p-value), and which accounts harvested it."""
        from distillguard._errors import DistillguardError
        from distillguard.trace import load_candidates, load_texts, trace_texts
        from distillguard.watermark import WatermarkKey

        try:
            key = WatermarkKey.load(watermark_key_file)
            texts, prompts = load_texts(path)
            cands = load_candidates(accounts) if accounts is not None else None
            report = trace_texts(
                key,
                texts,
                tokenizer=_tokenizer(tokenizer),
                prompts=prompts or None,
                candidates=cands,
                alpha=alpha,
                lexical=lexical,
                subject=str(path),
            )
        except DistillguardError as exc:
            raise _fail(exc) from None
        _emit(report, as_json)

    @trace.command("model")
    def trace_model(
        watermark_key_file: KeyFile,
        endpoint: Annotated[
            str | None, typer.Option(help="Closed model: OpenAI-compatible base URL (…/v1).")
        ] = None,
        model: Annotated[str, typer.Option(help="Model name to ask the endpoint for.")] = "default",
        api_key_env: Annotated[
            str, typer.Option(help="Environment variable holding the endpoint's API key.")
        ] = "SUSPECT_API_KEY",
        local: Annotated[
            Path | None, typer.Option(help="Open model: a saved transformers model folder.")
        ] = None,
        prompts: Annotated[
            Path | None,
            typer.Option(
                help="Prompts (closed) or reading texts (open: best our own watermarked answers, "
                "e.g. the harvested dataset); default: shipped corpora."
            ),
        ] = None,
        limit: Annotated[int, typer.Option(help="How many prompts or texts to use.")] = 200,
        reference: Annotated[
            list[Path] | None,
            typer.Option(
                help="Open model: our own unwatermarked model (same tokenizer); the suspect is "
                "scored on the tokens it prefers over it (stronger when little marked data was used). "
                "Repeat it for several (e.g. the teacher and students we distilled from our own "
                "unmarked answers): their log-probabilities are averaged."
            ),
        ] = None,
        account: Annotated[
            str | None,
            typer.Option(
                help="Open model: the account the reading texts were served to; its layer is "
                "scored too (green-list keys with an account layer)."
            ),
        ] = None,
        max_tokens: Annotated[int, typer.Option(help="Answer length asked of a closed model.")] = 128,
        tokenizer: TokenizerOpt = "local",
        alpha: Alpha = 1e-6,
        as_json: JsonFlag = False,
    ) -> None:
        """Radioactivity test: was a suspect model trained on our watermarked answers?"""
        import os

        from distillguard._errors import ConfigError, DistillguardError
        from distillguard.localmodel import read_corpus_texts
        from distillguard.trace import (
            load_texts,
            query_openai_compatible,
            radioactivity_closed,
            radioactivity_open,
        )
        from distillguard.watermark import WatermarkKey

        try:
            if (endpoint is None) == (local is None):
                raise ConfigError("Give exactly one of --endpoint URL (closed) or --local DIR (open).")
            key = WatermarkKey.load(watermark_key_file)
            texts = (
                load_texts(prompts)[0] if prompts else read_corpus_texts(["gsm8k", "self_instruct_user_oriented"], limit)
            )[:limit]
            if local is not None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                suspect = AutoModelForCausalLM.from_pretrained(local)
                suspect.eval()  # type: ignore[no-untyped-call]
                tok = (
                    AutoTokenizer.from_pretrained(local)
                    if (local / "tokenizer.json").exists()
                    else _tokenizer(tokenizer)
                )
                refs = []
                for path in reference or []:
                    ref = AutoModelForCausalLM.from_pretrained(path)
                    ref.eval()  # type: ignore[no-untyped-call]
                    refs.append(ref)
                report = radioactivity_open(
                    key, suspect, tok, texts, reference=refs or None, account=account, alpha=alpha,
                    subject=str(local),
                )
            else:
                assert endpoint is not None
                answers = query_openai_compatible(
                    endpoint, model, texts, api_key=os.environ.get(api_key_env), max_tokens=max_tokens
                )
                report = radioactivity_closed(
                    key, answers, texts, tokenizer=_tokenizer(tokenizer), alpha=alpha,
                    subject=f"{endpoint} ({model})",
                )
        except DistillguardError as exc:
            raise _fail(exc) from None
        _emit(report, as_json)

    @wm.command("keygen")
    def keygen(
        out: Annotated[Path, typer.Option(help="Where to write the new key file (mode 0600).")],
        scheme: Annotated[str, typer.Option(help="kgw (green list) or gumbel (distortion-free).")] = "kgw",
        gamma: Annotated[float, typer.Option(help="Green-list fraction.")] = 0.25,
        delta: Annotated[float, typer.Option(help="Green-list logit bias (kgw).")] = 2.0,
        context_width: Annotated[int, typer.Option(help="Tokens of context seeding each step.")] = 1,
        self_hash: Annotated[bool, typer.Option(help="Include the candidate token in the seed.")] = False,
        account_delta: Annotated[float, typer.Option(help="Per-account layer bias; 0 disables.")] = 2.0,
        force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    ) -> None:
        """Create a new watermark key (32 random bytes from the OS); there is no default key."""
        from distillguard._errors import ConfigError, DistillguardError
        from distillguard.watermark import WatermarkConfig, WatermarkKey

        try:
            if out.exists() and not force:
                raise ConfigError(f"{out} exists; pass --force to overwrite it or rotate it instead.")
            cfg = WatermarkConfig(
                scheme=scheme,  # type: ignore[arg-type]
                gamma=gamma,
                delta=delta,
                context_width=context_width,
                self_hash=self_hash,
                account_delta=account_delta,
            )
            WatermarkKey.generate(cfg).save(out)
        except DistillguardError as exc:
            raise _fail(exc) from None
        typer.echo(f"wrote watermark key {out} (version 1, scheme {scheme}); keep it secret")

    @wm.command("rotate")
    def rotate(key_file: Annotated[Path, typer.Argument(help="Key file to rotate in place.")]) -> None:
        """Add a new active key version; text marked with older versions still verifies."""
        from distillguard._errors import DistillguardError
        from distillguard.watermark import WatermarkKey

        try:
            key = WatermarkKey.load(key_file).rotate()
            key.save(key_file)
        except DistillguardError as exc:
            raise _fail(exc) from None
        typer.echo(f"{key_file}: active version is now {key.active} of {len(key.versions)}")

    @wm.command("train-model")
    def train_model() -> None:
        """Train (or find cached) the built-in tiny local model and print where it is."""
        from distillguard.localmodel import LocalModelConfig, load_default_model, model_path

        model, _ = load_default_model()
        n = sum(p.numel() for p in model.parameters())
        typer.echo(f"local model ({n} parameters) at {model_path(LocalModelConfig())}")
