"""Elicitation wrappers written per account: step-by-step and rubric-grading requests around a
task, composed from a small phrase grammar and then reworded, so that every account of a
content-only campaign has its own paraphrase of the wrapper (issue 14 part 5), and students
word their requests in their own, looser way.

Every phrase here was written for this project; none is copied from a corpus.
"""

from __future__ import annotations

import random

from distillguard.simulate._text import perturb, reword

STEP_INTROS = [
    "", "Here is a problem.\n\n", "Problem:\n", "Task: ", "I need a full worked solution for this.\n\n",
    "Please solve this.\n\n", "Work on the following.\n\n", "Exercise:\n", "Solve the problem below.\n\n",
    "Consider the following task.\n\n", "Question:\n", "The task is as follows.\n\n",
]
STEP_INSTRUCTIONS = [
    "Think step by step.", "Let's think step by step.", "Walk through your reasoning one step at a time.",
    "Show every intermediate step before the final answer.", "Reason carefully and explain each step.",
    "Break the solution into numbered steps.", "Explain your thinking in detail before answering.",
    "Write out your full chain of reasoning.", "Go step by step and justify each step.",
    "Lay out the reasoning step-by-step, then conclude.", "Before answering, reason it through in small steps.",
    "Describe each step of the solution and why it is needed.",
]
STEP_FORMATS = [
    "", "Give the final answer on the last line.", "End with 'Final answer: <answer>'.",
    "Put the final answer in \\boxed{}.", "Finish with 'Answer:' followed by the result.",
    "State the final result clearly at the end.", "Then give the answer in one line.",
    "Mark the final answer with ####.", "Conclude with the answer only, on its own line.",
]
RUBRIC_INSTRUCTIONS = [
    "Grade the response below on a 1-10 scale.", "You are grading an answer. Score it from 1 to 10.",
    "Evaluate the following answer for correctness and completeness and give it a score out of 10.",
    "Rate the response with a rubric of correctness, completeness and clarity.",
    "Act as a strict grader and assess the answer below.", "Judge how good the answer to the question is.",
    "Assess the quality of this response as a teacher would.", "Review the answer and mark it.",
]
RUBRIC_FORMATS = [
    "Justify each criterion step by step, then write 'Score: N'.",
    "Explain the grade step by step and end with 'Grade: N/10'.",
    "List every flaw, reason about each one, then give the score as [[N]].",
    "Think through correctness first, then clarity, then output 'Rating: N'.",
    "Give a short rationale per criterion and a final score from 1 to 10.",
    "Reason step by step about what is right and wrong before you give the mark.",
]
RUBRIC_RESPONSE_HEADS = ["Response:\n", "Answer to grade:\n", "Candidate answer:\n", "The answer:\n", "Model output:\n"]

# How students ask: looser, varied per request, often with a greeting or context.
STUDENT_ASKS = [
    "can you explain how to solve this step by step", "pls help with my homework, show the steps",
    "I don't get this problem, can you walk me through it step by step?",
    "how do I do this one? explain each step please", "Could you show me the steps for this question?",
    "i'm stuck on this, can you break it down", "Explain the solution step by step so I understand it",
    "what's the method here? step by step pls", "Help me understand how to get the answer",
    "Can you solve this and explain your reasoning?", "homework question, please show working",
    "can u explain this like a tutor would",
]
STUDENT_FOLLOWUPS = [
    "why is step 2 like that?", "I still don't get the second step", "can you check my answer? I got a different number",
    "ok but why do we divide there", "thanks! can you give me a similar problem to practice?",
    "is there an easier way?", "wait, where did that number come from", "can you explain it more simply",
    "what if the numbers were different?", "thank you!!", "my teacher said the answer is different, are you sure?",
]


def step_wrapper(r: random.Random) -> tuple[str, str]:
    """One paraphrase of a step-by-step elicitation: the text before and after the task."""
    intro, instr, fmt = r.choice(STEP_INTROS), r.choice(STEP_INSTRUCTIONS), r.choice(STEP_FORMATS)
    tail = reword(" ".join(p for p in (instr, fmt) if p), r, 0.6)
    return (intro, f"\n\n{tail}") if r.random() < 0.6 else (f"{tail}\n\n{intro}", "")


def rubric_parts(r: random.Random) -> tuple[str, str]:
    """One paraphrase of a rubric-grading request: the instruction and the heading of the
    response to grade (before it), and the closing format instruction (after the question).
    The response and the question's heading come in between."""
    instr = reword(r.choice(RUBRIC_INSTRUCTIONS), r, 0.6)
    return f"{instr}\n\n{r.choice(RUBRIC_RESPONSE_HEADS)}", "\n\n" + reword(r.choice(RUBRIC_FORMATS), r, 0.6)


def student_wrapper(r: random.Random) -> tuple[str, str]:
    """How one student asks for one problem (drawn per request, not per account): the text
    before and after the problem."""
    ask = r.choice(STUDENT_ASKS)
    ask = perturb(ask, r) if r.random() < 0.5 else ask  # typos in the student's words, never in the slot
    return (f"{ask}\n\n", "") if r.random() < 0.7 else ("", f"\n\n{ask}")
