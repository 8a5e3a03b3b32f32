"""The patterns the API declares for what a query may hold: a category (``label_pattern``) and an
image name (``name_pattern``: a seed name or a ``z:`` vector, then at most MAX_VARIANT_DEPTH
variant steps), and how long such a name may be in a query."""

from __future__ import annotations

import math
import urllib.parse

from productgan.data.colour import COLOUR_NAMES
from productgan.generator.directions import EDITS_PATTERN
from productgan.generator.sampler import Sampler

# A parameter's name and its separators, beside each name in a query ("&from=").
NAME_PARAMETER_BYTES = 6

# How deep the API reads variants of variants (``7:3~0.5/0#2~0.5/1#0`` is 2 deep): each level adds
# some 80 bytes to a name and a base drawn again to its point. A variant of a name this deep is
# named by its ``z:`` vector instead, which any route reads.
MAX_VARIANT_DEPTH = 4

# A variant's spread as ``variant_names`` writes it (``np.format_float_positional``): "1" or "0." and
# at most 30 digits, the last not 0 (1.0 to six decimals is read too).
SPREAD_PATTERN = r"(?:0\.[0-9]{0,29}[1-9]|1(?:\.0{1,6})?)"


def label_pattern(sampler: Sampler) -> str:
    """A regular expression for the labels the API accepts: empty (every class in turn), a class
    name in any case, or a class index; only the empty label for an unconditional generator.

    Written with the syntax JSON Schema (ECMA-262), Python and most code generators share:
    literals, character classes, alternation, and anchors."""
    if not sampler.conditional:
        return "^$"
    names = [_case_free(name) for name in sampler.class_names]
    indices = [str(i) for i in range(sampler.generator.num_classes)]
    return "^(?:" + "|".join(["", *names, *indices]) + ")$"


def name_pattern(sampler: Sampler, depth: int | None = MAX_VARIANT_DEPTH) -> str:
    """A regular expression for the image names the API accepts: ``SEED:INDEX[:CLASS][@TEMPERATURE]``
    (a temperature above 0 and at most 4, up to six decimals), ``z:BASE64[:CLASS]`` (the nz float32
    numbers in unpadded URL-safe base64, as ``vector_name`` writes them; a class is required for a
    conditional generator), and either varied up to ``depth`` times (None: any number of times),
    ``~SPREAD/SEED#INDEX[:CLASS]`` each, as ``variant_names`` writes them; the whole may end in
    edits, ``^NAME=AMOUNT[,NAME=AMOUNT...]`` (generator/directions.py; the CLI also reads edits
    between variant steps). A vector of the right
    length that decodes to NaN or infinity, a seed above 2**63 - 1 or a variant index of 1024 or
    more fits the pattern and is still refused (422). Written in the dialect of ``label_pattern``."""
    temperature = r"(?:@(?:0\.[0-9]{0,5}[1-9]|[1-3](?:\.[0-9]{1,6})?|4(?:\.0{1,6})?))?"
    chars = math.ceil(16 * sampler.generator.config.nz / 3)  # 4 nz bytes, 6 bits a character
    vector = f"z:[A-Za-z0-9_-]{{{chars}}}"
    seeded = "[0-9]{1,19}:[0-9]{1,6}"
    varied = f"~{SPREAD_PATTERN}/[0-9]{{1,19}}#[0-9]{{1,4}}"
    times = "*" if depth is None else f"{{0,{depth}}}"
    edits = f"(?:\\^{EDITS_PATTERN})?"
    if not sampler.conditional:
        return f"^(?:{seeded}{temperature}|{vector})(?:{varied}){times}{edits}$"
    names = [_case_free(name) for name in sampler.class_names]
    classes = "(?::(?:" + "|".join([*names, *(str(i) for i in range(sampler.generator.num_classes))]) + "))"
    return f"^(?:{seeded}{classes}?{temperature}|{vector}{classes})(?:{varied}{classes}?){times}{edits}$"


def colours_pattern(most: int) -> str:
    """A regular expression for 1 to ``most`` comma-separated colours: the names ``parse_colour``
    knows (any case) or ``#RGB`` / ``#RRGGBB``. In the dialect of ``label_pattern``."""
    one = "(?:" + "|".join([*(_case_free(name) for name in COLOUR_NAMES), "#[0-9A-Fa-f]{6}", "#[0-9A-Fa-f]{3}"]) + ")"
    return f"^{one}(?:,{one}){{0,{most - 1}}}$"


def amounts_pattern(most: int) -> str:
    """A regular expression for 1 to ``most`` comma-separated amounts of an edit, -5 to 5 to six decimals."""
    one = r"[+-]?(?:[0-4](?:\.[0-9]{1,6})?|5(?:\.0{1,6})?)"
    return f"^{one}(?:,{one}){{0,{most - 1}}}$"


def encoded_length(text: str) -> int:
    """The length of ``text`` percent-encoded in a query."""
    return len(urllib.parse.quote(text, safe=""))


# Characters with a meaning in a regular expression (the slash: in the literals code generators write).
REGEX_SYNTAX = set("\\^$.|?*+()[]{}/")


def _case_free(name: str) -> str:
    """``name`` as a pattern that matches it in any case, every other character literally."""
    out = []
    for char in name:
        lower, upper = char.lower(), char.upper()
        if lower != upper and len(lower) == len(upper) == 1:
            out.append(f"[{lower}{upper}]")
        elif (char in REGEX_SYNTAX or not char.isprintable()) and ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")  # in a form no regex dialect misreads
        else:
            out.append(char)
    return "".join(out)


NAME_HELP = (
    "An image's name: `SEED:INDEX[:CATEGORY][@TEMPERATURE]` (image INDEX of that seed, as `productgan generate` "
    "makes it), a variant's name as /variants.json gives it, `NAME~SPREAD/SEED#INDEX[:CATEGORY]` (variant INDEX "
    f"of NAME, as `productgan variants` makes it; variants of variants at most {MAX_VARIANT_DEPTH} deep), or a `z:` "
    "name this API gave (a projection's vector)."
)
