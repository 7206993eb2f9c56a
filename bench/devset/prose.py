"""Plausible English prose that never repeats a sentence within a page: hand-written paragraphs per topic, then
sentences built from templates and word lists, with realistic numbers, names and places."""

from __future__ import annotations

import random
import re

HANDWRITTEN = {
    "harbour": [
        "The old fish market closed its doors in the spring, and for a while nobody knew what would become of the "
        "long brick hall beside the water. Some residents wanted apartments; others hoped for a covered square "
        "where the Saturday traders could shelter from the wind.",
        "By the time the council voted, the building had been empty for nineteen months. Pigeons nested in the "
        "rafters, and the painted sign above the loading bay had faded to a pale rumour of its former blue.",
        "Marguerite Oduya remembers the hall when it still smelled of ice and diesel. Her father ran a stall near "
        "the north door, selling mackerel by the crate to restaurants that have since moved inland or vanished.",
    ],
    "science": [
        "Measurements taken over three winters suggest that the lake is warming faster than the surrounding air. "
        "The effect is strongest in shallow bays, where sunlight reaches the sediment and heat is stored overnight.",
        "Field teams drilled twenty-seven cores through the ice and logged temperature every half metre. The data "
        "were noisy, but the trend survived every correction the reviewers asked for.",
        "Whether the change matters for the fish depends on oxygen as much as on temperature. Warmer water holds "
        "less dissolved gas, and the deepest basins already run short of it by late summer.",
    ],
    "economy": [
        "Freight volumes at the inland terminal rose for the fourth consecutive quarter, helped by a new rail "
        "link and a mild autumn that kept the canal open longer than usual.",
        "Small manufacturers say the real constraint is not demand but people. Vacancies for welders and "
        "electricians have stayed open for months, and wages have climbed accordingly.",
        "Economists caution against reading too much into a single year. Several large orders were pulled forward "
        "ahead of a tariff change, which flatters the figures and may leave a gap in the months to come.",
    ],
    "arts": [
        "The exhibition opens with a single chair, placed under a lamp in an otherwise dark room. Visitors tend to "
        "stop there longer than the curators expected, as if waiting for someone to sit down.",
        "Most of the photographs were taken on the night shift at a bakery that supplied half the city. The flour "
        "hangs in the air like weather, and the faces are tired, patient and oddly tender.",
        "Critics have been divided. One called the show an elegy for physical work; another found it sentimental "
        "and wished the artist had spent less time on the beauty of steam.",
    ],
}

TOPICS = tuple(HANDWRITTEN)

WORDS = {
    "people": ["the mayor", "a retired engineer", "the harbour master", "local teachers", "two biologists",
               "the district nurse", "a group of volunteers", "the festival director", "shop owners",
               "the regional planning office", "several farmers", "a young architect", "the ferry crew",
               "the museum's conservator", "commuters", "the school governors", "a delegation from the port authority",
               "the union's negotiators", "independent auditors", "the editor of the parish newsletter"],
    "names": ["Helena Marsh", "Tomasz Wierzbicki", "Aisha Rahman", "Duncan Ferreira", "Ingrid Solberg",
              "Kwame Asante", "Lucia Benedetti", "Owen Pritchard", "Mei-Lin Chou", "Rafael Quintero",
              "Siobhan Keane", "Anders Lindqvist", "Priya Natarajan", "Jonah Whitcombe", "Beatriz Almeida"],
    "places": ["Kestrel Bay", "the Aldmoor estate", "Northgate", "the upper valley", "Port Elsworth",
               "the canal district", "Westbrook", "the old quarry", "Lindenfield", "the river crossing",
               "Carrick Point", "the eastern wards", "Hollins Green", "the market square", "Saltmarsh Lane"],
    "verbs": ["proposed", "questioned", "approved", "delayed", "welcomed", "criticised", "examined", "funded",
              "rebuilt", "surveyed", "defended", "postponed", "documented", "expanded", "reconsidered"],
    "objects": ["the drainage scheme", "a new cycle route", "the winter timetable", "the restoration budget",
                "plans for a community library", "the fishing quotas", "an extension of the tram line",
                "the proposed wind farm", "the housing survey", "a shorter school day", "the flood barrier",
                "repairs to the sea wall", "the parking charges", "a grant for rural broadband",
                "the heritage listing of the mill"],
    "adjectives": ["cautious", "unexpected", "modest", "remarkable", "contentious", "overdue", "ambitious",
                   "fragile", "persistent", "uneven", "gradual", "considerable", "surprising", "deliberate"],
    "nouns": ["recovery", "decline", "agreement", "investment", "shortage", "improvement", "controversy",
              "turnout", "response", "interest", "pressure", "progress", "opposition", "uncertainty"],
    "reasons": ["rising costs", "a wet summer", "the loss of a major employer", "new safety rules",
                "changes in the national budget", "a shortage of skilled labour", "repeated storm damage",
                "an ageing population", "the closure of the branch line", "competition from online retailers",
                "a dispute over land ownership", "the need for a fresh environmental assessment"],
    "units": ["households", "tonnes", "visitors", "hectares", "passengers", "apprentices", "homes", "kilometres",
              "applications", "members"],
    "months": ["January", "February", "March", "April", "June", "July", "August", "September", "October",
               "November", "December"],
}

