"""Distillation measured: a teacher, what a flagged account is served, students trained on it.

The two numbers of the evaluation literature (Jiang 2026, arXiv 2603.07835):

- distillation effectiveness = student accuracy after distilling from defended answers /
  student accuracy after distilling from undefended answers (1 = the defence changes
  nothing, 0 = the student learns nothing that matters);
- distillation cost = 1 - accuracy of the defended answers / accuracy of the undefended
  answers, both as served to the harvesting account (what a person asking loses).

One teacher is trained on correct worked examples of a task (`TestbedConfig.task`: column
addition, or stack-machine programs for expressions); the attacker harvests the teacher's
answers to its own prompts; each defence rewrites (or, for antidistillation sampling,
changes how the teacher generates) what is served; one student per seed is trained on the
served pairs and scored on unseen problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from distillguard.antidistill import _charlm as lm
from distillguard.antidistill._adsampling import ADSConfig, AntidistillHook, loss_gradient
from distillguard.antidistill._defences import Defence, stated_result
from distillguard.antidistill._task import ANSWER_MARK
from distillguard.antidistill._tasks import TASKS, Addition, Code, Task

ADS = "antidistill-sampling"
# characters of generation beyond the longest served answer (a student's answer may run longer)
ANSWER_ROOM = 24
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TestbedConfig:
    """Sizes of one experiment; the defaults run in minutes on two CPU cores."""

    task: str = "addition"  # one of TASKS
    digits: int = 4  # addition: operand digits
    n_ops: int = 3  # code: operators per expression
    commute: float = 0.5  # code: share of + and * whose operands a worked example swaps
    teacher_examples: int = 20_000
    harvest: int = 2_000
    test: int = 400
    teacher: lm.LMConfig = field(default_factory=lambda: lm.LMConfig(steps=2000))
    proxy: lm.LMConfig = field(default_factory=lambda: lm.LMConfig(n_embd=64, steps=300))
    student: lm.LMConfig = field(default_factory=lambda: lm.LMConfig(n_embd=64, steps=1500))
    seeds: tuple[int, ...] = (0, 1, 2)
    # sampled at temperature 0.5 within the teacher's 0.95 nucleus: at temperature 1 a teacher
    # of a few CPU minutes writes wrong steps often enough to cost more than the target alone
    ads: ADSConfig = field(default_factory=lambda: ADSConfig(temperature=0.5, top_p=0.95))
    # antidistillation sampling is measured at each of these tilts (one proxy for all): the
    # tilt trades the served answers' accuracy (cost) against what a student learns; 0 is the
    # teacher sampled the same way without a tilt; a tilt far larger than the teacher's logits
    # picks the token the proxy's loss gains most from, right or wrong (its cost says which)
    ads_lams: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 30.0)
    # students are trained at every tilt whose cost is within this (beyond it the served
    # answers are too often wrong to be an operating point)
    ads_student_max_cost: float = 0.1
    # the tilt shapes the reasoning only and the answer after it is the teacher's greedy
    # choice (True), or every token is tilted (False); None: the task's `answer_forcing`
    ads_reasoning_only: bool | None = None
    # the task's text defences, those given to `run_testbed`, and ADS
    defences: tuple[str, ...] = ("none", "withhold", "summarise", "rewrite", ADS)

    def make_task(self) -> Task:
        if self.task == "addition":
            return Addition(digits=self.digits)
        if self.task == "code":
            return Code(n_ops=self.n_ops, commute=self.commute)
        raise ValueError(f"unknown task {self.task!r}; choose from {TASKS}")

    @property
    def max_new(self) -> int:
        return self.make_task().longest + ANSWER_ROOM

    @property
    def ads_answer_forced(self) -> bool:
        """Whether antidistillation sampling leaves the answer untilted (`ads_reasoning_only`)."""
        return self.make_task().answer_forcing if self.ads_reasoning_only is None else self.ads_reasoning_only


@dataclass(frozen=True)
class DefenceResult:
    """One defence: the served answers' accuracy and each seed's student accuracy."""

    defence: str
    served_accuracy: float
    student_accuracy: tuple[float, ...]
    served_chars: float  # mean length of what was served
    served_n: int = 0  # answers served (the harvest)
    # every served answer states the undefended answer's result word for word (a reasoning
    # defence): a harvester who drops the rest trains on the undefended results
    answer_kept: bool = True

    @property
    def mean(self) -> float:
        """Mean student accuracy over seeds (nan where no student was trained)."""
        return float(np.mean(self.student_accuracy)) if self.student_accuracy else float("nan")

    def served_ci95(self) -> tuple[float, float]:
        """Wilson interval of the served answers' accuracy."""
        from scipy import stats

        if self.served_n < 1:
            return (self.served_accuracy, self.served_accuracy)
        k = round(self.served_accuracy * self.served_n)
        ci = stats.binomtest(k, self.served_n).proportion_ci(0.95, method="wilson")
        return (float(ci.low), float(ci.high))

    def ci95(self) -> tuple[float, float]:
        """t interval of the mean student accuracy over seeds."""
        from scipy import stats

        acc = np.asarray(self.student_accuracy)
        if acc.size < 2:
            return (self.mean, self.mean)
        half = float(stats.t.ppf(0.975, acc.size - 1) * acc.std(ddof=1) / np.sqrt(acc.size))
        return (self.mean - half, self.mean + half)


