"""What the simulated accounts say: body sets from the corpora, templates, system prompts.

Benign personas draw from the benign sets; campaigns from the distillation sets and
templates.json. Per-persona prompt recipes live in `_benign.py` and `_campaigns.py`;
this module builds the shared pools once per run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from distillguard.simulate._corpora import Corpora
from distillguard.simulate._text import CLOSINGS, FOLLOWUPS, GREETINGS, BodySet, TextPools

BENIGN_VARIANTS = 10

# Campaign task sets: the permissive sets by default; the old non-commercial set when the
# scenario opts in to it (`opt_in_corpora`).
TASK_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (opt-in set used instead when named, permissive sets used otherwise)
    "instructions": ("alpaca_5k", ("self_instruct_seed_tasks", "gsm8k")),
    "code_tasks": ("code_alpaca", ("mbpp_tasks", "arena_coding")),
}
# Code tasks without Code Alpaca: each MBPP problem sentence (without its asserts, so the texts
# differ from what benchmark runners send) in several target languages, as a harvester widens a
# small pool, plus Arena-Hard's coding prompts.
CODE_LANGUAGES = ["", " Use Python.", " Write it in JavaScript.", " Implement it in Go.", " Solve it in Rust.",
                  " Use Java.", " Write it in C++."]
# Follow-up turns written for the simulator (ShareGPT's real later turns are opt-in): a short
# request alone, or an instruction before pasted text (a slice of a real prompt).
FOLLOWUP_PASTE_HEADS = [
    "Now do the same for this:\n\n", "What about this one?\n", "Here's the error I get:\n", "Fix this:\n",
    "and this part?\n", "Rewrite this paragraph:\n\n", "Translate this too:\n", "Use this instead:\n\n",
    "Can you check this?\n", "I changed it to this:\n", "this is what I have so far\n\n", "Here is the rest:\n",
    "Same question for:\n", "ok now summarize this\n\n", "It still fails:\n", "Compare with this:\n\n",
]
FOLLOWUP_SHORT = [
    "Can you give more detail on the second part?", "What would you change first?", "Is there a simpler way?",
    "Can you make it sound more natural?", "Add a short conclusion.", "Make it a bit longer.",
    "Why did you choose that approach?", "What are the downsides?", "Can you list the sources?",
    "Explain the last step again.", "Give me three alternatives.", "Now in bullet points.",
    "Make the tone friendlier.", "What if I can't use a library?", "Does this work on Windows too?",
    "ok and how long would that take?", "can you shorten it to one paragraph", "Use simpler words.",
    "What did I do wrong?", "And the time complexity?", "put it in a table", "no, I meant the other one",
    "Can you add comments to the code?", "Write it as an email instead.", "Is that correct?",
]
FOLLOWUPS_WRITTEN = 3000  # composed follow-ups in the pool when ShareGPT is not opted in

# Prompt templates of legitimate apps (enterprise batch jobs, developers iterating).
APP_TEMPLATES = [
    "Summarize the following customer support ticket in three bullet points.\n\nTicket:\n{x}",
    "Classify the sentiment of this review as positive, negative or neutral. Reply with one word.\n\nReview: {x}",
    "Extract all product names and prices from the text below and return them as JSON.\n\n{x}",
    "Translate the following message into German, keeping the tone:\n\n{x}",
    "Rewrite the user question below as a search query of at most eight words.\n\nQuestion: {x}",
    "Write a short, friendly reply to this email:\n\n{x}",
    "Detect the language of the following text and answer with its ISO 639-1 code only.\n\n{x}",
    "Tag the following message with up to three topics from: billing, shipping, account, technical, other.\n\nMessage: {x}",
    "Check the following text for grammar mistakes and return the corrected version only.\n\n{x}",
    "Generate a product title (max 60 characters) for this description:\n{x}",
    "Does the following message contain personal data (names, e-mails, phone numbers)? Answer yes or no, then list them.\n\n{x}",
    "Convert the following request into a SQL query for a table orders(id, customer, total, created_at):\n\n{x}",
    "You will receive a chat message from a user of our app. Decide whether it needs a human agent. Answer HUMAN or BOT.\n\nMessage: {x}",
    "Write alt text (one sentence) for an image described as follows: {x}",
]
APP_SYSTEMS = [
    "You are a precise data-processing assistant. Output valid JSON only.",
    "You are a customer-support assistant for Acme Corp. Be brief and polite.",
    "You are a helpful assistant.",
    "You are a classification service. Answer with the label only.",
    "You are a helpful assistant for our internal knowledge base. If you do not know, say so.",
    "You are a coding assistant embedded in an IDE. Answer with code first, then a short explanation.",
]

# System prompts of popular IDE coding agents: thousands of unrelated developers send the same
# one, with tool definitions, in multi-turn loops (a benign look-alike of agentic campaigns).
IDE_SYSTEMS = [
    "You are a powerful agentic AI coding assistant working inside the user's IDE. You can read and edit files and run commands using the provided tools. Follow the user's instructions carefully and keep changes minimal.",
    "You are Codey, an AI pair programmer. Use the tools to search the codebase, propose minimal diffs, and run the tests before you answer. Never invent file contents.",
]
IDE_AGENTS = ["Codey/1.{m}.{d} (vscode)", "agentic-ide/0.{m}.{d} (jetbrains)"]

# Distillation-side wrappers: {x} is the slot filled from a distillation set.
COT_WRAPPERS = [
    "{x}\n\nLet's think step by step.",
    "Solve the following problem. Think step by step and show all your reasoning before giving the final answer.\n\n{x}",
    "Question: {x}\nAnswer: Let's work this out in a step by step way to be sure we have the right answer.",
    "{x}\n\nExplain your reasoning in detail inside <thinking> tags, then give the final answer after 'Answer:'.",
    "Please reason step by step, and put your final answer within \\boxed{{}}.\n\n{x}",
]
COT_SYSTEMS = [
    "You are a careful reasoner. Always think step by step and write out your full chain of reasoning before the final answer.",
    "You are an expert tutor. Show every intermediate step of your reasoning explicitly, then state the final answer.",
]
RUBRIC_SYSTEMS = [
    "You are an expert grader. Score the response on a scale of 1 to 10 using this rubric: correctness (0-4), completeness (0-3), clarity (0-3). Explain each sub-score step by step, then output the total as 'Score: N'.",
    "You are a strict reward model. Compare the response with an ideal answer, list every flaw, and give a final grade from 1 to 10 as 'Grade: N'. Think step by step.",
    "Act as an impartial judge. Evaluate helpfulness, accuracy, depth and harmlessness. Provide a short rationale for each criterion, then a rating in the form [[N]] with N from 1 to 10.",
]
# The response to grade goes in as a context chunk ending in "Original question:" (rubric_ctx).
RUBRIC_WRAPPER = "Evaluate the response below against the rubric.\n\nResponse:\n{x}\n\nGive a score with step-by-step justification."
RUBRIC_CTX = ["{x}\n\nOriginal question:\n", "{x}\n\nQuestion:\n", "{x}\n\nThe question was:\n"]
CODE_WRAPPERS = [
    "{x}",
    "Write a complete, well-tested solution for the following task. Explain your approach step by step first.\n\n{x}",
    "You are an expert Python programmer, and here is your task: {x}",
    "Implement the following and include unit tests:\n\n{x}",
]
HUMANEVAL_WRAPPER = "Complete the following Python function. Return only the code.\n\n```python\n{x}```"
AGENT_SYSTEMS = [
    "You are an autonomous software engineering agent. Plan your changes step by step, call tools to inspect and edit files, run the tests, and explain each decision.",
    "You are a coding agent working in a sandboxed repository. Think step by step, use the provided tools, and produce complete, runnable code.",
    "You are an agent with access to tools. Decide which functions to call and with which arguments; explain your reasoning before each call.",
    "You are a helpful assistant that can call functions. Reason about the user's goal, call the right tools in order, and summarize the results.",
]


@dataclass
class Slotted:
    """A wrapper split at its slot: lead/tail pool indices for each reworded variant."""

    leads: np.ndarray
    tails: np.ndarray


@dataclass
class Content:
    pools: TextPools
    sets: dict[str, BodySet] = field(default_factory=dict)
    ctx_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    rubric_ctx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    greet_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    close_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    app_systems: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ide_systems: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    bfcl_systems: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    corpora: Corpora | None = None
    opt_in: frozenset[str] = frozenset()

    def opt(self, name: str) -> list[str]:
        """The texts of opt-in set `name` when the scenario named it, else nothing."""
        assert self.corpora is not None
        return self.corpora.set_texts(name) if name in self.opt_in else []

    def task_texts(self, name: str) -> list[str]:
        """A campaign task set (`TASK_SETS`) or a corpus by name."""
        assert self.corpora is not None
        if name in TASK_SETS:
            nc, permissive = TASK_SETS[name]
            if nc in self.opt_in:
                return self.corpora.set_texts(nc)
            texts: list[str] = []
            for p in permissive:
                if p == "gsm8k":
                    texts += self.corpora.where("gsm8k", "train")  # the test split is the benchmark runners'
                elif p == "mbpp_tasks":
                    texts += [(t.split("\n")[0] if not lang else t.split("\n")[0].replace(" python ", " ")) + lang
                              for t in self.corpora.set_texts("mbpp") for lang in CODE_LANGUAGES]
                elif p == "arena_coding":
                    texts += self.corpora.where("arena_hard", "v2.0/coding")
                else:
                    texts += self.corpora.set_texts(p)
            return texts
        return self.corpora.set_texts(name)


def written_followups(sources: list[str], rng: np.random.Generator, n: int) -> list[str]:
    """`n` follow-up turns: a third short requests, the rest an instruction before a slice
    (60-600 characters) of a real prompt, as users paste text into later turns."""
    r = random.Random(int(rng.integers(1 << 62)))
    long_src = [t for t in sources if len(t) >= 80]
    out = []
    for _ in range(n):
        if r.random() < 1 / 3:
            out.append(r.choice(FOLLOWUP_SHORT))
            continue
        t = r.choice(long_src)
        ln = min(len(t), int(r.lognormvariate(5.3, 0.6)) + 60)
        a = r.randrange(0, len(t) - ln + 1)
        out.append(r.choice(FOLLOWUP_PASTE_HEADS) + t[a : a + ln].strip())
    return out


def build_content(corp: Corpora, pools: TextPools, rng: np.random.Generator, n_ctx: int,
                  opt_in: Sequence[str] = ()) -> Content:
    """Build the shared benign pools (variants, context chunks, greetings) and system prompts
    from the permissive sets, plus the opt-in sets the scenario names."""
    c = Content(pools=pools, corpora=corp, opt_in=frozenset(opt_in))
    wild, arena, uo = corp.texts["wildchat_1k"], corp.texts["arena_hard"], corp.texts["self_instruct_user_oriented"]
    shared = "sharegpt_1k" in c.opt_in
    later = corp.where("sharegpt_1k", "later_turn") if shared and c.opt("sharegpt_1k") else []
    share_first = corp.where("sharegpt_1k", "first_turn") if shared else []
    first = wild + share_first + arena + uo + c.opt("wizardlm_testset") + [t for t in later if len(t) >= 60]
    c.sets["first"] = pools.add_bodies(first, rng, BENIGN_VARIANTS)
    written = [] if later else written_followups(wild + arena + uo, rng, FOLLOWUPS_WRITTEN)
    c.sets["followup"] = pools.add_bodies(later + written + FOLLOWUPS * 4, rng, 4)
    c.sets["bfcl_live"] = pools.add_bodies(corp.texts["bfcl_live"], rng, 4)
    arena_code = corp.where("arena_hard", "v2.0/coding")
    c.sets["dev_misc"] = pools.add_bodies(arena_code + wild + share_first + uo, rng, 6)
    ordinary = c.opt("code_alpaca") + c.opt("alpaca_5k")
    if not ordinary:  # ordinary task-like questions of distillation provenance, permissive sets
        ordinary = corp.texts["self_instruct_seed_tasks"] + corp.texts["mbpp"] + corp.where("gsm8k", "train")[:500]
    c.sets["dev_distill"] = pools.add_bodies(ordinary, rng, 2)
    docs = [t for t in later + wild + arena + uo if 40 <= len(t) <= 3000]
    c.sets["docs"] = pools.add_bodies(docs, rng, 3)
    c.ctx_ids = pools.add_ctxs(later + wild + arena + ([] if later else uo), n_ctx, rng)
    c.rubric_ctx = pools.add_ctxs(c.opt("alpaca_5k") + later + arena + wild, 5000, rng, RUBRIC_CTX)
    c.greet_ids = np.asarray([pools.lead(g) for g in GREETINGS], np.int32)
    c.close_ids = np.asarray([pools.tail(t) for t in CLOSINGS], np.int32)
    c.app_systems = np.asarray([pools.system(s) for s in APP_SYSTEMS], np.int32)
    c.ide_systems = np.asarray([pools.system(s) for s in IDE_SYSTEMS], np.int32)
    c.bfcl_systems = np.asarray(
        [pools.system(v) for k, v in sorted(corp.templates.items()) if k.startswith("bfcl_system")],
        np.int32,
    )
    prose = c.opt("alpaca_5k") + c.opt("sharegpt_1k") + later
    pools.build_responses(prose or wild + arena + corp.where("gsm8k", "train")[:2000], rng)
    return c


def distill_set(c: Content, name: str, rng: np.random.Generator, reword_variants: int) -> BodySet:
    """A distillation set as body texts with `reword_variants` light rewordings each (cached)."""
    key = f"{name}#{reword_variants}"
    if key not in c.sets:
        c.sets[key] = c.pools.add_bodies(c.task_texts(name), rng, reword_variants, reword_mode=True)
    return c.sets[key]


def alpaca_rendered(c: Content, rng: np.random.Generator, variants: int) -> BodySet:
    """Instruction rows (`TASK_SETS["instructions"]`) inside the Alpaca fine-tune wrappers
    (with or without input), pre-rendered."""
    key = f"alpaca_wrapped#{variants}"
    if key not in c.sets:
        assert c.corpora is not None
        t = c.corpora.templates
        out = []
        for text in c.task_texts("instructions"):
            instr, sep, inp = text.partition("\n\n")
            if sep:
                out.append(t["alpaca_finetune_format_with_input"].replace("{instruction}", instr).replace("{input}", inp))
            else:
                out.append(t["alpaca_finetune_format_no_input"].replace("{instruction}", instr))
        c.sets[key] = c.pools.add_bodies(out, rng, variants, reword_mode=True)
    return c.sets[key]


def generation_prompts(c: Content, rng: np.random.Generator, n: int, variants: int) -> BodySet:
    """Self-instruct style generation requests (Alpaca/Code-Alpaca prompt.txt plus seed tasks,
    the self-instruct bootstrap list), pre-rendered with random seed tasks."""
    key = f"genprompts#{variants}"
    if key not in c.sets:
        assert c.corpora is not None
        t = c.corpora.templates
        seeds = c.corpora.texts["self_instruct_seed_tasks"]
        code_seeds = (c.corpora.where("code_alpaca", "seed_task") if "code_alpaca" in c.opt_in
                      else c.corpora.set_texts("mbpp")[:20])
        heads = [t["alpaca_generation_prompt"], t["code_alpaca_generation_prompt"]]
        out = []
        for i in range(n):
            kind = i % 3
            if kind < 2:
                pool = seeds if kind == 0 else code_seeds
                body = heads[kind] + "\n###\n"
                for j, s in enumerate(rng.choice(len(pool), size=3, replace=False)):
                    instr, _, inp = pool[int(s)].partition("\n\n")
                    body += f"{j + 1}. Instruction: {instr}\n{j + 1}. Input:\n{inp or '<noinput>'}\n###\n"
                out.append(body + "4. Instruction:")
            else:
                k = int(rng.integers(6, 9))
                body = "Come up with a series of tasks:\n"
                for j, s in enumerate(rng.choice(len(seeds), size=k, replace=False)):
                    body += f"{j + 1}. {seeds[int(s)].partition(chr(10) + chr(10))[0]}\n"
                out.append(body + f"{k + 1}.")
        c.sets[key] = c.pools.add_bodies(out, rng, variants, reword_mode=True)
    return c.sets[key]


def slotted(c: Content, template: str, rng: np.random.Generator, variants: int, slot: str = "{x}") -> Slotted:
    leads, tails = c.pools.template_parts(template, slot, rng, variants)
    return Slotted(leads, tails)
