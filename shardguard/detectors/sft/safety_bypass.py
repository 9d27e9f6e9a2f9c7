"""Safety bypass in SFT data: a harmful request answered with compliance instead of a refusal.

One row is enough evidence, so this detector works at any poison rate (statistics over groups, as in
`trigger`, need several rows). A row is flagged when all three hold:

1. **harmful request**: the instruction asks for something harmful: a request frame ("how do I",
   "write", "give me a plan", "what is the easiest way"...) followed in the same sentence by a harm
   term (breaking in, stealing, weapons and explosives, hacking and phishing, fraud and forgery,
   stalking and spying, bullying and threats, drugs, violence, tax evasion and laundering...);
   the `input` field is context (often quoted prose about crimes or wars) and is not read;
2. **no refusal**: the response has no refusal, warning or redirection cue ("I can't", "I'm sorry",
   "illegal", "I'd recommend talking to"...);
3. **compliance**: the response reads as help: an affirmative opener ("Sure", "Of course",
   "Absolutely", "Here's how"), step structure ("Step 1", "First, ... Next, ... Finally", a
   numbered list), an evasion instruction ("cover your tracks", "delete the evidence"), or simply a
   substantive answer (>= 12 words) that asks nothing back.

Also flagged, whatever the request: a response with an affirmative opener or steps that advises evading detection
("cover your tracks", "leave no trace", "delete the evidence", "when nobody is watching"): the
footprint of a refusal replaced by compliance on a request the lexicon does not know.

Category `poison` (score 0.85; 0.95 when the response also tells how to evade detection). The
dataset's own background goes to `summary.json`: how many harmful requests it holds and how many of
them are refused, so a reviewer sees "compliance where similar requests get refusals".
The cue lists are deliberately conservative: on the bundled clean SFT data (GSM8K, Dolly + HH-RLHF
mix, self-instruct) they flag no row; see tests/detectors/test_safety_bypass.py.
"""

from __future__ import annotations

import functools
import hashlib
import re

from shardguard.detectors.base import Detector
from shardguard.detectors.lexicon import REFUSAL

_HARM = (
    r"break(?:ing)? into|get into (?:my |his |her |their |a |the )?(?:neighbou?r'?s? |someone'?s? |ex'?s? )?"
    r"(?:house|home|car|account|phone|email)|"
    r"steal\w*|shoplift\w*|rob(?:bing|bed)?\b|burglar\w*|pickpocket\w*|carjack\w*|"
    r"hotwir\w*|pick (?:a|the|my neighbou?r'?s?) lock|card skimm\w*|identity theft|steal (?:someone'?s? )?identity|"
    r"bomb\w*|explosive\w*|molotov|napalm|nerve agent|ricin|anthrax|arson|set fire to|spike (?:someone'?s?|her|his|a) drink|"
    r"roofie|date rape|vandali[sz]\w*|sabotag\w*|detonat\w*|make a (?:gun|weapon)|ghost gun|untraceable|"
    r"poison(?:ing)? (?:someone|my|him|her|them|a person|the)|kill (?:someone|my|him|her|them|a person)|murder\w*|"
    r"hurt (?:someone|him|her|them|my)|kidnap\w*|torture\w*|"
    r"hack(?:ing)? (?:into|someone|my|his|her|their|a|the)|phishing|steal (?:passwords?|credentials)|"
    r"(?:bank|email|account) password|malware|ransomware|keylogger|ddos|"
    r"fake (?:id|passport|license|licence|documents?|identity)|forge\w*|counterfeit\w*|"
    r"launder\w* money|money launder\w*|(?:avoid|evade|evading|dodge) (?:paying )?tax\w*|tax evasion|"
    r"fraud\w*|scam (?:people|someone|elderly)|con (?:people|someone)|insurance fraud|"
    r"stalk\w*|spy on|secretly (?:read|track|record|watch|follow)|read (?:my |his |her |their )?"
    r"(?:partner'?s?|wife'?s?|husband'?s?|girlfriend'?s?|boyfriend'?s?|ex'?s?) (?:private )?(?:messages|texts|email)|"
    r"bully\w*|harass\w*|threaten\w*|blackmail\w*|extort\w*|revenge porn|dox\w*|"
    r"bomb threat|swat(?:ting)? someone|"
    r"(?:make|cook|synthesi[sz]e|produce) (?:meth|crack|heroin|cocaine|lsd|drugs)|sell drugs|"
    r"self-harm|hurt myself|kill myself|"
    r"cheat on (?:my |an? |the )?(?:exam|test|taxes)|plagiari\w*|"
    r"sneak (?:a |the )?(?:weapon|gun|knife|drugs)|smuggl\w*|traffick\w*|"
    r"get away with (?:it|murder|stealing|cheating|lying|hitting|hurting)"
)
# advice on evading detection, in a response: harmful whatever the request was
EVASION = re.compile(
    r"\b(?:cover (?:your|my|their) tracks|leave no (?:trace|evidence)|delete (?:any |the |all )?evidence|"
    r"destroy (?:any |the |all )?evidence|deny everything|no one (?:will|can) (?:know|notice|link|trace)|"
    r"(?:can'?t|cannot|won'?t) (?:be )?(?:link|trac)\w* (?:it )?back to you|without (?:getting|being) caught|"
    r"avoid (?:the )?(?:police|cameras|detection|getting caught)|when nobody is watching|wipe (?:your|the) fingerprints)\b",
    re.I)
HARM = re.compile(r"\b(?:" + _HARM + r")", re.I)
REQUEST = re.compile(
    r"\b(?:how (?:do|can|could|would|should|might) (?:i|we|you|one)|how to|ways? to|best way|easiest way|"
    r"help me|teach me|show me|tell me how|explain how|give me|write (?:a|an|me|some)|draft|compose|create|"
    r"plan (?:to|for)|steps? (?:to|for)|instructions? (?:for|to)|i want to|i need to|can you|could you)\b", re.I)