@dataclass(frozen=True)
class TestbedResult:
    teacher_accuracy: float
    results: tuple[DefenceResult, ...]

    def get(self, defence: str) -> DefenceResult:
        return next(r for r in self.results if r.defence == defence)

    def effectiveness(self, defence: str) -> float:
        base = self.get("none").mean
        return effectiveness(self.get(defence).mean, base)

    def cost(self, defence: str) -> float:
        return cost(self.get(defence).served_accuracy, self.get("none").served_accuracy)


def effectiveness(student: float, undefended_student: float) -> float:
    """Student accuracy kept under a defence (1 when the undefended student learnt nothing)."""
    return student / undefended_student if undefended_student > 0 else 1.0


def cost(served: float, undefended_served: float) -> float:
    """Share of correct answers a defence takes from the person asking (0 when none were)."""
    return 1.0 - served / undefended_served if undefended_served > 0 else 0.0


def results_kept(served: Sequence[str], plain: Sequence[str]) -> bool:
    """Whether every served answer states its undefended answer's result (from `A:` on)."""
    return all(stated_result(s) == stated_result(p) for s, p in zip(served, plain, strict=True))


def accuracy(task: Task, probs: Sequence[object], answers: Sequence[str]) -> float:
    return float(np.mean([task.is_correct(p, a) for p, a in zip(probs, answers, strict=True)]))


def ads_name(lam: float) -> str:
    """The result name of antidistillation sampling at tilt `lam`."""
    return f"{ADS} lam={lam:g}"


def _arms(cfg: TestbedConfig, known: Mapping[str, Defence]) -> list[tuple[str, float | None]]:
    """(result name, tilt) of every arm: one per text defence, one per tilt for ADS."""
    out: list[tuple[str, float | None]] = []
    for name in cfg.defences:
        if name == ADS:
            out += [(ads_name(lam), lam) for lam in cfg.ads_lams]
        elif name in known:
            out.append((name, None))
        else:
            raise ValueError(f"unknown defence {name!r}; choose from {[*known, ADS]}")
    return out


def _students_for(cfg: TestbedConfig, served_accuracy: dict[str, float]) -> set[str]:
    """The arms students are trained on: every text defence, and antidistillation sampling at
    every tilt whose cost is within `ads_student_max_cost` (else the mildest tilt). Students
    are the expensive part; tilts that cost more report their cost only."""
    tilts = [ads_name(lam) for lam in sorted(cfg.ads_lams) if ads_name(lam) in served_accuracy]
    out = {n for n in served_accuracy if n not in tilts}
    base = served_accuracy.get("none", 0.0)
    within = [n for n in tilts if cost(served_accuracy[n], base) <= cfg.ads_student_max_cost]
    out |= set(within) if within else set(tilts[:1])
    return out


@dataclass(frozen=True)
class Taught:
    """A trained teacher, the problems of one experiment and the teacher's plain answers."""

    task: Task
    teacher: Any
    harvest: list[Any]  # the attacker's prompts
    test: list[Any]  # unseen problems students are scored on
    served_plain: list[str]  # the teacher's greedy answers to the harvest
    accuracy: float  # the teacher's on the test problems


def teach(cfg: TestbedConfig, progress: Progress | None = None) -> Taught:
    """Train the teacher on worked examples and answer the harvest with it."""
    say = progress or (lambda _m: None)
    task = cfg.make_task()
    rng = np.random.default_rng(1234)
    examples = task.problems(cfg.teacher_examples, rng)
    harvest = task.problems(cfg.harvest, rng)
    test = task.problems(cfg.test, rng)
    say(f"teacher: {cfg.teacher.steps} steps on {len(examples):,} worked examples ({task.describe()})")
    teacher = lm.train(lm.build(cfg.teacher, 0), [(p.prompt, task.worked(p, rng)) for p in examples], cfg.teacher,
                       0, lambda s, loss: say(f"  teacher step {s}: loss {loss:.3f}"))
    served_plain = lm.generate(teacher, [p.prompt for p in harvest], cfg.max_new)
    teacher_acc = accuracy(task, test, lm.generate(teacher, [p.prompt for p in test], cfg.max_new))
    say(f"teacher accuracy on unseen problems: {teacher_acc:.3f}")
    return Taught(task, teacher, harvest, test, served_plain, teacher_acc)


