"""Secret finders: detect-secrets' plugins used as a library (their vetted patterns and validators),
plus private-key blocks and keyword-anchored high-entropy values."""

from __future__ import annotations

import math
import re
from typing import Any

from shardguard.detectors.memorization.values import Match, resolve_overlaps

# ---------------------------------------------------------------------------------------------
# secret finders: detect-secrets' plugins as a library (their vetted patterns and validators)
# ---------------------------------------------------------------------------------------------

def _plugins() -> list[tuple[str, str, Any]]:
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return [
        ("aws_key", "aws", AWSKeyDetector()), ("github_token", "github", GitHubTokenDetector()),
        ("slack_token", "slack", SlackDetector()), ("private_key", "private_key", PrivateKeyDetector()),
        ("jwt", "jwt", JwtTokenDetector()), ("secret", "gitlab", GitLabTokenDetector()),
        ("secret", "openai", OpenAIDetector()), ("secret", "stripe", StripeDetector()),
        ("secret", "sendgrid", SendGridDetector()), ("secret", "discord", DiscordBotTokenDetector()),
        ("secret", "mailchimp", MailchimpDetector()), ("secret", "npm", NpmDetector()),
        ("secret", "pypi", PypiTokenDetector()), ("secret", "telegram", TelegramBotTokenDetector()),
        ("secret", "azure_storage", AzureStorageKeyDetector()), ("secret", "square", SquareOAuthDetector()),
        ("secret", "twilio", TwilioKeyDetector()), ("secret", "basic_auth", BasicAuthDetector()),
    ]


_GROUP_IS_VALUE = {"aws", "basic_auth", "npm"}
# lowercase substrings every match of a plugin contains (a cheap gate before its regexes); None: always run
_MARKERS = {
    "aws": ("akia", "asia", "abia", "acca", "a3t", "aws"), "github": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "slack": ("xox", "hooks.slack.com"), "jwt": ("eyj",), "gitlab": ("gl", "gr1348941"), "openai": ("t3blbkfj",),
    "stripe": ("k_live_",), "sendgrid": ("sg.",), "mailchimp": ("-us",), "npm": ("_authtoken",), "pypi": ("pypi-",),
    "telegram": (":",), "azure_storage": ("accountkey=",), "square": ("sq0csp-",), "basic_auth": ("://",),
    "private_key": ("private key", "putty-user-key-file"), "discord": (".",),
}
_KEYWORDS = ("secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key", "accesskey", "auth_key",
             "auth-key", "authkey", "private_key", "private-key", "privatekey", "passw", "pwd", "credential", "bearer")
_PLUGINS: list | None = None
_ENTROPY: tuple | None = None


def plugins():
    global _PLUGINS, _ENTROPY
    if _PLUGINS is None:
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString

        _PLUGINS = _plugins()
        _ENTROPY = (Base64HighEntropyString(), HexHighEntropyString())
    return _PLUGINS


_PEM_BLOCK = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|$)", re.S)
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d: .*?(?:Private-MAC: \S+|$)", re.S)
# keyword = value assignments whose value looks random (detect-secrets' entropy measures decide "random")
_KEYWORD_ASSIGN = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_.-]{0,30}?(?:secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|"
    r"client[_-]?secret|private[_-]?key|passw(?:or)?d|passwd|pwd|credentials?|bearer)[A-Za-z0-9_.-]{0,20})"
    r"[\"']?\s*(?:=|:=|=>|:|\s)\s*[\"']?([A-Za-z0-9+/_.~$!@#%^&*=-]{8,200})")
_BEARER = re.compile(r"(?i)\bBearer\s+([A-Za-z0-9._~+/=-]{20,})")


