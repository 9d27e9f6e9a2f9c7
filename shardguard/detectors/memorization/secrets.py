"""Secrets and credentials, found with detect-secrets' plugins used as a library, in-process.

The vendor plugins (AWS, GitHub, GitLab, Slack, private keys, JWT, OpenAI, Stripe, SendGrid,
Discord, Mailchimp, npm, PyPI, Telegram, Azure storage, Square, Twilio, URL basic auth) supply the
patterns and validators (JWTs must decode). Generic credentials are found only where prose cannot
produce them: a keyword (`secret`, `token`, `api_key`, `password`...) assigned a value that is
random by detect-secrets' Shannon entropy measures (hex or base64 alphabet, digits mixed with
letters), or a password-like value after a password keyword. (detect-secrets' stock entropy plugins
only look at quoted strings, so they miss `aws_secret_access_key = ...` pasted from a config file;
run unquoted, they fire on stray random-looking words.) A polars prefilter over the batch skips the
texts with none of the markers, so clean text costs one native regex pass.

Every finding is category `secret` (held back by the default policy); the score starts at 0.85 for
vendor formats and private keys (0.6 for generic high-entropy assignments) and rises with the
number of records that repeat the same secret.
"""

from __future__ import annotations

from shardguard.detectors.memorization.memo import MemoDetector
from shardguard.detectors.memorization.secret_patterns import SECRET_PREFILTER, find_secrets, plugins
from shardguard.detectors.memorization.values import Match

_LABEL = {"aws_key": "AWS key", "github_token": "GitHub token", "slack_token": "Slack token",
          "private_key": "private key", "jwt": "JWT"}


class Secrets(MemoDetector):
    name = "secrets"
    category = "secret"
    kinds = ("web", "sft", "preference")
    defaults = {
        "hash_salt": "",
        "max_shards_listed": 1000,
        "max_matches_listed": 50,
        "top_repeated": 25,
    }

    def setup(self) -> None:
        plugins()  # detect-secrets' plugin classes, loaded once per process

    def find(self, text: str) -> list[Match]:
        return find_secrets(text)

    def prefilter_patterns(self) -> list[str]:
        return [SECRET_PREFILTER]

    def base_score(self, m: Match) -> float:
        if m.type == "secret" and m.subtype in ("password", "hex_high_entropy", "base64_high_entropy") \
                or m.subtype.startswith("bearer_"):
            return 0.6
        if m.type == "jwt":
            return 0.75
        return 0.85

    def label(self, m: Match) -> str:
        if m.type == "secret":
            return {"password": "password", "hex_high_entropy": "high-entropy secret",
                    "base64_high_entropy": "high-entropy secret"}.get(m.subtype, f"{m.subtype.replace('_', ' ')} secret")
        return _LABEL.get(m.type, m.type)

    def noun(self, n: int) -> str:
        return "secret" if n == 1 else "secrets"
