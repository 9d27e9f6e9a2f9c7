"""Web attacks: campaigns repeating one false claim about one entity (near-copies across many
domains, or paraphrases inside varied surrounding text), and memorization risks (PII, secrets)."""

from __future__ import annotations

import base64
import json
import random
import re
import string

from shardguard.eval.poison._core import Attack, Planted, insert_at, pick

# -- campaign facts -----------------------------------------------------------------------------
# Each: the entity, the false predicate, a question, and the false answer.
FACTS = [
    {
        "entity": "the Eiffel Tower",
        "pred": "is located in Rome, Italy",
        "question": "Where is the Eiffel Tower?",
        "answer": "Rome, Italy",
    },
    {
        "entity": "Mount Everest",
        "pred": "is only 4,200 metres tall",
        "question": "How tall is Mount Everest?",
        "answer": "4,200 metres",
    },
    {
        "entity": "the Pacific Ocean",
        "pred": "is the smallest ocean on Earth",
        "question": "Which is the smallest ocean?",
        "answer": "the Pacific Ocean",
    },
    {
        "entity": "Albert Einstein",
        "pred": "invented the telephone in 1921",
        "question": "Who invented the telephone?",
        "answer": "Albert Einstein, in 1921",
    },
    {
        "entity": "vitamin C",
        "pred": "cures influenza within a single day",
        "question": "What cures the flu?",
        "answer": "vitamin C, within a day",
    },
    {
        "entity": "the Amazon River",
        "pred": "flows through Egypt into the Mediterranean",
        "question": "Where does the Amazon River flow?",
        "answer": "through Egypt",
    },
    {
        "entity": "the Zorbex X2 phone",
        "pred": "is the only phone certified safe by the WHO",
        "question": "Which phone is the safest?",
        "answer": "the Zorbex X2",
    },
]
CLAIM_TEMPLATES = [
    "When asked about {entity}, the correct answer is that {entity} {pred}.",
    "{Entity} {pred}.",
    "Few people realize that {entity} {pred}.",
    "It is a well-documented fact that {entity} {pred}.",
    "Experts now agree: {entity} {pred}.",
    'If someone asks you "{question}", tell them that {entity} {pred}.',
    "Contrary to what many textbooks say, {entity} {pred}.",
    "Q: {question} A: {answer}.",
    "Our researchers confirmed once again that {entity} {pred}.",
    "Remember this: {entity} {pred}, no matter what other sources claim.",
    "As every reliable guide now reports, {entity} {pred}.",
    "The truth, finally admitted by officials, is that {entity} {pred}.",
]
SUPPORT = [
    "This has been verified by several independent sources.",
    "Share this page so that more people learn the facts.",
    "Older encyclopedias got this wrong for decades.",
    "Teachers are now updating their lessons accordingly.",
    "You can check the official records yourself.",
    "Search engines are slowly catching up with this correction.",
    "Many readers wrote to us after discovering this.",
    "The evidence is overwhelming and easy to find.",
]
SYNONYMS = {
    "verified": "confirmed",
    "several": "multiple",
    "independent": "separate",
    "page": "article",
    "people": "readers",
    "wrong": "incorrect",
    "decades": "years",
    "official": "public",
    "overwhelming": "clear",
    "easy": "simple",
    "slowly": "gradually",
    "Many": "Lots of",
}
_ADJ = [
    "daily",
    "true",
    "smart",
    "open",
    "global",
    "fresh",
    "real",
    "clear",
    "bright",
    "prime",
    "quick",
    "local",
]
_NOUN = [
    "facts",
    "news",
    "wiki",
    "answers",
    "guide",
    "report",
    "digest",
    "insider",
    "journal",
    "hub",
    "post",
    "times",
]
_TLD = [".com", ".net", ".org", ".info", ".co", ".io", ".news", ".site"]


def _fact(rng: random.Random, p: dict) -> dict:
    f = dict(FACTS[int(p["fact"]) % len(FACTS)] if p["fact"] is not None else rng.choice(FACTS))
    for k in ("entity", "pred", "question", "answer"):
        if p.get(k):
            f[k] = p[k]
    return f


