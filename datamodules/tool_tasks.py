"""A synthetic tool library of confusable tool families for ToolVerifier (Mekala et al. 2024, "ToolVerifier:
Generalization to New Tools via Self-Verification"), sized for a tiny model, with some families and some siblings
held out as unseen tools, and the SFT rows of every program step built from templates on seen tools only.

The library: a family is a topic ("weather", "traffic", ...); its six tools are the topic x a time ("now",
"tomorrow", "last year") x a place ("city", "country"). A tool's description names its three attributes ("weather
tomorrow by city"), its library name is an opaque three-letter code, and its one parameter is its place ("city" or
"country"), filled with the place the request is about. What an input shows as a candidate's name is `names`:
"descriptive" spells the attributes ("weather-tomorrow-city"), as real APIs' names do; "numbered" gives option
numbers ("weather tomorrow by city: 2"; the answer is the number on the matching line, the default); "random" fresh
random codes; "fixed" the library's codes. Siblings differ in one attribute: the hard negatives of a candidate set.

A request names the topic, a place and a time in other words ("weather in Lima next day?": Lima is a city, "next
day" is tomorrow); half of them add a distractor place of the same kind ("..., not Oslo?").

Unseen tools: `unseen_families` whole families, and one tool of every other family, chosen with the library seed.
SFT rows see seen tools only (in requests and in candidate sets); evaluation inputs draw candidates from the whole
library, seen requests with a seen gold tool, unseen requests with an unseen one.

SFT rows, `{"prompt", "response", "skill", "question"}` (the programs' default templates, `plugins/tools/base.py`):
    select     the candidates and the request -> " <name>"                              (DirectSelection)
    reason     the candidates and the request -> " <thought>\\nAction: <name>"          (ReasoningSelection)
    contrast   two descriptions -> " <a> or <b>?" (the first attribute they differ in)  (ToolVerifier)
    answer     the request and the question -> " <the gold tool's value>"
    choose     the request, the pair, the question and answer -> " <name>"
    fill       the gold tool's description and the request -> " <value>"            (ParameterVerification)
    vcontrast  two values -> " <a> or <b>?";  vchoose  the request and the question -> " <value>"
Verification pairs are the gold tool and another of the input's candidates (a sibling when there is one, three times
in four), in random order.

Departures from the paper:
    1. Templates stand in for Llama-2 70B's self-generated data (ToolSelect): thoughts ("Lima is a city;
       tomorrow"), contrastive questions and answers are written by rule from the tools' attributes.
    2. Tools have three-attribute descriptions; the paper's tools are real APIs with prose descriptions, and its
       unseen tools are ToolBench's.
    3. The shipped configs show descriptive names and read a word a token (`ToolSFTDataModule(vocab_size=1024)`).
       Measured on a 96-wide 2-layer model, 600 steps (issue 17): with opaque names it never picks an unseen tool
       (fixed codes: 0 of 100) or picks at chance (random codes 0.26 / 0.22 seen / unseen; numbered options 0.25 /
       0.23, bytes or word tokens alike, even 4 layers and 2000 steps): it parses the request (thought 0.70 exact,
       contrastive answer 0.93) but learns no lookup of a line by its content. With descriptive names it composes the
       name from the request: seen ~1.0, unseen ~0.42, where it writes a seen tool's name for an unseen one.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
import string
from dataclasses import replace
from typing import Any

from litforge.plugins.tools.base import (
    ACTION,
    ANSWER,
    CHOOSE,
    CONTRAST,
    FILL,
    REASON,
    SELECT,
    TOOL_FORMAT,
    VALUE_CHOOSE,
    VALUE_CONTRAST,
)
from litforge.plugins.tools.library import Parameter, Tool, ToolLibrary

TOPICS = ["weather", "traffic", "news", "prices", "events", "hotels", "jobs", "flights", "sports", "rent"]
TIMES = {"now": ["now", "right now", "today"], "tomorrow": ["tomorrow", "next day"],
         "last year": ["last year", "a year ago"]}
PLACES = {"city": ["Paris", "Rome", "Lima", "Oslo", "Cairo", "Tokyo", "Delhi", "Quito"],
          "country": ["France", "Italy", "Peru", "Norway", "Egypt", "Japan", "India", "Chile"]}
REQUESTS = ["{topic} in {place} {time}?", "{topic} for {place}, {time}?", "what about {topic} in {place} {time}?"]
KEYS = ("topic", "time", "place")
NAMES = ("numbered", "random", "fixed", "descriptive")
SKILLS = ("select", "reason", "contrast", "answer", "choose", "fill", "vcontrast", "vchoose")


def line(tool: Tool) -> str:
    """A candidate's line, as the programs' default `tool_format` writes it."""
    return TOOL_FORMAT.format(name=tool.name, description=tool.description)


def descriptive_name(tool: Tool) -> str:
    """A name that spells the tool's attributes, as real APIs' names do: "weather-tomorrow-city"."""
    return "-".join(tool.attribute(key).replace(" ", "-") for key in KEYS)


def contrast(a: Tool, b: Tool) -> tuple[str, str, str]:
    """The first attribute two tools differ in, and each one's value of it."""
    key = next(key for key in KEYS if a.attribute(key) != b.attribute(key))
    return key, a.attribute(key), b.attribute(key)