def serve(taught: Taught, defence: Defence) -> list[str]:
    """What a text defence serves for each harvested answer (one seeded draw for all)."""
    rng = np.random.default_rng(5)
    return [defence(s, rng) for s in taught.served_plain]


def student_accuracy(cfg: TestbedConfig, taught: Taught, served: Sequence[str], seed: int) -> float:
    """Accuracy on the test problems of one student trained on the served harvest."""
    pairs = [(p.prompt, s) for p, s in zip(taught.harvest, served, strict=True)]
    # a student writes in the form it was served: room for the longest served answer
    room = max(cfg.max_new, max(len(s) for s in served) + ANSWER_ROOM)
    student = lm.train(lm.build(cfg.student, 100 + seed), pairs, cfg.student, 100 + seed)
    return accuracy(taught.task, taught.test, lm.generate(student, [p.prompt for p in taught.test], room))


def run_testbed(cfg: TestbedConfig, progress: Progress | None = None,
                on_round: Callable[[TestbedResult], None] | None = None,
                extra: Mapping[str, Defence] | None = None, taught: Taught | None = None) -> TestbedResult:
    """Train the teacher (unless `taught` is given), serve the harvest under each defence,
    train and score the students.

    `on_round` gets the results so far after each student seed (every arm at that seed);
    `extra` adds text defences by name beside the task's own (any task: they get the served
    answer as text), for `cfg.defences` to name.
    """
    say = progress or (lambda _m: None)
    taught = taught or teach(cfg, say)
    task, harvest, served_plain = taught.task, taught.harvest, taught.served_plain
    known = {**task.defences, **(extra or {})}
    served_by: dict[str, list[str]] = {}
    sampler: _Sampler | None = None
    for name, lam in _arms(cfg, known):
        if lam is None:
            served_by[name] = serve(taught, known[name])
        else:
            sampler = sampler or _Sampler(cfg, task, taught.teacher, harvest, served_plain, say)
            served_by[name] = sampler.serve(lam)
            say(f"{name}: served accuracy {accuracy(task, harvest, served_by[name]):.3f}")
    trained = _students_for(cfg, {n: accuracy(task, harvest, s) for n, s in served_by.items()})
    accs: dict[str, list[float]] = {name: [] for name in served_by}
    res = TestbedResult(taught.accuracy, ())
    # seed by seed, every arm: a run cut short still has every defence at the seeds it finished
    for seed in cfg.seeds:
        for name in (n for n in served_by if n in trained):
            accs[name].append(student_accuracy(cfg, taught, served_by[name], seed))
            say(f"{name}: seed {seed} student {accs[name][-1]:.3f}")
        res = TestbedResult(taught.accuracy, tuple(
            DefenceResult(name, accuracy(task, harvest, served), tuple(accs[name]),
                          float(np.mean([len(s) for s in served])), len(served), results_kept(served, served_plain))
            for name, served in served_by.items()))
        if on_round is not None:
            on_round(res)
    return res


class _Sampler:
    """Antidistillation sampling of the harvest: one proxy student, any tilt.

    The proxy is a small student fine-tuned briefly on the teacher's plain answers to the
    harvest; its loss gradient is taken on worked answers to other problems (the downstream
    task whose learning the tilt works against)."""

    def __init__(self, cfg: TestbedConfig, task: Task, teacher: object, harvest: Sequence[object],
                 served_plain: Sequence[str], say: Progress) -> None:
        rng = np.random.default_rng(99)
        proxy_pairs = [(p.prompt, s) for p, s in zip(harvest, served_plain, strict=True)]  # type: ignore[attr-defined]
        proxy = lm.train(lm.build(cfg.proxy, 7), proxy_pairs, cfg.proxy, 7)
        worked = [(p.prompt, task.worked(p, rng)) for p in task.problems(512, rng)]
        self.hook = AntidistillHook(proxy, loss_gradient(proxy, worked), cfg.ads)
        self.cfg, self.teacher, self.harvest = cfg, teacher, harvest
        say(f"{ADS}: proxy trained ({cfg.proxy.steps} steps)")

    def serve(self, lam: float) -> list[str]:
        self.hook.cfg = replace(self.hook.cfg, lam=lam)
        return lm.generate(self.teacher, [p.prompt for p in self.harvest], self.cfg.max_new,  # type: ignore[attr-defined]
                           greedy=False, temperature=self.cfg.ads.temperature, hook=self.hook, seed=11,
                           answer_start=ANSWER_MARK[0] if self.cfg.ads_answer_forced else None)
