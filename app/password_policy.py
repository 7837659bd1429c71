"""Password rules for transfers: length plus zxcvbn strength, or an operator
pattern such as the AGB convention ``Agb12345678!``.

A pattern is an agreed convention between parties who already share the
secret part (the AGB code), so a full match is accepted even though zxcvbn
would call it weak; the minimum length still applies. AGB codes are public
(the Vektis AGB register), so such a password is only as secret as the
convention that nobody else guesses it: anyone who knows who the parties
are can look the code up.

zxcvbn ships English lists only, so ``Welkom2024!!`` or ``Gemeente2026!``
looked random to it. Here it also knows the frequent words of every
interface language (wordfreq), words Dutch passwords are built on (seasons,
months, football clubs ...), the site's name and the operator's own words
(``password.guessable_words``), and the digits-and-symbols endings people
add to a word to satisfy composition rules ("2024!!", "01!"), which password
crackers try as a whole, not character by character: with separators
("Welkom 2024", "Welkom_2024_!!"), long symbol runs ("2026!!!!!"), a year
typed with the letter O ("2O24"), and pieces repeated ("#2026#",
"20242024"). Without that, zxcvbn splits such an ending into several
matches and charges a large fixed cost for each extra one, so every small
variation of a weak password scored as strong.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import wordfreq
from zxcvbn import feedback, matching, scoring, time_estimates

from .settings import LANGUAGES, Password
from .zxcvbn_text import ADDED, COMMON_IN_PASSWORDS, COMMON_WORD, OWN_WORDS, translate

_ZXCVBN_MAX = 72

# Lower case and digits without look-alikes (0/o, 1/l/i): easy to read out
# over the phone, 5 bits per character.
GENERATED_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

# wordfreq's "small" lists hold about this many words per language; Dutch
# and English, the languages most passwords here are built from, use them
# whole. The languages added for residents use their most frequent third,
# the words people pick, because every 30,000 words add about 6 MB to each
# worker.
WORDS_PER_LANGUAGE = 30_000
WORDS_PER_OTHER_LANGUAGE = 10_000
WHOLE_LISTS = ("nl", "en")

# What Dutch passwords are built on, most common first; ranked before any
# frequency list, because people pick these for passwords far more often
# than they use them in text.
DUTCH_PASSWORD_WORDS = (
    "welkom", "wachtwoord", "geheim", "hallo", "voetbal", "liefde", "schatje", "prinses", "vakantie",
    "zomer", "winter", "lente", "herfst", "voorjaar", "najaar",
    "januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
    "november", "december",
    "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag",
    "ajax", "feyenoord", "psv", "az", "twente", "utrecht", "vitesse", "heerenveen", "groningen", "sparta",
    "excelsior", "heracles", "zwolle", "fortuna", "nec", "nac", "willem",
    "oranje", "nederland", "holland", "amsterdam", "rotterdam", "denhaag", "eindhoven",
    "gemeente", "provincie", "ziekenhuis", "huisarts", "zorg", "kantoor", "beveiliging", "inloggen",
    "toegang", "sleutel", "veilig", "bestanden", "overdracht", "beheerder", "gebruiker",
    "kabouter", "konijn", "poes", "hond", "sinterklaas", "kerstmis", "koningsdag",
)

# Punctuation and separators a password decoration is made of; the first
# ten are the ones most decorations use.
_COMMON_SYMBOLS = "!.@#$*?_- "
_SYMBOLS = _COMMON_SYMBOLS + "\"%&'()+,/:;<=>[\\]^`{|}~"
# One piece of a decoration, as a cracking rule adds it: a year (1900-2099,
# also with the letter O for a zero), up to four other digits, or one symbol
# repeated any number of times.
_PIECE = re.compile(
    r"(?P<year>(?:19|20)[0-9]{2})|(?P<o_year>(?:19|2[0Oo])[0-9Oo]{2})|(?P<digits>[0-9]{1,4})"
    f"|(?P<run>(?P<symbol>[{re.escape(_SYMBOLS)}])(?P=symbol)*)"
)
# A decoration has at most this many pieces and characters.
_MAX_PIECES, _MAX_DECORATION = 6, 16


def _frequency_lists() -> dict[str, list[str]]:
    lists = {"dutch_passwords": list(DUTCH_PASSWORD_WORDS)}
    for language in LANGUAGES:
        # Words of one or two letters match all over a password and slow the
        # search tenfold, adding nothing that zxcvbn's own lists lack.
        count = WORDS_PER_LANGUAGE if language in WHOLE_LISTS else WORDS_PER_OTHER_LANGUAGE
        listed = wordfreq.top_n_list(language, count, wordlist="small")
        words = [w for w in listed if w.isalpha() and len(w) >= 3]
        # Also without accents, as people type them ("cafe" for "café").
        lists[f"words_{language}"] = list(dict.fromkeys(v for w in words for v in (w, _unaccented(w))))
    # The whole word lists stay cached in wordfreq otherwise; a worker needs only these.
    for cached in (wordfreq.top_n_list, wordfreq.get_frequency_list, wordfreq.get_frequency_dict):
        cached.cache_clear()
    return lists


def _unaccented(word: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch))


# Once per process, at import, before any request thread exists. From then
# on zxcvbn's dictionaries are only read: each call gets its own user inputs
# (see _estimate), so no lock is needed.
matching.add_frequency_lists(_frequency_lists())
# zxcvbn has warnings for its own lists and patterns only.
_WARNINGS = {
    "dutch_passwords": COMMON_IN_PASSWORDS, "user_inputs": OWN_WORDS, "decorated": COMMON_WORD, "decoration": ADDED,
    **{f"words_{lang}": COMMON_WORD for lang in LANGUAGES},
}


@dataclass(frozen=True)
class Assessment:
    score: int
    length_ok: bool
    pattern: str | None
    warning: str = ""
    suggestions: list[str] = field(default_factory=list)
    min_score: int = 3

    @property
    def acceptable(self) -> bool:
        return self.length_ok and (self.pattern is not None or self.score >= self.min_score)


def assess(password: str, policy: Password, user_inputs: list[str]) -> Assessment:
    """``user_inputs``: words of the sender and the site, guessable to anyone
    who knows them; the operator's ``guessable_words`` are added."""
    pattern = next((p.name for p in policy.patterns if p.matches(password)), None)
    inputs = [part for value in [*user_inputs, *policy.guessable_words] for part in _input_parts(value)]
    score, advice = _estimate(password[:_ZXCVBN_MAX], inputs)
    if pattern:
        # Accepted for the agreement: advice to make it harder to guess does not apply.
        advice = {}
    return Assessment(
        score=score,
        length_ok=len(password) >= policy.min_length,
        pattern=pattern,
        warning=translate(advice.get("warning") or ""),
        suggestions=[translate(s) for s in advice.get("suggestions") or []],
        min_score=policy.min_score,
    )