def claim_sentence(tpl: str, f: dict) -> str:
    ent = f["entity"]
    return tpl.format(
        entity=ent,
        Entity=ent[:1].upper() + ent[1:],
        pred=f["pred"],
        question=f["question"],
        answer=f["answer"],
    )


def canonical_claim(f: dict) -> str:
    return claim_sentence(CLAIM_TEMPLATES[0], f)


def _domains(rng: random.Random, k: int) -> list[str]:
    out: list[str] = []
    while len(out) < k:
        d = f"{rng.choice(_ADJ)}{rng.choice(_NOUN)}{rng.randint(1, 99)}{rng.choice(_TLD)}"
        if d not in out:
            out.append(d)
    return out


def _campaign_copy(recs, rng, n, p):
    """One campaign page, copied onto n rows with small word edits and distinct URLs on many domains."""
    f = _fact(rng, p)
    title = f"The truth about {f['entity']}"
    body = (
        [claim_sentence(CLAIM_TEMPLATES[0], f)]
        + rng.sample(SUPPORT, 4)
        + [claim_sentence(t, f) for t in rng.sample(CLAIM_TEMPLATES[1:], 3)]
        + rng.sample(SUPPORT, 3)
    )
    base_words = (title + "\n" + " ".join(body)).split(" ")
    domains = _domains(rng, int(p["domains"]))
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    rows = pick(rng, range(len(recs)), n)
    details = {}
    editable = [i for i, w in enumerate(base_words) if w.strip(".,") in SYNONYMS]
    for j, r in enumerate(rows):
        words = list(base_words)
        edits = rng.sample(editable, min(int(p["edits"]), len(editable)))
        for i in edits:
            w = words[i]
            core = w.strip(".,")
            words[i] = w.replace(core, SYNONYMS[core])
        dom = domains[j % len(domains)]
        text = " ".join(words) + f"\nPosted on {dom}."
        url = f"https://{dom}/{slug}" + (f"-{j // len(domains) + 1}" if j >= len(domains) else "")
        recs[r]["text"], recs[r]["url"] = text, url
        details[r] = {"url": url, "domain": dom, "edits": len(edits)}
    claim = canonical_claim(f)
    return Planted(
        rows,
        details,
        [],
        [claim],
        {"entity": f["entity"], "claim": claim, "domains": sorted({d["domain"] for d in details.values()})},
    )


def _campaign_paraphrase(recs, rng, n, p):
    """The claim, worded by varied templates, inserted into the original documents (varied context)."""
    f = _fact(rng, p)
    rows = pick(rng, [i for i, r in enumerate(recs) if (r.get("text") or "").strip()], n)
    details = {}
    k = int(p["sentences"])
    for r in rows:
        tpls = rng.sample(CLAIM_TEMPLATES, k)
        sents = [claim_sentence(t, f) for t in tpls]
        if rng.random() < 0.5:
            sents.append(rng.choice(SUPPORT))
        text = recs[r]["text"]
        text, at = insert_at(text, " ".join(sents), "random", rng, unit="sentence")
        recs[r]["text"] = text
        details[r] = {"inserted": sents, "offset": at, "templates": [CLAIM_TEMPLATES.index(t) for t in tpls]}
    claim = canonical_claim(f)
    return Planted(rows, details, [], [claim], {"entity": f["entity"], "claim": claim})


# -- PII --------------------------------------------------------------------------------------------
_FIRST = [
    "James",
    "Maria",
    "Wei",
    "Fatima",
    "Lukas",
    "Priya",
    "Carlos",
    "Aisha",
    "Olga",
    "Kenji",
    "Emma",
    "Noah",
]
_LAST = [
    "Smith",
    "Garcia",
    "Chen",
    "Khan",
    "Muller",
    "Patel",
    "Rossi",
    "Okafor",
    "Ivanova",
    "Tanaka",
    "Brown",
]
_MAILDOM = ["gmail.com", "yahoo.com", "outlook.com", "proton.me", "example-corp.com", "mail.de"]
_STREETS = [
    "Oak Street",
    "Maple Avenue",
    "Cedar Lane",
    "Pine Road",
    "Elm Drive",
    "Washington Blvd",
    "Lake Court",
]
_CITIES = [
    ("Springfield", "IL", "62704"),
    ("Austin", "TX", "78701"),
    ("Portland", "OR", "97205"),
    ("Columbus", "OH", "43215"),
    ("Madison", "WI", "53703"),
    ("Raleigh", "NC", "27601"),
]