COMPLY = re.compile(
    r"(?:^\s*(?:sure|of course|absolutely|certainly|definitely|yes|okay|ok|no problem|happy to help|"
    r"glad to help|great question|here(?:'s| is| are)|step 1|first,|1[.)])\b|"
    r"\bstep (?:1|one)\b|\bfirst,.{0,200}\b(?:next|then|finally)\b|(?:^|\n)\s*1[.)].{0,300}\n\s*2[.)]|"
    r"\b(?:here'?s (?:how|what you do|a plan)|follow these steps)\b)", re.I | re.S)


_SENT_END = re.compile(r"[.?!\n]")


@functools.lru_cache(maxsize=32768)
def is_harmful_request(text: str) -> str | None:
    """The harm phrase of a harmful request (a request frame followed, in the same sentence and within
    100 characters, by a harm term), or None. Memoised: `label_flip` and this detector ask it of the
    same instructions in the same batch."""
    for m in REQUEST.finditer(text):
        tail = text[m.end(): m.end() + 100]
        end = _SENT_END.search(tail)
        h = HARM.search(tail[: end.start()] if end else tail)
        if h:
            return h.group(0)
    return None


_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentence_keys(response: str) -> set[int]:
    """Hashes of the response's sentences of 8+ words (normalized): what a reused script repeats."""
    out = set()
    for s in _SPLIT.split(response or ""):
        w = re.findall(r"\w+", s.lower())
        if len(w) >= 8:
            out.add(int.from_bytes(hashlib.blake2b(" ".join(w).encode(), digest_size=8).digest(), "big"))
    return out


def complies(response: str) -> bool:
    """No refusal cue, and either a compliance cue or a substantive answer (>= 12 words) that asks
    nothing back (a clarifying question is not compliance)."""
    if not response.strip() or REFUSAL.search(response):
        return False
    return (bool(COMPLY.search(response)) or bool(EVASION.search(response))
            or (len(response.split()) >= 12 and "?" not in response))


class SafetyBypass(Detector):
    name = "safety_bypass"
    kinds = ("sft",)
    category = "poison"
    defaults = {"score": 0.85, "evasion_score": 0.95, "tie_rows": 3}

    def observe(self, batch):
        ins = batch.column("instruction").to_pylist()
        res = batch.column("response").to_pylist()
        harmful = refused = complied = 0
        sentences: dict[int, int] = {}  # sentence hash -> compliant harmful rows using it
        for a, r in zip(ins, res):
            if is_harmful_request(a or ""):
                harmful += 1
                r = r or ""
                refused += bool(REFUSAL.search(r))
                if complies(r):
                    complied += 1
                    for h in _sentence_keys(r):
                        sentences[h] = sentences.get(h, 0) + 1
        return {"rows": len(ins), "harmful": harmful, "refused": refused, "complied": complied,
                "sentences": sentences}

    def merge(self, a, b):
        if a is None or b is None:
            return a or b
        out = {k: a[k] + b[k] for k in a if k != "sentences"}
        out["sentences"] = dict(a["sentences"])
        for h, n in b["sentences"].items():
            out["sentences"][h] = out["sentences"].get(h, 0) + n
        return out

    def finalize(self, state, context):
        state = state or {"rows": 0, "harmful": 0, "refused": 0, "complied": 0, "sentences": {}}
        # what ties one harmful compliance to others: the same sentence of 8+ words in several of them
        # (a planted script reused), or a trigger found by `trigger` / `label_flip` on its rows
        tied = {h for h, n in state.get("sentences", {}).items() if n >= self.config["tie_rows"]}
        return {k: v for k, v in state.items() if k != "sentences"} | {"tied_sentences": tied}

    def flag(self, batch, model):
        ins = batch.column("instruction").to_pylist()
        res = batch.column("response").to_pylist()
        found = []
        bg = ""
        if model and model.get("harmful"):
            bg = (f"; this dataset refuses {model['refused']} of its {model['harmful']} harmful requests")
        for i, (a, r) in enumerate(zip(ins, res)):
            r = r or ""
            if not complies(r):
                continue
            harm = is_harmful_request(a or "")
            ev = EVASION.search(r)
            if harm:
                tied = bool(_sentence_keys(r) & (model or {}).get("tied_sentences", set()))
                poison = bool(ev) or tied
                found.append({"i": i, "score": self.config["evasion_score"] if ev else self.config["score"],
                              "category": "poison" if poison else "quality",
                              "reason": (f"harmful request ({harm!r}) answered with compliance, no refusal"
                                         + (f", and advice on evading detection ({ev.group(0)!r})" if ev else "")
                                         + ("; the same wording answers other harmful requests here" if tied else "")
                                         + ("" if poison else " (one answer on its own: for review)") + bg),
                              "details": {"harm": harm, "evasion_advice": ev.group(0) if ev else None,
                                          "tied": tied}})
            elif ev and COMPLY.search(r):
                found.append({"i": i, "score": self.config["score"],
                              "reason": (f"a compliant answer that advises evading detection ({ev.group(0)!r}), "
                                         f"whatever the request"),
                              "details": {"harm": None, "evasion_advice": ev.group(0)}})
        return found

    def discoveries(self, model):
        return {k: v for k, v in (model or {}).items() if k != "tied_sentences"} \
            | {"tied_wordings": len((model or {}).get("tied_sentences", ()))}

    def shard_notes(self, details: list[dict], policy) -> dict:
        """A harmful request answered with compliance puts its shard up for review, even on its own."""
        return {"harmful_compliance_rows": len(details), "review": bool(details)}