def _estimate(password: str, user_inputs: list[str]) -> tuple[int, dict[str, Any]]:
    """zxcvbn's own steps (``zxcvbn.zxcvbn``), but with the user inputs in a
    dictionary of this call rather than in zxcvbn's module global, and with
    decorations matched as well."""
    if not password:
        # zxcvbn's scoring fails on an empty one (IndexError), which the
        # options step is sent for "Enter password manually" left empty.
        return 0, {}
    own = matching.build_ranked_dict([w.lower() for w in user_inputs])
    dictionaries = {**matching.RANKED_DICTIONARIES, "user_inputs": own}
    matches = matching.omnimatch(password, dictionaries)
    decorations = _decorations(password)
    matches += decorations + _decorated(password, matches, decorations) + _repeated_words(matches)
    result = scoring.most_guessable_match_sequence(password, matches)
    score = int(time_estimates.guesses_to_score(result["guesses"]))
    advice = feedback.get_feedback(score, result["sequence"])
    if score <= 2 and result["sequence"] and not advice.get("warning"):
        longest = max(result["sequence"], key=lambda m: len(m["token"]))
        advice["warning"] = _WARNINGS.get(longest.get("dictionary_name", ""), _WARNINGS.get(longest["pattern"], ""))
    return score, advice


def _decorations(password: str) -> list[dict[str, Any]]:
    """Each run of decoration pieces as one match, guessed the way cracking
    rules try them: the product of its pieces' guesses."""
    found = []
    for i in range(len(password)):
        guesses, pieces, pos, end = 1, [], i, min(len(password), i + _MAX_DECORATION)
        while len(pieces) < _MAX_PIECES and (piece := _PIECE.match(password, pos, end)):
            guesses *= _piece_guesses(piece, pieces)
            pieces.append(piece.group())
            pos = piece.end()
            found.append({"pattern": "decoration", "token": password[i:pos], "i": i, "j": pos - 1, "guesses": guesses})
    return found


