"""The scenario: a typed, validated description of the population and campaigns to simulate.

Loaded from TOML (`load_scenario`), copy-and-edit from `default_scenario.toml`.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillguard._errors import ScenarioError

Content = Literal[
    "coding_agentic", "agentic_tools", "reasoning_rubric", "self_instruct_templates", "task_pool_elicitation"
]
# What a campaign's accounts share: "shared" is the classic hydra (proxy pool, campaign e-mail
# domains, shared cards, sign-up bursts); "none" shares nothing (content-only); the others share
# exactly ONE kind of infrastructure (single-link): cards bought in batches, an e-mail pattern,
# sign-up bursts, or one proxy range (/24).
Links = Literal["shared", "none", "card", "email", "signup", "proxy"]
Elicitation = Literal["step_by_step", "rubric", "mixed"]
# Corpora that are not permissively licensed: used only when a scenario names them in
# `opt_in_corpora` (their licence is printed when used; see simulate._corpora.OPT_IN_LICENCES).
OptInCorpus = Literal["alpaca_5k", "code_alpaca", "wizardlm_testset", "sharegpt_1k"]
# Tasks the content-only and single-link shapes draw from (all permissively licensed).
DEFAULT_TASK_POOL = ["gsm8k", "mbpp", "humaneval", "self_instruct_seed_tasks"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Spec):
    start: datetime = datetime(2026, 2, 2, tzinfo=UTC)
    days: float = Field(default=7.0, gt=0, le=366)

    @model_validator(mode="after")
    def _utc(self) -> WindowSpec:
        if self.start.tzinfo is None:  # a TOML local date-time means UTC, never the machine's zone
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        return self


class ModelSpec(_Spec):
    name: str
    released_days: float = Field(description="release time, days relative to window start")


class CasualSpec(_Spec):
    accounts: int = Field(default=12000, ge=0)
    events: int = Field(default=430000, ge=0)
    turns_mean: float = Field(default=2.6, ge=1)
    think_time_s: float = Field(default=120.0, gt=0)
    sdk_share: float = Field(default=0.25, ge=0, le=1)
    cgnat_share: float = Field(default=0.15, ge=0, le=1)
    cgnat_pool: int = Field(default=300, ge=1)
    new_model_adoption: float = Field(default=0.25, ge=0, le=1)


class DeveloperSpec(_Spec):
    accounts: int = Field(default=2500, ge=0)
    events: int = Field(default=190000, ge=0)
    team_size_max: int = Field(default=8, ge=1)
    system_share: float = Field(default=0.45, ge=0, le=1)
    tools_share: float = Field(default=0.25, ge=0, le=1)
    ide_agent_share: float = Field(default=0.15, ge=0, le=1)
    distill_source_share: float = Field(default=0.08, ge=0, le=1)
    new_model_adoption: float = Field(default=0.4, ge=0, le=1)


class TemplateDeveloperSpec(_Spec):
    accounts: int = Field(default=40, ge=0)
    events: int = Field(default=14000, ge=0)
    versions: int = Field(default=12, ge=1)


class EnterpriseSpec(_Spec):
    accounts: int = Field(default=4, ge=0)
    events: int = Field(default=80000, ge=0)
    templates_per_account: int = Field(default=2, ge=1)


class ClassroomSpec(_Spec):
    classes: int = Field(default=3, ge=0)
    students: int = Field(default=32, ge=1)
    lessons: int = Field(default=3, ge=1)
    followups_mean: float = Field(default=3.0, ge=0)
    homework_events: int = Field(default=20, ge=0)
    exact_share: float = Field(default=0.7, ge=0, le=1)


class EvalRunnerSpec(_Spec):
    accounts: int = Field(default=6, ge=0)
    events: int = Field(default=24000, ge=0)
    rate_per_s: float = Field(default=4.0, gt=0)
    release_run_delay_hours: float = Field(default=3.0, ge=0)


class ResellerSpec(_Spec):
    accounts: int = Field(default=3, ge=0)
    events: int = Field(default=45000, ge=0)
    server_ips: int = Field(default=3, ge=1)
    # Share of reseller accounts (benign or carrying a campaign) that declare their customers'
    # ids per request (OpenAI `user`, Anthropic `metadata.user_id`): the `end_user` column.
    end_user_share: float = Field(default=0.0, ge=0, le=1)


class StudentsSpec(_Spec):
    """Benign look-alike of content-only campaigns: students at many universities asking for
    step-by-step solutions to their homework (off by default: accounts = 0)."""

    accounts: int = Field(default=0, ge=0)
    events: int = Field(default=0, ge=0)
    universities: int = Field(default=60, ge=1)
    problems_per_course: int = Field(default=12, ge=1)
    campus_share: float = Field(default=0.4, ge=0, le=1)
    followups_mean: float = Field(default=1.5, ge=0)


class JudgeLabSpec(_Spec):
    """Benign look-alike of rubric elicitation: independent labs running LLM-as-judge
    evaluations with one popular public judge template (off by default)."""

    accounts: int = Field(default=0, ge=0)
    events: int = Field(default=0, ge=0)
    rate_per_s: float = Field(default=1.5, gt=0)
    edited_template_share: float = Field(default=0.2, ge=0, le=1)


class BenchmarkResearcherSpec(_Spec):
    """Benign look-alike: many researchers running public benchmarks (gsm8k, MBPP, HumanEval,
    BFCL) with the standard harness prompts, each from their own infrastructure (off by default)."""

    accounts: int = Field(default=0, ge=0)
    events: int = Field(default=0, ge=0)
    rate_per_s: float = Field(default=0.5, gt=0)


class OssAppSpec(_Spec):
    """Benign look-alike of a templated campaign: many unrelated developers building on one
    popular open-source app, sending its system prompt and its RAG template (off by default)."""

    accounts: int = Field(default=0, ge=0)
    events: int = Field(default=0, ge=0)
    app_prompt_share: float = Field(default=0.85, ge=0, le=1)


class CampaignSpec(_Spec):
    id: str
    persona: str = "hydra_worker"
    content: Content = "coding_agentic"
    accounts: int = Field(default=100, ge=1)
    events: int = Field(default=10000, ge=1)
    start_days: float = 0.0
    end_days: float | None = None
    schedule: Literal["around_the_clock", "operator_hours"] = "around_the_clock"
    operator_tz: float = 8.0
    countries: list[str] = ["US", "SG", "JP", "GB", "DE", "CA", "AU", "KR"]
    proxy_ips: int = Field(default=100, ge=1)
    ip_churn: float = Field(default=0.2, ge=0, le=1)
    daily_limit: int | None = Field(default=None, ge=1)
    user_agents: Literal["sdk", "rotate_browser", "mixed", "per_account"] = "sdk"
    signup_channels: dict[str, float] = {"education": 0.4, "research": 0.3, "startup": 0.3}
    verified_share: float = Field(default=0.1, ge=0, le=1)
    paid_share: float = Field(default=0.8, ge=0, le=1)
    payment_pool: int = Field(default=20, ge=1)
    payment_shared_share: float = Field(default=0.4, ge=0, le=1)
    email_domains: int = Field(default=4, ge=1)
    creation_bursts: int = Field(default=4, ge=1)
    created_days: tuple[float, float] = (-30.0, 3.0)
    account_lifetime_days: float | None = None
    system_prompts: int = Field(default=3, ge=0)
    template_variants: int = Field(default=6, ge=1)
    reword_share: float = Field(default=0.3, ge=0, le=1)
    max_tokens: int = Field(default=8192, ge=16)
    capped_share: float = Field(default=0.3, ge=0, le=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    model: str | None = None
    switch_to_model: str | None = None
    switch_share: float = Field(default=0.0, ge=0, le=1)
    switch_delay_hours: float = Field(default=12.0, ge=0)
    via_reseller_share: float = Field(default=0.0, ge=0, le=1)
    reseller_benign_events: int = Field(default=0, ge=0)
    via_resellers: int = Field(default=1, ge=1)
    # Customer ids the operator holds at each carrying reseller (seen where it passes them).
    reseller_end_users: int = Field(default=3, ge=1)
    independent_accounts: bool = False
    links: Links = "shared"
    accounts_per_link: int = Field(default=40, ge=1)
    human_daily: tuple[float, float] | None = None
    task_pool: list[str] = DEFAULT_TASK_POOL
    elicitation: Elicitation = "mixed"
    wrapper_per_account: bool = True
    family: str | None = None

    @model_validator(mode="after")
    def _check(self) -> CampaignSpec:
        if self.human_daily is not None and not 0 < self.human_daily[0] <= self.human_daily[1]:
            raise ValueError("human_daily must be [least, most] requests per account per day, least > 0")
        if not self.task_pool:
            raise ValueError("task_pool needs at least one corpus")
        if self.human_daily is not None and self.via_reseller_share > 0:
            raise ValueError("a human-paced campaign (human_daily) sends everything from its own accounts: "
                             "via_reseller_share must be 0")
        if self.created_days[0] > self.created_days[1]:
            raise ValueError("created_days must be [earliest, latest]")
        if not self.signup_channels or any(v < 0 for v in self.signup_channels.values()):
            raise ValueError("signup_channels needs at least one channel with a weight >= 0")
        return self

    def expected_events(self, window_days: float) -> int:
        """Events this campaign is expected to send: `events`, or for a human-paced campaign
        (`human_daily`) accounts x mean daily rate x active days (direct accounts only)."""
        if self.human_daily is None:
            return self.events
        end = window_days if self.end_days is None else min(self.end_days, window_days)
        days = max(0.0, end - max(0.0, self.start_days))
        return int(self.accounts * sum(self.human_daily) / 2 * days)


class Scenario(_Spec):
    """Everything a simulation needs besides the seed and the corpora."""

    name: str = "default"
    window: WindowSpec = WindowSpec()
    models: list[ModelSpec] = [
        ModelSpec(name="atlas-2", released_days=-400),
        ModelSpec(name="atlas-3", released_days=-120),
        ModelSpec(name="atlas-3-mini", released_days=-120),
        ModelSpec(name="atlas-3.5", released_days=4.25),
    ]
    default_model: str = "atlas-3"
    mini_model: str = "atlas-3-mini"
    new_model: str | None = "atlas-3.5"
    max_prompt_chars: int = Field(default=8000, ge=200)
    exact_share_target: float = Field(default=0.02, gt=0, le=1)
    events_per_part: int = Field(default=2_000_000, ge=1000)
    casual: CasualSpec = CasualSpec()
    developer: DeveloperSpec = DeveloperSpec()
    template_developer: TemplateDeveloperSpec = TemplateDeveloperSpec()
    enterprise_batch: EnterpriseSpec = EnterpriseSpec()
    classroom: ClassroomSpec = ClassroomSpec()
    eval_runner: EvalRunnerSpec = EvalRunnerSpec()
    reseller: ResellerSpec = ResellerSpec()
    students: StudentsSpec = StudentsSpec()
    judge_lab: JudgeLabSpec = JudgeLabSpec()
    benchmark_researcher: BenchmarkResearcherSpec = BenchmarkResearcherSpec()
    oss_app_developer: OssAppSpec = OssAppSpec()
    opt_in_corpora: list[OptInCorpus] = []
    campaigns: list[CampaignSpec] = []

    @model_validator(mode="after")
    def _check_models(self) -> Scenario:
        names = {m.name for m in self.models}
        wanted = [self.default_model, self.mini_model]
        wanted += [self.new_model] if self.new_model else []
        for c in self.campaigns:
            wanted += [m for m in (c.model, c.switch_to_model) if m]
        missing = sorted({w for w in wanted if w not in names})
        if missing:
            raise ValueError(f"models {missing} are used but not listed under [[models]]")
        ids = [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaign ids must be unique, got {ids}")
        return self

    def total_events(self) -> int:
        """Events the scenario asks for, all groups together (approximate for sessions)."""
        benign = (
            self.casual.events
            + self.developer.events
            + self.template_developer.events
            + self.enterprise_batch.events
            + self.eval_runner.events
            + self.reseller.events
            + self.students.events
            + self.judge_lab.events
            + self.benchmark_researcher.events
            + self.oss_app_developer.events
            + self.classroom.classes
            * self.classroom.students
            * (self.classroom.lessons * (1 + self.classroom.followups_mean) + self.classroom.homework_events)
        )
        return int(benign + sum(c.expected_events(self.window.days) + c.reseller_benign_events
                                for c in self.campaigns))

    def scaled(self, events: int) -> Scenario:
        """The same scenario with every group's events and accounts scaled to about `events` in all."""
        if events < 1:
            raise ScenarioError(f"--events must be at least 1, got {events}.")
        f = events / max(1, self.total_events())

        def sc(n: int) -> int:
            return 0 if n == 0 else max(1, int(round(n * f)))

        upd: dict[str, object] = {
            "casual": self.casual.model_copy(
                update={"accounts": sc(self.casual.accounts), "events": sc(self.casual.events),
                        "cgnat_pool": sc(self.casual.cgnat_pool)}
            ),
            "developer": self.developer.model_copy(
                update={"accounts": sc(self.developer.accounts), "events": sc(self.developer.events)}
            ),
            "template_developer": self.template_developer.model_copy(
                update={"accounts": sc(self.template_developer.accounts),
                        "events": sc(self.template_developer.events)}
            ),
            "enterprise_batch": self.enterprise_batch.model_copy(
                update={"accounts": sc(self.enterprise_batch.accounts),
                        "events": sc(self.enterprise_batch.events)}
            ),
            "classroom": self.classroom.model_copy(update={"classes": sc(self.classroom.classes)}),
            "eval_runner": self.eval_runner.model_copy(
                update={"accounts": sc(self.eval_runner.accounts), "events": sc(self.eval_runner.events)}
            ),
            "reseller": self.reseller.model_copy(
                update={"accounts": sc(self.reseller.accounts), "events": sc(self.reseller.events)}
            ),
            **{
                name: getattr(self, name).model_copy(
                    update={"accounts": sc(getattr(self, name).accounts), "events": sc(getattr(self, name).events)}
                )
                for name in ("students", "judge_lab", "benchmark_researcher", "oss_app_developer")
            },
            "campaigns": [
                c.model_copy(
                    update={
                        "accounts": sc(c.accounts),
                        "events": sc(c.events),
                        "proxy_ips": sc(c.proxy_ips),
                        "payment_pool": sc(c.payment_pool),
                        "reseller_benign_events": sc(c.reseller_benign_events),
                    }
                )
                for c in self.campaigns
            ],
        }
        return self.model_copy(update=upd)


