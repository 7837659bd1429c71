"""zxcvbn's feedback sentences, marked for translation.

zxcvbn returns plain English. Listing its sentences here under the ``N_``
marker (see babel.cfg) puts them in our catalogs, so ``translate`` can show
them in the sender's language.
"""

from flask_babel import gettext


def N_(text: str) -> str:  # noqa: N802  (the conventional gettext no-op marker)
    return text


# Our own warnings, for matches in the lists app/password_policy.py adds.
COMMON_WORD = N_("A common word is easy to guess, even with capitals, digits or symbols added.")
COMMON_IN_PASSWORDS = N_("This word is very common in passwords.")
OWN_WORDS = N_("Your own name or email address, and words about this portal, are easy to guess.")
ADDED = N_("Years, digits and symbols added to a word are easy to guess.")

KNOWN = frozenset(
    (
        COMMON_WORD,
        COMMON_IN_PASSWORDS,
        OWN_WORDS,
        ADDED,
        N_("Add another word or two. Uncommon words are better."),
        N_("Capitalization doesn't help very much."),
        N_("Reversed words aren't much harder to guess."),
        N_("Predictable substitutions like '@' instead of 'a' don't help very much."),
        N_("Use a few words, avoid common phrases."),
        N_("No need for symbols, digits, or uppercase letters."),
        N_("Straight rows of keys are easy to guess."),
        N_("Short keyboard patterns are easy to guess."),
        N_("This is a top-10 common password."),
        N_("This is similar to a commonly used password."),
        N_("A word by itself is easy to guess."),
        N_("All-uppercase is almost as easy to guess as all-lowercase."),
        N_("Use a longer keyboard pattern with more turns."),
        N_('Repeats like "aaa" are easy to guess.'),
        N_('Repeats like "abcabcabc" are only slightly harder to guess than "abc".'),
        N_("This is a top-100 common password."),
        N_("This is a very common password."),
        N_("Names and surnames by themselves are easy to guess."),
        N_("Common names and surnames are easy to guess."),
        N_("Avoid repeated words and characters."),
        N_('Sequences like "abc" or "6543" are easy to guess.'),
        N_("Avoid sequences."),
        N_("Recent years are easy to guess."),
        N_("Dates are often easy to guess."),
        N_("Avoid recent years."),
        N_("Avoid years that are associated with you."),
        N_("Avoid dates and years that are associated with you."),
    )
)


def translate(sentence: str) -> str:
    return gettext(sentence) if sentence in KNOWN else sentence