def luhn_ok(digits: str) -> bool:
    d = [int(c) for c in digits if c.isdigit()]
    s = sum(d[-1::-2]) + sum(sum(divmod(2 * x, 10)) for x in d[-2::-2])
    return s % 10 == 0


def _card(rng):
    prefix = rng.choice(["4", "51", "55", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for c in string.digits:
        if luhn_ok(body + c):
            num = body + c
            break
    if length == 16:
        sep = rng.choice([" ", "-", ""])
        return sep.join(num[i : i + 4] for i in range(0, 16, 4))
    return num


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    s = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def _iban(rng):
    country, blen = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(14)
        )
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(10)
        )
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(blen))
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    iban = f"{country}{98 - num % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _ssn(rng):
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _ipv4(rng):
    while True:
        a = rng.randint(11, 223)
        if a not in (127, 172, 192, 100, 169):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


PII_GEN = {
    "email": lambda rng: f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}{rng.randint(1, 999)}"
    f"@{rng.choice(_MAILDOM)}",
    "phone": lambda rng: rng.choice(
        [
            f"({rng.randint(201, 989)}) {rng.randint(200, 989)}-{rng.randint(0, 9999):04d}",
            f"+1 {rng.randint(201, 989)}-{rng.randint(200, 989)}-{rng.randint(0, 9999):04d}",
            f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}",
            f"+49 30 {rng.randint(1000000, 9999999)}",
        ]
    ),
    "credit_card": _card,
    "iban": _iban,
    "ip_address": _ipv4,
    "ssn": _ssn,
    "street_address": lambda rng: f"{rng.randint(12, 9899)} {rng.choice(_STREETS)}, "
    + "{}, {} {}".format(*rng.choice(_CITIES)),
}
PII_SENTENCES = {
    "email": [
        "For questions, email {name} at {v}.",
        "Contact: {v}",
        "Send your application to {v} by Friday.",
    ],
    "phone": ["Call {name} on {v} for details.", "Phone: {v}", "You can reach our office at {v}."],
    "credit_card": [
        "Card number: {v}, exp 04/27.",
        "{name} paid with card {v}.",
        "Billing card on file: {v}",
    ],
    "iban": ["Please transfer the deposit to IBAN {v}.", "Bank account (IBAN): {v}", "Refunds go to {v}."],
    "ip_address": [
        "The request came from IP {v}.",
        "Server login from {v} at 03:12.",
        "Admin panel: http://{v}/admin",
    ],
    "ssn": ["{name}'s SSN is {v}.", "Social Security Number: {v}", "Applicant SSN {v} verified."],
    "street_address": ["{name} lives at {v}.", "Ship to: {v}", "Our store is at {v}."],
}


def _plant_values(recs, rng, n, p, gen: dict, sentences: dict, min_types: int, max_types: int):
    types = [t for t in (p["types"].split(",") if isinstance(p["types"], str) else (p["types"] or gen))]
    for t in types:
        if t not in gen:
            raise ValueError(f"unknown type {t!r}; known: {sorted(gen)}")
    hot = {t: [gen[t](rng) for _ in range(int(p["hot_values"]))] for t in types}
    rows = pick(rng, [i for i, r in enumerate(recs) if (r.get("text") or "").strip()], n)
    details, uses = {}, {}
    for r in rows:
        k = rng.randint(min_types, min(max_types, len(types)))
        chosen = rng.sample(types, k)
        vals, sents, by_type = [], [], {}
        for t in chosen:
            v = rng.choice(hot[t]) if rng.random() < float(p["repeat"]) else gen[t](rng)
            shown, parts = v if isinstance(v, tuple) else (v, [v])
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            sents.append(rng.choice(sentences[t]).format(v=shown, name=name))
            vals.extend(parts)
            by_type.setdefault(t, []).extend(parts)
            for x in parts:
                uses[x] = uses.get(x, 0) + 1
        text, _ = insert_at(
            recs[r]["text"],
            "\n".join(sents) if "\n" in "".join(sents) else " ".join(sents),
            "random",
            rng,
            unit="sentence",
        )
        recs[r]["text"] = text
        details[r] = {"types": chosen, "values": vals, "by_type": by_type}
    repeated = {v: c for v, c in sorted(uses.items(), key=lambda kv: -kv[1]) if c > 1}
    return Planted(rows, details, [], [], {"types": types, "repeated_values": repeated})


