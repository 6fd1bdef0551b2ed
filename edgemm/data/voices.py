"""The espeak-ng voices the built-in data set speaks with, and the voice families held out of training.

Every English dialect espeak-ng has (8 bases) with every voice variant it ships (104 in espeakng-loader 0.2.4, plus
the plain voice), fixed here so the data set does not depend on what a directory listing returns. Whole families
are held out: two dialects (every variant of them) and whole variant families (every dialect of them), never
trained or tuned on; `heldout` clips measure how audio generalises to voices the model has not heard.
"""
from __future__ import annotations

import numpy as np

BASES = ("gmw/en", "gmw/en-US", "gmw/en-GB-x-rp", "gmw/en-029", "gmw/en-GB-scotland", "gmw/en-GB-x-gbclan",
         "gmw/en-GB-x-gbcwmd", "gmw/en-US-nyc")  # fmt: skip
VARIANTS = ("", "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene", "Gene2",
            "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Mr serious", "Nguyen", "Reed",
            "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam", "anika", "anikaRobot",
            "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward",
            "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa", "gustave", "ian", "iven", "iven2",
            "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda",
            "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "mike2", "norbert",
            "pablo", "paul", "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
            "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3",
            "travis", "victor", "whisper", "whisperf", "zac")  # fmt: skip

HELD_OUT_BASES = ("gmw/en-029", "gmw/en-GB-x-gbcwmd")  # Caribbean and West Midlands English, every variant
HELD_OUT_FAMILIES = {  # variant families held out in every dialect
    "Klatt formant synthesiser (+klatt..6)": ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"),
    "+iven family": ("iven", "iven2", "iven3", "iven4"),
    "+steph family": ("steph", "steph2", "steph3"),
    "single variants (+m7 +f5 +Annie +grandma +Mario +boris)": ("m7", "f5", "Annie", "grandma", "Mario", "boris"),
}
HELD_OUT_VARIANTS = tuple(v for family in HELD_OUT_FAMILIES.values() for v in family)
TEXTS = ("{}", "{}.", "{}?", "{}!")  # the same word said as a statement, a question, an exclamation: intonation


def voice_name(base: str, variant: str) -> str:
    return f"{base}+{variant}" if variant else base


def held_out(name: str) -> bool:
    """Whether a voice belongs to a held-out dialect or variant family."""
    base, _, variant = name.partition("+")
    return base in HELD_OUT_BASES or variant in HELD_OUT_VARIANTS


def held_out_family(name: str) -> str:
    """The held-out dialect or variant family a voice belongs to (its dialect first)."""
    base, _, variant = name.partition("+")
    if base in HELD_OUT_BASES:
        return f"dialect {base.split('/')[1]} (every variant)"
    return next(family for family, members in HELD_OUT_FAMILIES.items() if variant in members)


def voice_splits(rng: np.random.Generator, fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    """Disjoint voices for train/val/test (the families that are not held out, shuffled by `rng`) and `heldout`."""
    voices = [voice_name(b, v) for b in BASES for v in VARIANTS]
    kept = [v for v in voices if not held_out(v)]
    kept = [kept[i] for i in rng.permutation(len(kept))]
    n_train, n_val = (int(round(len(kept) * f)) for f in fractions[:2])
    return {"train": kept[:n_train], "val": kept[n_train : n_train + n_val], "test": kept[n_train + n_val :],
            "heldout": [v for v in voices if held_out(v)]}  # fmt: skip