def _entropy_ok(value: str, keyword: str) -> tuple[bool, str]:
    """Is this assigned value a credential? Long random-looking tokens (entropy near the maximum for
    their length and alphabet, per detect-secrets' Shannon entropy), or a password-like value after a
    password keyword (letters with digits or symbols, not a plain word)."""
    plugins()
    b64, hexp = _ENTROPY
    v = value.strip("\"'.,;")
    if len(v) < 8 or v.lower() in ("password", "passwords", "required", "optional", "none", "null", "true", "false"):
        return False, ""
    is_pw = bool(re.search(r"(?i)pass|pwd", keyword))
    if len(v) >= 16 and re.fullmatch(r"[0-9a-fA-F]+", v) and not v.isdigit():
        if hexp.calculate_shannon_entropy(v) >= 3.0:
            return True, "hex_high_entropy"
    if len(v) >= 16 and re.search(r"[A-Za-z]", v) and re.search(r"\d", v):
        # random strings of n distinct-ish symbols have entropy close to log2(n); prose words do not mix digits
        if b64.calculate_shannon_entropy(v) >= min(4.2, 0.8 * math.log2(len(v))):
            return True, "base64_high_entropy"
    if is_pw and re.fullmatch(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+(?:\(.*)?", v):
        return False, ""  # code reading a password from somewhere (os.environ.get, config.db.password)
    if is_pw and 8 <= len(v) <= 64 and re.search(r"[A-Za-z]", v) and (re.search(r"\d", v) or re.search(r"[^\w]", v)) \
            and not re.fullmatch(r"[A-Za-z]+[.,;:!?]?", v) and not v.startswith(("http", "www.")):
        return True, "password"
    return False, ""


def find_secrets(text: str) -> list[Match]:
    out: list[Match] = []
    low = text.lower()
    for kind, sub, plugin in plugins():
        marks = _MARKERS.get(sub)
        if marks is not None and not any(x in low for x in marks):
            continue  # none of this vendor's fixed markers: its patterns cannot match
        if kind == "private_key":
            if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
                hits = list(plugin.analyze_string(text))
                if hits:
                    for m in _PEM_BLOCK.finditer(text):
                        out.append(Match(kind, m.start(), m.end(), m.group(), m.group(1).lower().replace(" ", "_")))
                    for m in _PUTTY.finditer(text):
                        out.append(Match(kind, m.start(), m.end(), m.group(), "putty"))
            continue
        for rx in plugin.denylist:
            for m in rx.finditer(text):
                # the value is the whole match, except where the plugin's group is the value itself
                # (AWS secret keys after a keyword, the password of scheme://user:pass@host, npm tokens)
                g = 1 if sub in _GROUP_IS_VALUE and rx.groups else 0
                s, e = m.span(g)
                v = m.group(g)
                if kind == "jwt":
                    # the plugin's lazy pattern stops before the signature: take it too when it decodes
                    if text[e - 1:e] == "." or text[e:e + 1] == ".":
                        e2 = e + (text[e:e + 1] == ".")
                        while e2 < len(text) and (text[e2].isalnum() or text[e2] in "-_=+/"):
                            e2 += 1
                        if plugin.is_formally_valid(text[s:e2]):
                            e, v = e2, text[s:e2]
                    if not plugin.is_formally_valid(v):
                        continue
                stype = sub
                if kind == "aws_key":
                    stype = "aws_secret_access_key" if g else "aws_access_key_id"
                out.append(Match(kind, s, e, v, stype))
    if not any(w in low for w in _KEYWORDS):
        return resolve_overlaps(out)
    for m in _KEYWORD_ASSIGN.finditer(text):
        ok, how = _entropy_ok(m.group(2), m.group(1))
        if ok:
            v = m.group(2).rstrip("\"'.,;")
            s = m.start(2)
            kind = "aws_key" if re.search(r"(?i)aws", m.group(1)) and len(v) == 40 else "secret"
            out.append(Match(kind, s, s + len(v), v, "aws_secret_access_key" if kind == "aws_key" else how))
    for m in (_BEARER.finditer(text) if "bearer" in low else ()):
        ok, how = _entropy_ok(m.group(1), "token")
        if ok:
            out.append(Match("secret", m.start(1), m.end(1), m.group(1), "bearer_" + how))
    return resolve_overlaps(out)


# Rust-regex superset of what the finders look for (no look-arounds), for the batch prefilter
SECRET_PREFILTER = (
    r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_|xox[aboprs]-|hooks\.slack\.com|PRIVATE KEY|"
    r"PuTTY-User|eyJ[A-Za-z0-9_-]{4}|glpat-|gl[a-z]{2,5}-|GR1348941|T3BlbkFJ|[rs]k_live_|SG\.|[MNO][A-Za-z0-9_-]{23,25}\.|"
    r"-us\d|_authToken|pypi-|\d{8,10}:[0-9A-Za-z_-]{30}|AccountKey=|sq0csp-|AC[a-z0-9]{32}|SK[a-z0-9]{32}|"
    r"://[^\s/:@]+:[^\s/@]+@|(?i:secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|passw|passwd|pwd|"
    r"credential|bearer)"
)
