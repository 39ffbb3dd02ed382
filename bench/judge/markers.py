"""Reading a pair back out of a prompt formatted with one of our marker templates.

AlpacaEval hands a completion function only the formatted prompts, not the rows. Our Python judges that score
the texts themselves (toy, reward_model) therefore use a template of unambiguous markers
(annotators/<judge>_judge/prompt.txt) and split the prompt back into instruction and outputs here.
"""

from __future__ import annotations

# The markers of the toy_judge and reward_model_judge templates, in order.
MARKERS = ("<|instruction|>", "<|output_1|>", "<|output_2|>", "<|end|>")


def parse_marked_prompt(prompt: str, judge: str = "judge") -> tuple[str, str, str]:
    """(instruction, output_1, output_2) from a prompt formatted with a marker template.

    Raises ValueError when a marker is missing or repeated: an output that contained a marker would make the
    split ambiguous, and a judge must fail loudly rather than score the wrong text.
    """
    for marker in MARKERS:
        if prompt.count(marker) != 1:
            raise ValueError(
                f"{judge}: expected the marker {marker!r} exactly once in the formatted prompt, found "
                f"{prompt.count(marker)} (an output containing a marker, or the wrong prompt template?)"
            )
    starts = [prompt.index(m) for m in MARKERS]
    if starts != sorted(starts):
        raise ValueError(f"{judge}: markers of the formatted prompt are out of order")
    # Each field runs from the end of its marker to the newline before the next marker (the template's own).
    fields = [
        prompt[start + len(marker) : nxt].removesuffix("\n")
        for marker, start, nxt in zip(MARKERS[:3], starts[:3], starts[1:], strict=True)
    ]
    return fields[0], fields[1], fields[2]
