"""Three clearly different synthetic text domains for Branch-Train-MiX (Sukhbaatar et al. 2024): arithmetic,
code-like programs and knowledge statements about a fixed fictional world, each validated on its own.

`DomainDataModule` trains a branch on one domain; `MixedDomainDataModule` trains on an even mix (the seed, the
MoE finetuning and the dense baseline). Both report every domain's validation set as `val_<domain>/loss`, so an
expert's gain on its own domain and loss elsewhere are visible, and routing fractions are logged per domain.
"""

from __future__ import annotations

import random

from litforge.datamodules.base import LMDataModule

from litforge.data import encode_text, pack
from litforge.errors import require

SYLLABLES = ["ka", "lo", "mi", "zu", "ter", "ven", "dra", "qui", "sol", "ba", "nor", "eth", "ix", "pa", "rho", "ul"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _world(size: int = 30) -> list[dict[str, str]]:
    """The fixed fictional world of the knowledge domain: the same facts in every split and run."""
    rng = random.Random(1234)
    return [{"country": _name(rng), "capital": _name(rng), "river": _name(rng), "food": rng.choice(
        ["bread", "rice", "fish", "beans", "cheese", "soup"]), "color": rng.choice(
        ["red", "blue", "green", "gold", "white"])} for _ in range(size)]


WORLD = _world()


def arithmetic_document(rng: random.Random) -> str:
    """Equations with correct results: "17+25=42. 63-8=55. 9*7=63." """
    equations = []
    for _ in range(rng.randint(4, 8)):
        op = rng.choice("+-*")
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "*" else (rng.randint(0, 99), rng.randint(0, 99))
        a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
        equations.append(f"{a}{op}{b}={eval(f'{a}{op}{b}')}.")
    return " ".join(equations)


def code_document(rng: random.Random) -> str:
    """A tiny Python-like program: a function, a list, a loop and a call, with consistent names."""
    fn, var, item = rng.choice(["add", "scale", "step", "mix"]), rng.choice(["xs", "vals", "data"]), rng.choice("ijk")
    k = rng.randint(1, 9)
    values = ", ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(3, 5)))
    body = rng.choice([f"return a + {k}", f"return a * {k}", f"return (a - {k}) * 2"])
    return (f"def {fn}(a):\n    {body}\n{var} = [{values}]\nfor {item} in {var}:\n    print({fn}({item}))\n")


def knowledge_document(rng: random.Random) -> str:
    """Statements about the fictional world (facts repeat across documents, so they can be memorised)."""
    sentences = []
    for _ in range(rng.randint(3, 5)):
        fact = rng.choice(WORLD)
        sentences.append(rng.choice([
            f"The capital of {fact['country']} is {fact['capital']}.",
            f"The river {fact['river']} flows through {fact['capital']}.",
            f"People in {fact['country']} mostly eat {fact['food']}.",
            f"The flag of {fact['country']} is {fact['color']}."]))
    return " ".join(sentences)


DOMAINS = {"arithmetic": arithmetic_document, "code": code_document, "knowledge": knowledge_document}


class MixedDomainDataModule(LMDataModule):
    """Train on an even mix of synthetic domains; validate on each of the three domains separately.

    Args:
        domains: training domains, from "arithmetic", "code", "knowledge" (None = all three).
        num_train: training documents in total (split evenly over `domains`).
        num_val: validation documents per domain.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, domains: list[str] | None = None, num_train: int = 3000, num_val: int = 100, **kwargs):
        super().__init__(**kwargs)
        domains = list(DOMAINS) if domains is None else domains
        unknown = [name for name in domains if name not in DOMAINS]
        require(bool(domains) and not unknown, "domains",
                f"unknown domains {unknown}; known: {', '.join(DOMAINS)}" if unknown else "is empty")
        self.domains = list(domains)
        self.num_train = num_train
        self.num_val = num_val

    def documents(self, domain: str, split: str, count: int) -> list[list[int]]:
        """`count` tokenized documents of one domain, seeded by (seed, domain, split)."""
        rng = random.Random(f"{self.seed}-{domain}-{split}")
        return [encode_text(self.tokenizer, DOMAINS[domain](rng)) for _ in range(count)]

    def load(self, split):
        if split == "train":
            per_domain = max(1, self.num_train // len(self.domains))
            documents = [doc for name in self.domains for doc in self.documents(name, split, per_domain)]
            random.Random(self.seed).shuffle(documents)  # mixed blocks: each block holds several domains
            return pack(documents, self.max_length)
        return {name: pack(self.documents(name, split, self.num_val), self.max_length) for name in DOMAINS}


class DomainDataModule(MixedDomainDataModule):
    """Train one branch on a single synthetic domain (validation still covers all three).

    Args:
        domain: "arithmetic", "code" or "knowledge".
        **kwargs: see `MixedDomainDataModule` (num_train, num_val, ...).
    """

    def __init__(self, domain: str = "arithmetic", **kwargs):
        super().__init__(domains=[domain], **kwargs)
        self.domain = domain
