"""Offline English sentences for the synthetic corpus: a seeded, template-based grammar.

About forty templates (statements in several tenses, questions, exclamations, requests, lists, comparisons, numbers,
times, dates and money) draw from a vocabulary of several hundred common words that pocketsphinx's English
dictionary knows (names, people, animals, things, food, places, times, verbs, adjectives, adverbs). Every sentence
comes in two forms: ``original`` as it might be printed (digits, ``Dr.``, ``$5``, ``6:30``, ``40%``) and
``spoken`` with all of that written out ("Doctor", "five dollars", "six thirty", "forty percent"); ``spoken`` is what
the voices read and what goes into the transcripts. Sentences have 4-20 spoken words.

Everything is deterministic given the seed (``random.Random``), duplicates are removed (compared on lower-cased
words without punctuation), and :func:`split_sentences` hands out disjoint sets for train/dev/test.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from voxar.corpus.vocab import (
    ADJ_PERSON,
    ADJ_THING,
    ADVERBS,
    ANIMALS,
    COMPARATIVES,
    DAYS,
    FOODS_COUNT,
    FOODS_MASS,
    MONTHS,
    NAMES,
    PERSONS,
    PLACES,
    SURNAMES,
    THINGS,
    TIMES_FUTURE,
    TIMES_PAST,
    VEHICLES,
    VERBS_FOOD,
    VERBS_INTRANS,
    VERBS_PERSON,
    VERBS_THING,
    WEATHER,
    clock_pair,
    money_pair,
    number_words,
    ordinal_suffix,
    ordinal_words,
    year_words,
)

MIN_WORDS = 4
MAX_WORDS = 20

Pair = tuple[str, str]  # (original form, spoken form)


class Sentence(NamedTuple):
    """One sentence: ``original`` (may hold digits and abbreviations) and its fully ``spoken`` form."""

    original: str
    spoken: str


# --------------------------------------------------------------------------------------------- phrases

_AN_EXCEPTIONS = {"honest", "hour"}
_A_EXCEPTIONS = {"one", "uniform", "university", "useful", "unique"}


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for the word that follows."""
    w = word.lower()
    if w in _AN_EXCEPTIONS:
        return "an"
    if w in _A_EXCEPTIONS:
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def _same(text: str) -> Pair:
    return text, text


