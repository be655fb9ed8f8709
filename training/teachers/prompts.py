"""Few-shot prompts that ask a teacher to explain a given answer, one set per question type.

The teacher is told the answer (the gold one, or a wrong one for SCOTT's
counterfactual rationales) and writes the explanation; it ends with the
project's answer marker (``ANSWER_MARKER``), so the stated answer can be read back and checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from rationalizer.dataset import Example
from rationalizer.manifest import ANSWER_MARKER
from rationalizer.prompting import format_target

SYSTEM = (
    "You explain answers to questions. Given a question and its answer, write a short, factual explanation "
    f"(one to three sentences) of why the answer is right, then end with \"{ANSWER_MARKER} <answer>.\""
)


@dataclass(frozen=True)
class Demo:
    """One worked example shown to the teacher."""

    question: str
    choices: tuple[str, ...] | None
    answer: str
    rationale: str


DEMOS: dict[str, tuple[Demo, ...]] = {
    "yes_no": (
        Demo("Could a house cat outrun a cheetah?", ("yes", "no"), "no",
             "A cheetah can sprint at about 100 km/h, faster than any other land animal, while a house cat "
             "tops out near 48 km/h."),
        Demo("Is water made of hydrogen and oxygen?", ("yes", "no"), "yes",
             "Each water molecule is two hydrogen atoms bonded to one oxygen atom."),
    ),
    "multiple_choice": (
        Demo("What do plants take from the air to make food?", ("nitrogen", "carbon dioxide", "helium", "smoke"),
             "carbon dioxide",
             "Plants make sugar by photosynthesis, which combines water with carbon dioxide taken from the air."),
        Demo("Where would you put a letter to have it delivered?", ("mailbox", "oven", "river", "drawer"), "mailbox",
             "Letters are delivered by the postal service, which collects them from mailboxes."),
    ),
    "free_form": (
        Demo("Tom has 3 boxes with 4 apples each and eats 2 apples. How many apples are left?", None, "10",
             "3 boxes of 4 apples make 3 * 4 = 12 apples. After eating 2, 12 - 2 = 10 are left."),
        Demo("A train travels 60 km in 1.5 hours. What is its average speed in km/h?", None, "40",
             "Average speed is distance over time: 60 / 1.5 = 40 km/h."),
    ),
}


def question_type(example: Example) -> str:
    """``yes_no``, ``multiple_choice`` or ``free_form``."""
    if not example.choices:
        return "free_form"
    if sorted(c.lower() for c in example.choices) == ["no", "yes"]:
        return "yes_no"
    return "multiple_choice"


def _user(question: str, choices, answer: str) -> str:
    lines = [f"Question: {question}"]
    if choices:
        lines.append("Choices: " + ", ".join(choices))
    lines.append(f"Answer: {answer}")
    return "\n".join(lines)


def chat_messages(example: Example, answer: str) -> list[dict[str, str]]:
    """Chat messages: the instruction, the demos as earlier turns, then this question and answer."""
    messages = [{"role": "system", "content": SYSTEM}]
    for demo in DEMOS[question_type(example)]:
        messages.append({"role": "user", "content": _user(demo.question, demo.choices, demo.answer)})
        messages.append({"role": "assistant", "content": format_target(demo.rationale, demo.answer)})
    messages.append({"role": "user", "content": _user(example.question, example.choices, answer)})
    return messages


def completion_prompt(example: Example, answer: str) -> str:
    """A plain-text few-shot prompt for completion endpoints and base models; stop at a blank line."""
    parts = [SYSTEM, ""]
    for demo in DEMOS[question_type(example)]:
        parts.append(f"{_user(demo.question, demo.choices, demo.answer)}\n"
                     f"Explanation: {format_target(demo.rationale, demo.answer)}\n")
    parts.append(f"{_user(example.question, example.choices, answer)}\nExplanation:")
    return "\n".join(parts)