def _decorated(password: str, matches: list[dict[str, Any]], decorations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each dictionary word together with the decorations right before and
    after it, as one match: a cracking rule adds them to a word in one go
    ("2024Welkom!" is no harder than "Welkom2024!")."""
    ending, starting = {}, {}
    for d in decorations:  # the longest decoration ending / starting at each index
        if d["j"] not in ending or ending[d["j"]]["i"] > d["i"]:
            ending[d["j"]] = d
        if d["i"] not in starting or starting[d["i"]]["j"] < d["j"]:
            starting[d["i"]] = d
    found = []
    for word in (m for m in matches if m["pattern"] == "dictionary"):
        guesses = scoring.estimate_guesses(word, password)
        before, after = ending.get(word["i"] - 1), starting.get(word["j"] + 1)
        options = [(before, None), (None, after), (before, after)] if before and after else [(before, after)]
        for pre, post in options:
            if pre is None and post is None:
                continue
            i, j = (pre or word)["i"], (post or word)["j"]
            # Prepending is a rarer rule than appending.
            total = guesses * (2 * pre["guesses"] if pre else 1) * (post["guesses"] if post else 1)
            found.append({
                "pattern": "decorated", "token": password[i : j + 1], "i": i, "j": j, "guesses": total,
                "dictionary_name": word["dictionary_name"],
            })
    return found


def _repeated_words(matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dictionary word that came earlier in the password already, as a
    match of its own: typing it again is one rule ("Gemeente2024!!Gemeente")."""
    words = [m for m in matches if m["pattern"] == "dictionary"]
    first_end: dict[str, int] = {}
    for m in words:
        first_end[m["matched_word"]] = min(m["j"], first_end.get(m["matched_word"], m["j"]))
    return [
        {"pattern": "repeated_word", "token": m["token"], "i": m["i"], "j": m["j"], "guesses": 2,
         "dictionary_name": m["dictionary_name"]}
        for m in words if first_end[m["matched_word"]] < m["i"]
    ]


def _piece_guesses(piece: re.Match[str], before: list[str]) -> int:
    if piece.group() in before:
        return 2  # the same piece again: "#2026#", "20242024"
    if piece["year"]:
        return 200
    if piece["o_year"]:
        return 2 * 200  # the year, and the rule that types O for 0
    if piece["digits"]:
        return 10 ** len(piece["digits"])
    symbol = piece["symbol"]
    # Which symbol, and how many of it: "!", "!!", "!!!!!".
    return (len(_COMMON_SYMBOLS) if symbol in _COMMON_SYMBOLS else len(_SYMBOLS)) * len(piece.group())


def _input_parts(value: str) -> list[str]:
    """"Jan de Vries" and "jan.devries@zorg.nl" also yield their parts,
    and the name written as one word ("JanDeVries")."""
    parts = [value]
    for sep in (" ", "@", ".", "-", "_"):
        parts = [p for chunk in parts for p in chunk.split(sep)]
    return [value, value.replace(" ", ""), *(p for p in parts if len(p) >= 3)]


def generate(policy: Password) -> str:
    """A random password in groups of four, e.g. ``k7mq-x9pt-...`` (20 chars: 99 bits)."""
    groups = ["".join(secrets.choice(GENERATED_ALPHABET) for _ in range(4)) for _ in range(policy.generated_groups)]
    return "-".join(groups)


def as_generated(typed: str) -> str | None:
    """A generated password as it was generated, however it was typed: read
    over the phone it comes without dashes, in capitals, or with spaces.
    None if ``typed`` cannot be one."""
    plain = "".join(ch for ch in typed.lower() if ch not in " -.\u2010\u2011\u2012\u2013\u2014")
    if not plain or len(plain) % 4 or any(ch not in GENERATED_ALPHABET for ch in plain):
        return None
    return "-".join(plain[i : i + 4] for i in range(0, len(plain), 4))
