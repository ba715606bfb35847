"""The synthetic tasks of the CoPE paper (Golovneva et al. 2024, §4): counting, Flip-Flop and selective copy.

Every example is a prompt/response pair (loss on the response only), drawn from a `random.Random`; the DataModules
that serve them are in `datamodules/cope_data.py`.

Departures from the paper:
1. Text is written for litforge's byte-level tokenizer: one character per token, statements separated by spaces.
2. Counting programs are short (`min_statements`..`max_statements`, default 8..24) and start by setting every
   variable to 0, so the answer is always defined; an increment that would pass `max_value` is written as `pass;`.
3. Flip-Flop asks only for the last read's bit (instructions are two characters: `w1`, `i0`, `r1`); selective copy
   uses 8 letters and `.` as the blank.
"""

from __future__ import annotations

import random

from litforge.errors import require

VARIABLES = "xyzuv"


def counting_example(rng: random.Random, num_vars: int = 1, min_statements: int = 8, max_statements: int = 24,
                     max_value: int = 10) -> dict[str, str]:
    """A program of `pass;` (weight 50), `v ++;` (7) and `v = 0 ;` (1), then `print v`; response: v's value."""
    require(1 <= num_vars <= len(VARIABLES), "num_vars", f"must be in 1..{len(VARIABLES)}, got {num_vars}")
    require(0 <= min_statements <= max_statements, "max_statements",
            f"must be >= min_statements={min_statements} >= 0, got {max_statements}")
    names = VARIABLES[:num_vars]
    values = dict.fromkeys(names, 0)
    statements = [f"{name} = 0 ;" for name in names]
    for _ in range(rng.randint(min_statements, max_statements)):
        kind = rng.choices(("pass", "inc", "reset"), weights=(50, 7, 1))[0]
        name = rng.choice(names)
        if kind == "inc" and values[name] < max_value:
            values[name] += 1
            statements.append(f"{name} ++;")
        elif kind == "reset":
            values[name] = 0
            statements.append(f"{name} = 0 ;")
        else:
            statements.append("pass;")
    name = rng.choice(names)
    return {"prompt": " ".join(statements) + f" print {name} ", "response": str(values[name])}


def flipflop_example(rng: random.Random, length: int = 32, p_ignore: float = 0.8) -> dict[str, str]:
    """`length` instructions: first a write, last a read, between them ignore with probability `p_ignore`, else
    write or read (equally); response: the bit of the last write."""
    require(length >= 2, "length", f"must be >= 2, got {length}")
    require(0.0 <= p_ignore <= 1.0, "p_ignore", f"must be in [0, 1], got {p_ignore}")
    memory = rng.choice("01")
    instructions = ["w" + memory]
    for _ in range(length - 2):
        draw = rng.random()
        if draw < p_ignore:
            instructions.append("i" + rng.choice("01"))
        elif draw < p_ignore + (1 - p_ignore) / 2:
            memory = rng.choice("01")
            instructions.append("w" + memory)
        else:
            instructions.append("r" + memory)
    return {"prompt": "".join(instructions) + "r", "response": memory}


def selective_copy_example(rng: random.Random, length: int = 32, num_tokens: int = 8, blank: float = 0.5,
                           alphabet: str = "abcdefgh") -> dict[str, str]:
    """A sequence of `length` positions holding `num_tokens` letters, the rest blank (`.`); response: the letters."""
    require(1 <= num_tokens <= length, "num_tokens", f"must be in 1..length={length}, got {num_tokens}")
    slots = sorted(rng.sample(range(length), num_tokens))
    letters = [rng.choice(alphabet) for _ in slots]
    sequence = ["."] * length
    for slot, letter in zip(slots, letters):
        sequence[slot] = letter
    return {"prompt": "".join(sequence) + "|", "response": "".join(letters)}