_TEMPLATES = [
    "{People} {verb} {object} after {reason} made the original plan impossible to sustain.",
    "According to {name}, the {adjective} {noun} in {place} owes more to {reason} than to any single decision.",
    "Figures published in {month} show {number} {unit} affected, roughly {percent} more than a year earlier.",
    "In {place}, {people} {verb} {object}, arguing that {reason} had been ignored for too long.",
    "\"We knew it would be {adjective},\" said {name}, \"but nobody expected {number} {unit} in the first week.\"",
    "The {adjective} {noun} has not gone unnoticed by {people}, who {verb} {object} at a meeting on {weekday}.",
    "{Name}, who has lived in {place} for {years} years, describes the change as {adjective} but welcome.",
    "A report commissioned by {people} puts the cost at {money}, a figure that critics call {adjective}.",
    "Between {year} and {year2}, the number of {unit} in {place} grew from {number} to {number2}.",
    "Few people outside {place} had heard of {object} until {name} raised it in a letter to the council.",
    "The decision was {adjective}, and it was taken quietly, which is perhaps why the {noun} came as a surprise.",
    "Nobody disputes that {reason} played a part; the argument is about how large a part, and for how long.",
    "{People} now expect {object} to be finished by {month} {year2}, some {number3} weeks later than promised.",
    "On a grey {weekday} morning, {people} gathered outside the town hall to hear what {name} had to say.",
    "Even so, the {noun} in {place} remains {adjective}, and {people} are reluctant to call it a turning point.",
    "What began as a small trial with {number3} {unit} has become one of the largest of its kind in the region.",
    "{Name} points out that {reason} affects the smaller villages first and the larger towns only later.",
    "The budget for {object} was set at {money}, of which about {percent} has been spent so far.",
    "When the results arrived in {month}, {people} {verb} {object} within a matter of days.",
    "It is a {adjective} story, told mostly through numbers: {number} {unit}, {money}, and {years} years of delay.",
    "Critics of {object} note that {people} have changed their position twice since {year}.",
    "For {name}, the lesson of the past {years} years is that {noun} rarely follows a straight line.",
    "The first phase covered {number3} streets near {place}; the second will reach {number2} {unit} by {year2}.",
    "Attendance at the spring meetings was {adjective}, and {people} asked sharp questions about {object}.",
]

_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


class Prose:
    """Sentences and paragraphs for one page; `seen` keeps every sentence unique on the page."""

    def __init__(self, rng: random.Random, topic: str | None = None) -> None:
        self.rng = rng
        self.topic = topic or rng.choice(TOPICS)
        self.handwritten = [s for p in HANDWRITTEN[self.topic] for s in split_sentences(p)]
        rng.shuffle(self.handwritten)
        self.seen: set[str] = set()

    def sentence(self) -> str:
        if self.handwritten and self.rng.random() < 0.35:
            return self._keep(self.handwritten.pop())
        for _ in range(200):
            text = self._template()
            if text not in self.seen:
                return self._keep(text)
        raise RuntimeError("prose generator ran out of distinct sentences")

    def paragraph(self, sentences: tuple[int, int] = (3, 6)) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(*sentences)))

    def headline(self, words: tuple[int, int] = (4, 8)) -> str:
        w = WORDS
        options = [
            f"{self.rng.choice(w['places']).removeprefix('the ').title()} {self.rng.choice(w['verbs']).title()} "
            f"{self.rng.choice(w['objects']).removeprefix('the ').removeprefix('a ').title()}",
            f"A {self.rng.choice(w['adjectives']).title()} {self.rng.choice(w['nouns']).title()} "
            f"in {self.rng.choice(w['places']).removeprefix('the ').title()}",
            f"Why {self.rng.choice(w['reasons']).removeprefix('a ').removeprefix('the ').capitalize()} Still Matters",
            f"{self.rng.choice(w['names'])} and the {self.rng.choice(w['adjectives']).title()} "
            f"{self.rng.choice(w['nouns']).title()}",
        ]
        for _ in range(50):
            text = self.rng.choice(options)
            if text not in self.seen:
                return self._keep(text)
            options = options[1:] + options[:1]
        return self._keep(f"{text} ({self.rng.randint(2, 99)})")

    def _keep(self, text: str) -> str:
        self.seen.add(text)
        return text

    def _template(self) -> str:
        r, w = self.rng, WORDS
        year = r.randint(2009, 2019)
        people = r.choice(w["people"])
        name = r.choice(w["names"])
        values = {
            "people": people, "People": people[0].upper() + people[1:], "name": name, "Name": name,
            "place": r.choice(w["places"]), "verb": r.choice(w["verbs"]), "object": r.choice(w["objects"]),
            "adjective": r.choice(w["adjectives"]), "noun": r.choice(w["nouns"]), "reason": r.choice(w["reasons"]),
            "unit": r.choice(w["units"]), "month": r.choice(w["months"]), "weekday": r.choice(_WEEKDAYS),
            "number": f"{r.randint(120, 9800):,}", "number2": f"{r.randint(10_000, 480_000):,}",
            "number3": str(r.randint(3, 48)), "percent": f"{r.randint(2, 38)}.{r.randint(0, 9)} per cent",
            "money": r.choice([f"£{r.randint(2, 95)}.{r.randint(1, 9)} million", f"${r.randint(140, 990)},000",
                               f"€{r.randint(12, 480)},{r.randint(100, 999)}"]),
            "years": str(r.randint(3, 41)), "year": str(year), "year2": str(year + r.randint(3, 9)),
        }
        return r.choice(_TEMPLATES).format(**values)


def split_sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?\"])\s+(?=[A-Z\"])", paragraph) if s]
