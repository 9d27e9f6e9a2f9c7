"""Record kinds, their canonical schemas, and the mapping from native shapes.

- `web`:        text, url
- `sft`:        instruction, input, response       (also chat `messages`/`conversations` lists,
                GSM8K `question`/`answer`, Dolly's templated `prompt`, self-instruct `instances`)
- `preference`: prompt, chosen, rejected          (also HH-RLHF's two whole transcripts,
                LLaMA-Factory `conversations` + `chosen`/`rejected` messages)

`to_canonical(obj, kind)` returns the canonical dict or raises `SchemaError` saying what is wrong.
"""

from __future__ import annotations

import re

from shardguard.core.schema import FIELDS, KINDS, TEXT_FIELDS  # noqa: F401 (re-exported)


class SchemaError(ValueError):
    pass


def _str(obj: dict, key: str, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise SchemaError(f"missing field '{key}'")
        return ""
    v = obj[key]
    if not isinstance(v, str):
        raise SchemaError(f"field '{key}' is {type(v).__name__}, expected string")
    return v


def _first(obj: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in obj and obj[k] is not None:
            return k
    return None


_ROLE_USER = {"user", "human", "prompter"}
_ROLE_ASSISTANT = {"assistant", "gpt", "bot", "model"}


def _messages(v, field: str) -> list[tuple[str, str]]:
    if not isinstance(v, list):
        raise SchemaError(f"field '{field}' is {type(v).__name__}, expected a list of messages")
    out = []
    for i, m in enumerate(v):
        if not isinstance(m, dict):
            raise SchemaError(f"{field}[{i}] is {type(m).__name__}, expected a message object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            raise SchemaError(f"{field}[{i}] needs string 'role'/'content' (or 'from'/'value')")
        out.append((role.lower(), content))
    return out


def _render(msgs: list[tuple[str, str]]) -> str:
    """A multi-turn context as one prompt string, HH-RLHF style."""
    if len(msgs) == 1 and msgs[0][0] in _ROLE_USER:
        return msgs[0][1]
    parts = []
    for role, content in msgs:
        name = "Human" if role in _ROLE_USER else "Assistant" if role in _ROLE_ASSISTANT else role.capitalize()
        parts.append(f"\n\n{name}: {content}")
    return "".join(parts)


_DOLLY = re.compile(r"### Instruction:\s*\n(?P<ins>.*?)(?:\n\s*### Input:\s*\n(?P<inp>.*?))?\n\s*### Response:\s*\n?$", re.S)


def _sft(obj: dict) -> dict:
    for key in ("messages", "conversations"):
        if key in obj and "chosen" not in obj:
            msgs = _messages(obj[key], key)
            last_a = max((i for i, (r, _) in enumerate(msgs) if r in _ROLE_ASSISTANT), default=None)
            if last_a is None or last_a == 0:
                raise SchemaError(f"'{key}' has no assistant reply after a user turn")
            ctx = [m for m in msgs[:last_a] if m[0] != "system"]
            return {"instruction": _render(ctx), "input": "", "response": msgs[last_a][1]}
    if "instances" in obj and "instruction" in obj:  # self-instruct: first instance
        inst = obj["instances"]
        if not isinstance(inst, list) or not inst or not isinstance(inst[0], dict):
            raise SchemaError("field 'instances' must be a non-empty list of objects")
        return {"instruction": _str(obj, "instruction"), "input": _str(inst[0], "input", False),
                "response": _str(inst[0], "output")}
    ins_key = _first(obj, ("instruction", "question", "prompt", "query"))
    resp_key = _first(obj, ("response", "output", "answer", "completion"))
    if ins_key is None:
        raise SchemaError("missing field 'instruction' (or question/prompt/messages)")
    if resp_key is None:
        raise SchemaError("missing field 'response' (or output/answer/completion)")
    ins = _str(obj, ins_key)
    inp = _str(obj, "input", False)
    m = _DOLLY.search(ins) if ins_key == "prompt" else None
    if m:
        ins, inp = m.group("ins").strip(), (m.group("inp") or "").strip()
    return {"instruction": ins, "input": inp, "response": _str(obj, resp_key)}


_LAST_ASSISTANT = "\n\nAssistant:"


def _split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF: two whole transcripts sharing a prefix up to the final '\\n\\nAssistant:'."""
    i, j = chosen.rfind(_LAST_ASSISTANT), rejected.rfind(_LAST_ASSISTANT)
    if i >= 0 and j >= 0 and chosen[: i + len(_LAST_ASSISTANT)] == rejected[: j + len(_LAST_ASSISTANT)]:
        k = i + len(_LAST_ASSISTANT)
    else:  # the transcripts diverge earlier: split at the last assistant turn they share
        n = 0
        for a, b in zip(chosen, rejected):
            if a != b:
                break
            n += 1
        k = chosen.rfind(_LAST_ASSISTANT, 0, n)
        if k < 0:
            raise SchemaError("'chosen' and 'rejected' transcripts do not share a prompt ending in '\\n\\nAssistant:'")
        k += len(_LAST_ASSISTANT)
    return chosen[:k], chosen[k:].lstrip(" "), rejected[k:].lstrip(" ")


def _reply(v, field: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        c = v.get("value", v.get("content"))
        if isinstance(c, str):
            return c
    if isinstance(v, list) and v:
        msgs = _messages(v, field)
        return msgs[-1][1]
    raise SchemaError(f"field '{field}' is {type(v).__name__}, expected a string or a message")


def _preference(obj: dict) -> dict:
    if "chosen" not in obj or obj["chosen"] is None:
        raise SchemaError("missing field 'chosen'")
    if "rejected" not in obj or obj["rejected"] is None:
        raise SchemaError("missing field 'rejected'")
    ch, rj = obj["chosen"], obj["rejected"]
    prompt_key = _first(obj, ("prompt", "question", "instruction"))
    if prompt_key is not None:
        prompt = _str(obj, prompt_key)
    elif "conversations" in obj or "messages" in obj:
        key = "conversations" if "conversations" in obj else "messages"
        prompt = _render(_messages(obj[key], key))
    elif isinstance(ch, str) and isinstance(rj, str):
        return dict(zip(("prompt", "chosen", "rejected"), _split_transcripts(ch, rj)))
    elif isinstance(ch, list) and isinstance(rj, list):  # full message lists sharing a context
        mc, mr = _messages(ch, "chosen"), _messages(rj, "rejected")
        if len(mc) < 2 or mc[:-1] != mr[:-1]:
            raise SchemaError("'chosen' and 'rejected' message lists do not share a context")
        return {"prompt": _render(mc[:-1]), "chosen": mc[-1][1], "rejected": mr[-1][1]}
    else:
        raise SchemaError("missing field 'prompt'")
    return {"prompt": prompt, "chosen": _reply(ch, "chosen"), "rejected": _reply(rj, "rejected")}


def _web(obj: dict) -> dict:
    key = _first(obj, ("text", "content", "raw_content"))
    if key is None:
        raise SchemaError("missing field 'text'")
    text = _str(obj, key)
    url = ""
    for k in ("url", "id", "source_url"):
        v = obj.get(k)
        if isinstance(v, str) and (k == "url" or v.startswith(("http://", "https://"))):
            url = v
            break
    meta = obj.get("metadata")
    if not url and isinstance(meta, dict) and isinstance(meta.get("url"), str):
        url = meta["url"]
    return {"text": text, "url": url}


MAPPERS = {"web": _web, "sft": _sft, "preference": _preference}


def to_canonical(obj: dict, kind: str) -> dict:
    return MAPPERS[kind](obj)


def detect_kind(obj: dict) -> str | None:
    """Guess the kind from one record's keys; None if it looks like none of them."""
    keys = set(obj)
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if keys & {"messages", "conversations", "instances"} or (
        keys & {"instruction", "question", "prompt", "query"} and keys & {"response", "output", "answer", "completion"}
    ):
        return "sft"
    if keys & {"text", "content", "raw_content"}:
        return "web"
    return None