class ToolTask:
    """The synthetic tool library, its requests, and the SFT rows of every program step.

    Args:
        candidates: tools per candidate set (the gold one included).
        hard: siblings among them (hard negatives; the rest are drawn from the whole library).
        unseen_families: families held out whole (the last ones of TOPICS).
        distractor: share of requests that add a distractor place of the same kind.
        library_seed: seed of the tool names and of the held-out siblings (a fixed library across run seeds).
        names: what an input shows as its candidates' names: "numbered" (their option numbers 1..N in the order
            shown, a one-token name to copy), "random" (fresh random codes of `name_length` letters, drawn with the
            input's generator) or "fixed" (the library's own codes, which a tiny model memorises).
        name_length: letters of a "random" name.
        skill_weights: relative shares of the SFT skills, in the order of SKILLS.
    """

    def __init__(self, candidates: int = 4, hard: int = 2, unseen_families: int = 2, distractor: float = 0.5,
                 library_seed: int = 0, names: str = "numbered", name_length: int = 3,
                 skill_weights: tuple[float, ...] = (1, 1, 1, 1, 1, 1, 0.5, 0.5)):
        if not 2 <= candidates <= 12:
            raise ValueError(f"candidates must be in 2..12, got {candidates}")
        if len(skill_weights) != len(SKILLS):
            raise ValueError(f"skill_weights needs {len(SKILLS)} weights ({', '.join(SKILLS)})")
        self.size, self.hard, self.distractor = candidates, hard, distractor
        if names not in NAMES:
            raise ValueError(f"names must be one of {', '.join(NAMES)}, got {names!r}")
        self.skill_weights, self.names = tuple(skill_weights), names
        if not 1 <= name_length <= 3:
            raise ValueError(f"name_length must be 1, 2 or 3, got {name_length}")
        letters = string.ascii_lowercase
        self.codes = ["".join(code) for code in itertools.product(letters, repeat=name_length)]
        rng = random.Random(library_seed)
        codes = rng.sample(["".join(code) for code in itertools.product(letters, repeat=3)], 6 * len(TOPICS))
        tools, unseen = [], set()
        for f, topic in enumerate(TOPICS):
            family = []
            for time in TIMES:
                for place in PLACES:
                    name = codes[len(tools) + len(family)]
                    family.append(Tool(name, f"{topic} {time} by {place}",
                                       (Parameter(place, "string", f"the {place}"),), topic,
                                       (("place", place), ("time", time), ("topic", topic))))
            if f >= len(TOPICS) - unseen_families:
                unseen.update(tool.name for tool in family)
            else:
                unseen.add(rng.choice(family).name)
            tools += family
        self.library = ToolLibrary(tools)
        self.seen = ToolLibrary(tool for tool in tools if tool.name not in unseen)
        self.unseen = [tool for tool in tools if tool.name in unseen]

    def request(self, gold: Tool, rng: random.Random) -> dict[str, Any]:
        """A request for `gold`: `{"question", "arguments"}`."""
        place_kind, time = gold.attribute("place"), gold.attribute("time")
        place = rng.choice(PLACES[place_kind])
        question = rng.choice(REQUESTS).format(topic=gold.attribute("topic"), place=place,
                                               time=rng.choice(TIMES[time]))
        if rng.random() < self.distractor:
            other = rng.choice([p for p in PLACES[place_kind] if p != place])
            question = question[:-1] + f", not {other}?"
        return {"question": question, "arguments": {place_kind: place}}

    def item(self, gold: Tool, library: ToolLibrary, rng: random.Random) -> dict[str, Any]:
        """A program input: the request, its candidates from `library` (gold once), the label and the arguments."""
        item = self.request(gold, rng)
        candidates = library.candidates(gold, self.size, self.hard, rng)
        label = gold.name
        if self.names != "fixed":
            names = ([str(k) for k in range(1, len(candidates) + 1)] if self.names == "numbered"
                     else [descriptive_name(tool) for tool in candidates] if self.names == "descriptive"
                     else rng.sample(self.codes, len(candidates)))
            label = names[[tool.name for tool in candidates].index(gold.name)]
            candidates = [replace(tool, name=name) for tool, name in zip(candidates, names)]
        item.update(candidates=candidates, label=label)
        return item

    def inputs(self, split: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
        """`count` evaluation inputs of a split ("seen": seen gold tools; "unseen": unseen ones), candidates drawn
        from the whole library."""
        golds = self.seen.tools if split == "seen" else self.unseen
        return [self.item(rng.choice(golds), self.library, rng) for _ in range(count)]

    def thought(self, item: dict[str, Any], gold: Tool) -> str:
        """The reasoning note of a request: which kind of place it names and which time it means."""
        place = next(iter(item["arguments"].values()))
        return f"{place} is a {gold.attribute('place')}; {gold.attribute('time')}"

    def sft_rows(self, count: int, rng: random.Random) -> list[dict[str, str]]:
        """`count` SFT rows on seen tools only (see the module docstring for the skills)."""
        rows = []
        for _ in range(count):
            item = self.item(rng.choice(self.seen.tools), self.seen, rng)
            gold = next(tool for tool in item["candidates"] if tool.name == item["label"])
            skill = rng.choices(SKILLS, weights=self.skill_weights)[0]
            rows.append(dict(self.row(skill, item, gold, rng), skill=skill, question=item["question"]))
        return rows

    def corpus(self, count: int = 2000) -> list[str]:
        """Text of the task for training a tokenizer's vocabulary (`ToolSFTDataModule(vocab_size=...)`): every tool's
        description and `count` rows of every skill (prompt and response) over the whole library, unseen tools
        included, drawn with a fixed seed; a vocabulary, not training rows: no model is trained on them."""
        rng = random.Random(0)
        texts = [tool.description for tool in self.library.tools]
        for k in range(count):
            item = self.item(rng.choice(self.library.tools), self.library, rng)
            gold = next(tool for tool in item["candidates"] if tool.name == item["label"])
            row = self.row(SKILLS[k % len(SKILLS)], item, gold, rng)
            texts.append(row["prompt"] + row["response"])
        return texts

    def row(self, skill: str, item: dict[str, Any], gold: Tool, rng: random.Random) -> dict[str, str]:
        """One `{"prompt", "response"}` row of a skill for an input whose gold tool is `gold`."""
        question, tools = item["question"], "\n".join(line(tool) for tool in item["candidates"])
        if skill == "select":
            return {"prompt": SELECT.format(tools=tools, question=question), "response": f" {gold.name}"}
        if skill == "reason":
            return {"prompt": REASON.format(tools=tools, question=question),
                    "response": f" {self.thought(item, gold)}{ACTION} {gold.name}"}
        if skill in ("contrast", "answer", "choose"):
            others = [tool for tool in item["candidates"] if tool.name != gold.name]
            siblings = [tool for tool in others if tool.is_sibling(gold)]
            negative = rng.choice(siblings if siblings and rng.random() < 0.75 else others)
            a, b = (gold, negative) if rng.random() < 0.5 else (negative, gold)
            key, value_a, value_b = contrast(a, b)
            asked = f"{value_a} or {value_b}?"
            if skill == "contrast":
                return {"prompt": CONTRAST.format(description_a=a.description, description_b=b.description),
                        "response": f" {asked}"}
            if skill == "answer":
                return {"prompt": ANSWER.format(question=question, contrast=asked),
                        "response": f" {gold.attribute(key)}"}
            return {"prompt": CHOOSE.format(question=question, tool_a=line(a), tool_b=line(b), contrast=asked,
                                            answer=gold.attribute(key)), "response": f" {gold.name}"}
        parameter = gold.parameters[0]
        value = item["arguments"][parameter.name]
        if skill == "fill":
            return {"prompt": FILL.format(description=gold.description, question=question,
                                          parameter=parameter.name), "response": f" {value}"}
        wrong = rng.choice([p for p in PLACES[parameter.name] if p != value])
        value_a, value_b = (value, wrong) if rng.random() < 0.5 else (wrong, value)
        asked = f"{value_a} or {value_b}?"
        if skill == "vcontrast":
            return {"prompt": VALUE_CONTRAST.format(parameter=parameter.name,
                                                    parameter_description=parameter.description, value_a=value_a,
                                                    value_b=value_b), "response": f" {asked}"}
        return {"prompt": VALUE_CHOOSE.format(question=question, contrast=asked, parameter=parameter.name),
                "response": f" {value}"}


def toolselect_csv(items: list[dict[str, Any]]) -> str:
    """Program inputs written in the ToolSelect CSV layout `read_toolselect_csv` reads (`query,tools,tool,
    arguments`)."""
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["query", "tools", "tool", "arguments"])
    for item in items:
        writer.writerow([item["question"], json.dumps([tool.as_dict() for tool in item["candidates"]]), item["label"],
                         json.dumps(item["arguments"])])
    return handle.getvalue()