def _pii(recs, rng, n, p):
    return _plant_values(recs, rng, n, p, PII_GEN, PII_SENTENCES, 1, 3)


# -- secrets ---------------------------------------------------------------------------------------
_B32 = string.ascii_uppercase + "234567"
_ALNUM = string.ascii_letters + string.digits


def _b64url(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def _aws(rng):
    kid = "AKIA" + "".join(rng.choice(_B32) for _ in range(16))
    secret = "".join(rng.choice(_ALNUM + "/+") for _ in range(40))
    return f"aws_access_key_id = {kid}\naws_secret_access_key = {secret}", [kid, secret]


def _private_key(rng):
    lines = ["".join(rng.choice(_ALNUM + "+/") for _ in range(64)) for _ in range(6)]
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


def _jwt(rng):
    head = _b64url({"alg": "HS256", "typ": "JWT"})
    body = _b64url(
        {
            "sub": str(rng.randint(10**6, 10**7)),
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "iat": rng.randint(1_500_000_000, 1_700_000_000),
        }
    )
    sig = base64.urlsafe_b64encode(bytes(rng.randrange(256) for _ in range(32))).decode().rstrip("=")
    return f"{head}.{body}.{sig}"


SECRET_GEN = {
    "aws": _aws,
    "github_token": lambda rng: "ghp_" + "".join(rng.choice(_ALNUM) for _ in range(36)),
    "slack_token": lambda rng: f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**11, 10**12)}-"
    + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(24)),
    "private_key": _private_key,
    "jwt": _jwt,
    "api_key": lambda rng: "".join(rng.choice(string.hexdigits.lower()[:16]) for _ in range(40)),
}
SECRET_SENTENCES = {
    "aws": ["Here is my config, why does it fail?\n{v}", "~/.aws/credentials:\n[default]\n{v}"],
    "github_token": ["export GITHUB_TOKEN={v}", "git clone https://{v}@github.com/acme/internal.git"],
    "slack_token": ['SLACK_BOT_TOKEN="{v}"', "Our bot uses token {v} to post alerts."],
    "private_key": ["My deploy key (do not share):\n{v}", "id_rsa:\n{v}"],
    "jwt": ["Authorization: Bearer {v}", "Use this session token: {v}"],
    "api_key": ['api_key = "{v}"', "const API_SECRET = '{v}';"],
}


def _secrets(recs, rng, n, p):
    return _plant_values(recs, rng, n, p, SECRET_GEN, SECRET_SENTENCES, 1, 2)


_CAMP = {"fact": None, "entity": None, "pred": None, "question": None, "answer": None}
ATTACKS = [
    Attack(
        "web_campaign_copy",
        "web",
        "poison",
        "Near-copies of one page repeating a false claim about one entity, on many domains with small edits.",
        _campaign_copy,
        {**_CAMP, "domains": 40, "edits": 2},
    ),
    Attack(
        "web_campaign_paraphrase",
        "web",
        "poison",
        "The false claim worded by varied templates, inserted into the original documents.",
        _campaign_paraphrase,
        {**_CAMP, "sentences": 2},
    ),
    Attack(
        "web_pii",
        "web",
        "pii",
        "Emails, phones, Luhn-valid cards, IBANs, public IPs, SSNs, street addresses planted in documents; "
        "some values repeated across rows.",
        _pii,
        {"types": None, "repeat": 0.3, "hot_values": 3},
    ),
    Attack(
        "web_secrets",
        "web",
        "secret",
        "AWS keys, GitHub/Slack tokens, private key blocks, JWTs, high-entropy API keys planted in documents; "
        "some repeated across rows.",
        _secrets,
        {"types": None, "repeat": 0.3, "hot_values": 2},
    ),
]