def campaign_family(spec: CampaignSpec) -> str:
    """The shape family a campaign belongs to (held-out evaluation, benchmarks/family_matrix.py):
    its `family` knob, else derived from what its accounts share and how it is carried."""
    if spec.family:
        return spec.family
    if spec.links == "none":
        return "content_only"
    if spec.links != "shared":
        return f"single_link_{spec.links}"
    if spec.via_reseller_share > 0:
        return "reseller_carried"
    if spec.content == "self_instruct_templates":
        return "templated"
    return "hydra"


def default_scenario_text() -> str:
    """The text of the shipped, commented default scenario (copy it and edit)."""
    return resources.files("distillguard.simulate").joinpath("default_scenario.toml").read_text("utf-8")


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate a scenario from TOML text; every problem is reported at once."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"The scenario {source} is not valid TOML: {exc}.") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(
            f"The scenario {source} is invalid ({exc.error_count()} problem(s)): {problems}. "
            "Compare it with `distillguard simulate --print-default-scenario`."
        ) from exc


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario TOML file, or the shipped default when `path` is None."""
    if path is None:
        return parse_scenario(default_scenario_text(), "default_scenario.toml")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"The scenario file {p} cannot be read ({exc.strerror}).") from exc
    return parse_scenario(text, str(p))


def window_bounds_us(s: Scenario) -> tuple[int, int]:
    """Window start and end in microseconds since the epoch."""
    start = int(s.window.start.timestamp() * 1_000_000)
    return start, start + int(math.floor(s.window.days * 86400 * 1_000_000))