class _Gen:
    """Phrase makers sharing one ``random.Random``. Each returns an ``(original, spoken)`` pair."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def det_np(self, noun: str, adjectives: tuple[str, ...], dets: tuple[str, ...], p_adj: float = 0.5) -> Pair:
        adj = self.pick(adjectives) if self.chance(p_adj) else ""
        det = self.pick(dets)
        head = f"{adj} {noun}" if adj else noun
        if det == "a":
            det = article(head)
        return _same(f"{det} {head}")

    def person(self) -> Pair:
        """A singular third-person subject/object: a name, a titled surname, or a described person."""
        x = self.r.random()
        if x < 0.3:
            return _same(self.pick(NAMES))
        if x < 0.42:
            title, spoken = self.pick((("Dr.", "Doctor"), ("Mr.", "Mister"), ("Mrs.", "Missus")))
            surname = self.pick(SURNAMES)
            return f"{title} {surname}", f"{spoken} {surname}"
        if x < 0.47:
            return _same(f"{self.pick(NAMES)} {self.pick(SURNAMES)}")
        noun = self.pick(PERSONS)[0]
        return self.det_np(noun, ADJ_PERSON, ("the", "a", "my", "our", "your", "his", "her", "their", "that"))

    def subject(self) -> Pair:
        """Any subject usable with a past-tense verb (people, pronouns, animals, pairs of people)."""
        x = self.r.random()
        if x < 0.6:
            return self.person()
        if x < 0.72:
            return _same(self.pick(("I", "we", "they", "he", "she", "you")))
        if x < 0.87:
            return self.det_np(self.pick(ANIMALS)[0], ADJ_PERSON, ("the", "a", "my", "our", "that"), 0.4)
        a, b = self.person(), self.person()
        return f"{a[0]} and {b[0]}", f"{a[1]} and {b[1]}"

    def thing(self, p_adj: float = 0.55) -> Pair:
        return self.det_np(
            self.pick(THINGS)[0], ADJ_THING, ("the", "a", "my", "his", "her", "our", "their", "this", "that"), p_adj
        )

    def things_counted(self, nouns=THINGS, lo: int = 2, hi: int = 99) -> Pair:
        n = self.r.randint(lo, hi)
        plural = self.pick(nouns)[1]
        adj = f"{self.pick(ADJ_THING)} " if nouns is THINGS and self.chance(0.3) else ""
        if self.chance(0.5):
            return f"{n} {adj}{plural}", f"{number_words(n)} {adj}{plural}"
        return _same(f"{number_words(n)} {adj}{plural}")

    def food(self) -> Pair:
        if self.chance(0.4):
            return _same(f"some {self.pick(FOODS_MASS)}")
        if self.chance(0.5):
            return self.things_counted(FOODS_COUNT, 2, 24)
        noun = self.pick(FOODS_COUNT)[0]
        return _same(f"{article(noun)} {noun}")

    def place(self) -> Pair:
        return _same(self.pick(PLACES))

    def time_past(self) -> Pair:
        x = self.r.random()
        if x < 0.6:
            return _same(self.pick(TIMES_PAST))
        if x < 0.75:
            return _same(f"on {self.pick(DAYS)}")
        if x < 0.85:
            hour, minute = self.r.randint(1, 12), self.pick((0, 0, 5, 10, 15, 20, 30, 40, 45))
            w, s = clock_pair(hour, minute)
            return f"at {w}", f"at {s}"
        if x < 0.93:
            day, month = self.r.randint(1, 28), self.pick(MONTHS)
            if self.chance(0.5):
                return f"on {month} {ordinal_suffix(day)}", f"on {month} {ordinal_words(day)}"
            return f"on the {ordinal_suffix(day)} of {month}", f"on the {ordinal_words(day)} of {month}"
        year = self.r.randint(1920, 1999)
        return f"in {year}", f"in {year_words(year)}"

    def time_future(self) -> Pair:
        if self.chance(0.8):
            return _same(self.pick(TIMES_FUTURE))
        hour, minute = self.r.randint(1, 12), self.pick((0, 15, 30, 45))
        w, s = clock_pair(hour, minute)
        return f"at {w}", f"at {s}"

    def adverb(self) -> Pair:
        return _same(self.pick(ADVERBS))


# --------------------------------------------------------------------------------------------- templates

Part = str | Pair
Template = Callable[[_Gen], tuple[list[Part], str]]


def _t_svo_place(g: _Gen):
    return [g.subject(), g.pick(VERBS_THING)[1], g.thing(), g.place()], "."


def _t_svo_time(g: _Gen):
    return [g.time_past(), ",", g.subject(), g.pick(VERBS_THING)[1], g.thing()], "."


def _t_svi_adv(g: _Gen):
    return [g.subject(), g.pick(VERBS_INTRANS)[1], g.adverb(), g.place()], "."


def _t_svi_time(g: _Gen):
    return [g.subject(), g.pick(VERBS_INTRANS)[1], g.place(), g.time_past()], "."


def _t_person_verb(g: _Gen):
    return [g.subject(), g.pick(VERBS_PERSON)[1], g.person(), g.place(), g.time_past()], "."


def _t_future(g: _Gen):
    return [g.subject(), "will", g.pick(VERBS_THING)[0], g.thing(), g.time_future()], "."


def _t_want(g: _Gen):
    verb = g.pick(("wanted to", "tried to", "decided to", "forgot to", "promised to", "hoped to"))
    return [g.subject(), verb, g.pick(VERBS_PERSON)[0], g.person(), g.time_future()], "."


def _t_progressive(g: _Gen):
    return [g.person(), "was", g.pick(VERBS_INTRANS)[2], g.place(), "when", g.subject(), "arrived"], "."


def _t_counted(g: _Gen):
    return [g.subject(), g.pick(VERBS_THING)[1], g.things_counted(), g.place()], "."


def _t_there_were(g: _Gen):
    return ["there were", g.things_counted(), g.place(), g.time_past()], "."


def _t_thing_was(g: _Gen):
    noun, place = g.pick(THINGS)[0], g.place()
    degree = g.pick(("very", "quite", "rather", "so", "too"))
    return ["the", noun, place, "was", degree, g.pick(ADJ_THING)], "."


def _t_said_that(g: _Gen):
    verb = g.pick(("said", "thought", "believed", "noticed", "explained", "told us"))
    return [g.person(), verb, "that", g.thing(), "was", g.pick(ADJ_THING)], "."


def _t_because(g: _Gen):
    return ["because it was", g.pick(WEATHER), ",", g.subject(), g.pick(VERBS_INTRANS)[1], g.place()], "."


def _t_but(g: _Gen):
    first = [g.subject(), g.pick(VERBS_INTRANS)[1], g.place()]
    return [*first, ", but", g.subject(), g.pick(VERBS_INTRANS)[1], g.adverb()], "."


def _t_and_then(g: _Gen):
    first = [g.subject(), g.pick(VERBS_THING)[1], g.thing()]
    return [*first, ", and then", g.pick(("he", "she", "they", "we")), g.pick(VERBS_INTRANS)[1], g.place()], "."


def _t_relative(g: _Gen):
    return ["the", g.pick(THINGS)[0], "that", g.subject(), g.pick(VERBS_THING)[1], "was", g.pick(ADJ_THING)], "."


def _t_eat(g: _Gen):
    return [g.subject(), g.pick(VERBS_FOOD)[1], g.food(), g.place(), g.time_past()], "."


def _t_weather(g: _Gen):
    return ["it was", g.pick(WEATHER), "and", g.pick(WEATHER), g.time_past()], "."


def _t_compare(g: _Gen):
    return ["the", g.pick(THINGS)[0], "is", g.pick(COMPARATIVES), "than the", g.pick(THINGS)[0]], "."


def _t_vehicle(g: _Gen):
    w, s = clock_pair(g.r.randint(1, 12), g.pick((0, 5, 15, 20, 30, 40, 45, 50)))
    vehicle, verb = g.pick(VEHICLES), g.pick(("leaves", "arrives", "stops here"))
    when = g.pick(("every morning", "every evening", "on weekdays", "on Sunday", "today"))
    return ["the", vehicle, verb, (f"at {w}", f"at {s}"), when], "."


def _t_money(g: _Gen):
    dollars, cents = g.r.randint(1, 99), g.pick((0, 0, 0, 25, 50, 75, 99))
    return [g.thing(0.3), g.pick(("cost", "was sold for", "costs only")), money_pair(dollars, cents)], "."


def _t_percent(g: _Gen):
    n = g.r.randint(2, 98)
    who = g.pick(("students", "workers", "farmers", "children", "visitors", "players", "drivers", "teachers"))
    share = (f"about {n}%", f"about {number_words(n)} percent")
    return [share, "of the", who, g.pick(VERBS_INTRANS)[1], g.place()], "."


def _t_list_food(g: _Gen):
    items = [g.food() for _ in range(g.r.randint(3, 4))]
    return [g.subject(), g.pick(("bought", "ordered", "brought", "needed", "packed")), *_listing(items), g.place()], "."


def _t_list_things(g: _Gen):
    items = [g.thing(0.4) for _ in range(3)]
    return ["inside the box we found", *_listing(items)], "."


def _t_q_did(g: _Gen):
    return ["did", g.subject(), g.pick(VERBS_THING)[0], g.thing(), g.time_past()], "?"


def _t_q_where(g: _Gen):
    wh = g.pick(("where", "why", "when", "how"))
    return [wh, "did", g.subject(), g.pick(VERBS_THING)[0], g.thing()], "?"


def _t_q_who(g: _Gen):
    return ["who", g.pick(VERBS_THING)[1], g.thing(), g.place()], "?"


def _t_q_how_many(g: _Gen):
    return ["how many", g.pick(THINGS)[1], "did", g.subject(), g.pick(VERBS_THING)[0], g.time_past()], "?"


def _t_q_can(g: _Gen):
    ask = g.pick(("can you", "could you", "would you", "will you"))
    return [ask, g.pick(VERBS_THING)[0], g.thing(), g.place()], "?"


def _t_q_is(g: _Gen):
    return ["is", g.person(), "still", g.place()], "?"


def _t_q_like(g: _Gen):
    return ["would you like", g.food(), g.time_future()], "?"


def _t_q_seen(g: _Gen):
    return ["have you seen", g.thing(), g.pick(("anywhere", "today", "this week", ""))], "?"


def _t_excl_what(g: _Gen):
    adj = g.pick(ADJ_THING)
    noun = g.pick(THINGS)[0]
    return [f"what {article(adj)} {adj} {noun}", g.pick(("that is", "you have", "we found", "this was"))], "!"


def _t_excl_look(g: _Gen):
    look = g.pick(("look at", "listen to", "watch out for", "be careful with"))
    return [look, g.det_np(g.pick(ANIMALS)[0], ADJ_PERSON, ("that", "the", "this"), 0.7)], "!"


def _t_excl_oh(g: _Gen):
    return [g.pick(("oh no,", "wow,", "good news,", "hurry,")), g.subject(), g.pick(VERBS_THING)[1], g.thing()], "!"


def _t_please(g: _Gen):
    ask = g.pick(("please", "don't forget to", "remember to", "try to"))
    return [ask, g.pick(VERBS_THING)[0], g.thing(), g.place(), g.time_future()], "."


def _t_meet(g: _Gen):
    w, s = clock_pair(g.r.randint(1, 12), g.pick((0, 15, 30, 45)))
    day = g.pick(DAYS)
    who, verb = g.subject(), g.pick(("will meet", "met", "called", "visited"))
    return [who, verb, g.person(), (f"at {w}", f"at {s}"), "on", day], "."


def _t_born(g: _Gen):
    year = g.r.randint(1920, 1999)
    who, what = g.person(), g.pick(("was born", "moved to the city", "bought the house", "opened the shop"))
    return [who, what, (f"in {year}", f"in {year_words(year)}")], "."


def _listing(items: list[Pair]) -> list[Part]:
    """``a, b, c and d`` as parts."""
    out: list[Part] = []
    for i, item in enumerate(items):
        if i == len(items) - 1:
            out.append("and")
        out.append(item)
        if i < len(items) - 2:
            out.append(",")
    return out


# (template, weight): statements dominate, as in read speech; questions and exclamations add prosodic variety.
TEMPLATES: tuple[tuple[Template, float], ...] = (
    (_t_svo_place, 3.0), (_t_svo_time, 2.0), (_t_svi_adv, 2.0), (_t_svi_time, 2.0), (_t_person_verb, 2.0),
    (_t_future, 1.5), (_t_want, 1.5), (_t_progressive, 1.0), (_t_counted, 1.5), (_t_there_were, 1.0),
    (_t_thing_was, 1.0), (_t_said_that, 1.0), (_t_because, 1.0), (_t_but, 1.0), (_t_and_then, 1.0),
    (_t_relative, 1.0), (_t_eat, 1.5), (_t_weather, 0.7), (_t_compare, 0.8), (_t_vehicle, 0.7), (_t_money, 0.8),
    (_t_percent, 0.6), (_t_list_food, 1.0), (_t_list_things, 0.7), (_t_q_did, 1.0), (_t_q_where, 1.0),
    (_t_q_who, 0.7), (_t_q_how_many, 0.6), (_t_q_can, 0.8), (_t_q_is, 0.6), (_t_q_like, 0.6), (_t_q_seen, 0.5),
    (_t_excl_what, 0.6), (_t_excl_look, 0.5), (_t_excl_oh, 0.6), (_t_please, 0.8), (_t_meet, 0.7), (_t_born, 0.5),
)  # fmt: skip


# Declarative templates that can stand as either half of a compound sentence ("..., and then ...").
CLAUSES: tuple[Template, ...] = (
    _t_svo_place, _t_svo_time, _t_svi_adv, _t_svi_time, _t_person_verb, _t_want, _t_counted, _t_said_that,
    _t_eat, _t_relative, _t_thing_was, _t_there_were, _t_weather,
)  # fmt: skip
CONNECTORS = (", and", ", but", ", so", ", and then", " because", " while", " after", " before", ", although")
# Share of sentences made of two clauses. Longer utterances give steadier speaker embeddings (resemblyzer
# within-speaker cosine rises from ~0.88 for single clauses to ~0.94 for pairs), so compounds are common.
P_COMPOUND = 0.5


def _compound(gen: _Gen) -> tuple[list[Part], str]:
    first, _ = gen.pick(CLAUSES)(gen)
    second, end = gen.pick(CLAUSES)(gen)
    return [*first, gen.pick(CONNECTORS), *second], end


def _render(parts: list[Part], end: str) -> Sentence:
    orig: list[str] = []
    spoken: list[str] = []
    for part in parts:
        o, s = (part, part) if isinstance(part, str) else part
        if o:
            orig.append(o)
        if s:
            spoken.append(s)

    def finish(words: list[str]) -> str:
        text = " ".join(words)
        text = re.sub(r"\s+,", ",", text)
        text = re.sub(r",+", ",", text)
        text = re.sub(r"\s+", " ", text).strip().rstrip(",")
        return text[:1].upper() + text[1:] + end

    return Sentence(finish(orig), finish(spoken))


_WORD_RE = re.compile(r"[a-z0-9']+")


def sentence_key(text: str) -> str:
    """Duplicate-detection key: lower-cased words without punctuation, single-spaced."""
    return " ".join(_WORD_RE.findall(text.lower()))


def word_count(text: str) -> int:
    """Number of words in ``text`` (punctuation ignored)."""
    return len(_WORD_RE.findall(text.lower()))


def generate_sentences(n: int, seed: int = 0) -> list[Sentence]:
    """``n`` distinct sentences (original + spoken), deterministic given ``seed``; 4-20 spoken words each."""
    if n < 0:
        raise ValueError(f"number of sentences must be >= 0, got {n}")
    rng = random.Random(f"voxar-sentences-{seed}")
    gen = _Gen(rng)
    funcs = [t for t, _ in TEMPLATES]
    weights = [w for _, w in TEMPLATES]
    out: list[Sentence] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could only make {len(out)} distinct sentences out of {n} requested")
        template = _compound if rng.random() < P_COMPOUND else rng.choices(funcs, weights)[0]
        sent = _render(*template(gen))
        key = sentence_key(sent.spoken)
        if key in seen or not MIN_WORDS <= word_count(sent.spoken) <= MAX_WORDS:
            continue
        seen.add(key)
        out.append(sent)
    return out


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct spoken-form sentences (what the voices read), deterministic given ``seed``."""
    return [s.spoken for s in generate_sentences(n, seed)]


def split_sentences(counts: Mapping[str, int], seed: int = 0) -> dict[str, list[Sentence]]:
    """Disjoint sentence sets, e.g. ``{"train": 3000, "dev": 150, "test": 150}``: no sentence is in two sets.

    One stream of distinct sentences is cut into consecutive slices in the order of ``counts``.
    """
    total = sum(counts.values())
    pool = generate_sentences(total, seed)
    out: dict[str, list[Sentence]] = {}
    start = 0
    for name, count in counts.items():
        out[name] = pool[start : start + count]
        start += count
    return out


def vocabulary() -> set[str]:
    """Every word the grammar can produce in spoken form (lower case), for checks against ASR dictionaries."""
    from voxar.corpus import vocab

    words: set[str] = set()
    for name in dir(vocab):
        value = getattr(vocab, name)
        if name.isupper() and isinstance(value, tuple):
            for item in value:
                for text in item if isinstance(item, tuple) else (item,):
                    words.update(_WORD_RE.findall(text.lower()))
    for num in range(100):
        words.update(number_words(num).split())
        if num:
            words.update(ordinal_words(num).split())
    return words
