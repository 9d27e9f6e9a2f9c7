"""Word lists more than one detector reads.

`REFUSAL`: a refusal, warning or redirection cue in an answer ("I can't", "I'm sorry", "illegal",
"I'd recommend talking to..."). `safety_bypass` reads it as "this answer does not comply";
`pref_flip`'s reward-model features as "this answer refuses" (a refusal chosen over compliance on
a harmful request is normal; the reverse reads as a flip).
"""

from __future__ import annotations

import re

REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|sorry|i can'?t|i cannot|i can ?not|i won'?t|i will not|i'?m not (?:able|going|comfortable)|"
    r"i am not (?:able|going|comfortable)|i (?:do not|don'?t) (?:think|feel|want|recommend|condone|support|know)|"
    r"i must decline|i'?d rather not|as an ai|not (?:appropriate|okay|ok|legal|ethical|a good idea|something i)|"
    r"illegal|unlawful|against the law|unethical|immoral|harmful|dangerous|please don'?t|you shouldn'?t|"
    r"should not|i'?d (?:recommend|suggest|encourage) (?:talking|speaking|contacting|seeking|reaching)|"
    r"seek (?:help|professional)|contact (?:the )?(?:police|authorities)|hotline|therapist|counsel(?:or|ling)|"
    r"why (?:do|would) you want|are you sure|what do you mean|i'?m not sure|instead)\b", re.I)
