"""`shardguard ui`: the reviewer's web app over a scan's `--out` folder and/or the service's `--state`.

Pages (all GET, none writes): the review queue `/`, a shard `/s/<scan>/shard?name=...` (findings grouped
by detector, filterable and sortable), a record `/s/<scan>/record?shard=...&row=...` (its text escaped,
with what the findings point at highlighted; related records side by side), the history `/history`
(scans, decisions, diffs). The one write is `POST /decide` (accept or reject a shard of the service's
review queue, through `service.history.accept_shard` / `reject_shard`, the functions `shardguard review`
uses), which needs the page's CSRF token and a same-origin request.

Hostile record text never runs: Jinja2 autoescapes everything, no template marks data safe, and every
response carries a Content-Security-Policy that allows no script at all (the app has none).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from shardguard.service.history import History, accept_shard, reject_shard, resolve_url
from shardguard.ui.data import (
    CATEGORY_ORDER,
    ScanOut,
    marks_for,
    record_id_of,
    related_refs,
    segments,
    verdict_why,
)

HERE = Path(__file__).parent
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SORTS = ("score", "row", "category", "detector")
VERDICT_RANK = {"poisoned": 0, "review": 1, "clean": 2}
PAGE = 200          # findings listed per detector before "show more"
MAX_FORM = 64 * 1024


class UIError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Workbench:
    """What the app reads: an --out folder, and/or the service's history (whose scans each have an out)."""

    def __init__(self, out: str | Path | None = None, state: str | Path | None = None, db: str | None = None):
        if out is None and state is None and db is None:
            raise ValueError("give --out DIR (a scan's output folder) and/or --state DIR (the service's state)")
        self.out = ScanOut(Path(out).resolve(), "out", f"scan output {Path(out)}") if out is not None else None
        if self.out is not None and not (self.out.root / "summary.json").is_file():
            raise ValueError(f"{out} is not a scan's output folder (no summary.json)")
        self.state = Path(state).resolve() if state is not None else None
        self.db = db
        self.history: History | None = None
        if state is not None or db is not None:
            self.history = History(resolve_url(db, state))
        self._scans: dict[str, ScanOut] = {}

    def scan_out(self, key: str) -> ScanOut:
        if key == "out" and self.out is not None:
            return self.out
        if self.history is not None and key != "out":
            if key not in self._scans:
                s = self.history.scan(key)
                if s is None or s["id"] != key or not s.get("out_dir"):
                    raise UIError(404, f"no scan {key!r}")
                self._scans[key] = ScanOut(Path(s["out_dir"]), key, f"service scan {key}")
            return self._scans[key]
        raise UIError(404, f"no scan {key!r}")

    def history_shard(self, key: str, name: str) -> dict | None:
        if self.history is None or key == "out":
            return None
        for s in self.history.shards(scan_id=key):
            if s["name"] == name:
                return s
        return None

    def close(self) -> None:
        if self.history is not None:
            self.history.close()


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["counts"] = lambda d: ", ".join(f"{k} {v}" for k, v in (d or {}).items() if v) or "–"
    env.filters["score"] = lambda x: f"{x:.2f}" if isinstance(x, int | float) else "–"
    return env


def _q(request: Request, key: str, default: str = "") -> str:
    return request.query_params.get(key, default)


def _int(v: str | None, default: int | None = None) -> int | None:
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        raise UIError(400, f"not a number: {v!r}") from None


def _float(v: str | None, default: float | None = None) -> float | None:
    try:
        return float(v) if v not in (None, "") else default
    except ValueError:
        raise UIError(400, f"not a number: {v!r}") from None


def url(path: str, **params: Any) -> str:
    p = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(p) if p else "")


def create_app(out: str | Path | None = None, state: str | Path | None = None, db: str | None = None,
               allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "::1")) -> FastAPI:
    """The app. `allowed_hosts`: Host header names accepted (a guard against DNS rebinding while bound
    to the loopback interface); None accepts any."""
    wb = Workbench(out, state, db)
    env = _env()
    csrf = secrets.token_urlsafe(32)
    app = FastAPI(title="shardguard ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workbench = wb

    def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("has_history", wb.history is not None)
        ctx.setdefault("csrf", csrf)
        ctx["url"] = url
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    @app.exception_handler(UIError)
    async def ui_error(request: Request, e: UIError):
        return render("error.html", status=e.status, message=e.message)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = urlsplit("//" + (request.headers.get("host") or "")).hostname or ""
        if allowed_hosts is not None and host not in allowed_hosts:
            resp: Response = HTMLResponse("unknown host", status_code=400)
        else:
            resp = await call_next(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/static/ui.css")
    def css():
        return Response((HERE / "static" / "ui.css").read_text(encoding="utf-8"), media_type="text/css")

    # -- the queue -------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def queue():
        pending, decided, out_shards = [], [], []
        if wb.history is not None:
            for s in wb.history.shards():
                try:
                    so = wb.scan_out(s["scan_id"])
                    e = so.shard_entry(s["name"]) or {}
                    top = so.top_reason(s["name"])
                    why = verdict_why(e, so.summary.get("policy") or {}) if e else []
                except UIError:
                    e, top, why = {}, None, []
                item = {"scan": s["scan_id"], "name": s["name"], "verdict": s["verdict"], "status": s["status"],
                        "rows": s["rows"], "flagged": s["flagged"], "held_back": s["held_back"],
                        "by_category": s["by_category"], "findings": s["findings"], "why": why, "top": top,
                        "id": s["id"]}
                (pending if s["status"] == "pending" else decided).append(item)
            pending.sort(key=lambda x: (VERDICT_RANK.get(x["verdict"], 9), x["scan"], x["name"]))
            decided.reverse()
        if wb.out is not None:
            pol = wb.out.summary.get("policy") or {}
            for e in wb.out.summary.get("shards", []):
                out_shards.append({"scan": "out", "name": e["shard"], "verdict": e.get("verdict"),
                                   "rows": e.get("rows"), "flagged": e.get("flagged"), "held_back": e.get("held_back"),
                                   "by_category": e.get("by_category"), "findings": e.get("findings"),
                                   "why": verdict_why(e, pol), "top": wb.out.top_reason(e["shard"])})
            out_shards.sort(key=lambda x: (VERDICT_RANK.get(x["verdict"], 9), x["name"]))
        return render("queue.html", pending=pending, decided=decided[:50], out_shards=out_shards,
                      out_label=str(wb.out.root) if wb.out else None,
                      state_label=str(wb.state) if wb.state else (wb.db and "database"))

    # -- a shard ---------------------------------------------------------------------------------

    @app.get("/s/{key}/shard", response_class=HTMLResponse)
    def shard_page(key: str, request: Request):
        so = wb.scan_out(key)
        name = _q(request, "name")
        e = so.shard_entry(name)
        if e is None:
            raise UIError(404, f"no shard {name!r} in this scan")
        det_f, cat_f, text_f = _q(request, "detector"), _q(request, "category"), _q(request, "q").strip()
        min_score = _float(_q(request, "min_score"), None)
        sort = _q(request, "sort", "score")
        sort = sort if sort in SORTS else "score"
        order = _q(request, "order", "desc" if sort == "score" else "asc")
        order = order if order in ("asc", "desc") else "desc"
        limit = _int(_q(request, "limit"), PAGE) or PAGE
        all_f = so.shard_findings(name)
        detectors = sorted({f["detector"] for f in all_f})
        categories = sorted({f["category"] for f in all_f}, key=lambda c: CATEGORY_ORDER.index(c)
                            if c in CATEGORY_ORDER else 99)
        sel = [f for f in all_f if (not det_f or f["detector"] == det_f) and (not cat_f or f["category"] == cat_f)
               and (min_score is None or f["score"] >= min_score)]
        if text_f:
            needle = text_f.casefold()
            texts = so.records(name, {f["row"] for f in sel}) if sel else {}

            def hit(f):
                rec = texts.get(f["row"])
                hay = " ".join([f["reason"] or "", str(f["details"])]
                               + ([v or "" for v in rec["fields"].values()] + [rec["raw"] or ""] if rec else []))
                return needle in hay.casefold()

            sel = [f for f in sel if hit(f)]
        key_fn = {"score": lambda f: (f["score"], -f["row"]), "row": lambda f: (f["row"], f["detector"]),
                  "category": lambda f: (CATEGORY_ORDER.index(f["category"]) if f["category"] in CATEGORY_ORDER
                                         else 99, -f["score"], f["row"]),
                  "detector": lambda f: (f["detector"], f["row"])}[sort]
        sel.sort(key=key_fn, reverse=(order == "desc"))
        groups: dict[str, list] = {}
        for f in sel:
            groups.setdefault(f["detector"], []).append(f)
        group_list = [{"detector": d, "findings": fs[:limit], "total": len(fs),
                       "categories": sorted({f["category"] for f in fs})} for d, fs in sorted(groups.items())]
        filters = {"name": name, "detector": det_f, "category": cat_f, "min_score": _q(request, "min_score"),
                   "q": text_f, "sort": sort, "order": order}
        hs = wb.history_shard(key, name)
        return render("shard.html", so=so, key=key, e=e, why=verdict_why(e, so.summary.get("policy") or {}),
                      groups=group_list, n_sel=len(sel), n_all=len(all_f), detectors=detectors,
                      categories=categories, filters=filters, sorts=SORTS, limit=limit, hs=hs,
                      decisions=wb.history.decisions(hs["id"]) if hs else [],
                      done=_q(request, "done") if _q(request, "done") in ("accepted", "rejected") else "")

    # -- a record --------------------------------------------------------------------------------

    def prepare(so: ScanOut, rec: dict | None) -> dict | None:
        """A record with its findings and its fields cut into highlighted segments."""
        if rec is None:
            return None
        fs = so.record_findings(rec["shard"], rec["row"])
        ok = rec["record_id"] is not None and (not fs or all(f["record_id"] == rec["record_id"] for f in fs)) \
            and rec["record_id"] == record_id_of(rec["kind"], rec["fields"])
        marks = marks_for(rec["kind"], rec["fields"], fs) if ok else {}
        rec = dict(rec)
        rec["segments"] = {k: segments(v, marks.get(k, [])) for k, v in rec["fields"].items()}
        rec["findings"] = fs
        rec["verified"] = ok
        rec["mark_classes"] = {m.cls for ms in marks.values() for m in ms}
        return rec

    def load_many(so: ScanOut, refs: list[tuple[str, int]]) -> dict[tuple[str, int], dict | None]:
        """Records by (shard, row), each shard's outputs read once."""
        by_shard: dict[str, set[int]] = {}
        for s, r in refs:
            if so.shard_entry(s) is not None:
                by_shard.setdefault(s, set()).add(r)
        got: dict[tuple[str, int], dict | None] = {}
        for s, rows in by_shard.items():
            for r, rec in so.records(s, rows).items():
                got[(s, r)] = prepare(so, dict(rec, shard=s))
        return got

    @app.get("/s/{key}/record", response_class=HTMLResponse)
    def record_page(key: str, request: Request):
        so = wb.scan_out(key)
        name = _q(request, "shard")
        row = _int(_q(request, "row"))
        if so.shard_entry(name) is None or row is None:
            raise UIError(404, f"no shard {name!r} in this scan")
        rec = load_many(so, [(name, row)]).get((name, row))
        if rec is None:
            raise UIError(404, f"row {row} of {name!r} is not in this scan's outputs")
        panels = []
        seen: set = {(name, row)}
        for f in rec["findings"]:
            for how, ref in related_refs(f):
                if how == "row":
                    s, r, label = ref
                    if (s, r) not in seen:
                        seen.add((s, r))
                        panels.append((f"{f['detector']}: {label}", [(s, r)], 1))
                else:
                    det, k, v, label = ref
                    if (det, k, str(v)) not in seen:
                        seen.add((det, k, str(v)))
                        members, total = so.findings_where(det, k, v, limit=7)
                        refs = [(m["shard"], m["row"]) for m in members if (m["shard"], m["row"]) != (name, row)]
                        panels.append((f"{det}: {label}", refs[:6], total))
        loaded = load_many(so, [ref for _, refs, _ in panels for ref in refs])
        related = [{"label": label, "members": [(s, r, loaded.get((s, r))) for s, r in refs], "total": total}
                   for label, refs, total in panels]
        hs = wb.history_shard(key, name)
        return render("record.html", so=so, key=key, shard=name, row=row, rec=rec, related=related, hs=hs,
                      back=url(f"/s/{key}/shard", name=name))

    # -- decisions -------------------------------------------------------------------------------

    @app.post("/decide")
    async def decide(request: Request):
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise UIError(403, "cross-origin request refused")
        body = await request.body()
        if len(body) > MAX_FORM:
            raise UIError(413, "form too large")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if not hmac.compare_digest(form.get("csrf", ""), csrf):
            raise UIError(403, "missing or wrong CSRF token: reload the page and try again")
        if wb.history is None:
            raise UIError(400, "decisions need the service's history: start `shardguard ui --state DIR`")
        decision, by, reason = form.get("decision"), form.get("by", "").strip(), form.get("reason", "").strip()
        if decision not in ("accept", "reject"):
            raise UIError(400, "decision must be accept or reject")
        if not by or not reason:
            raise UIError(400, "give your name and a reason: both are recorded in the audit history")
        sid = _int(form.get("shard_id"))
        try:
            sh = wb.history.shard(str(sid))
        except LookupError as e:
            raise UIError(404, str(e)) from None
        fn = accept_shard if decision == "accept" else reject_shard
        try:
            fn(str(sh["id"]), by=by[:200], reason=reason[:2000], state=wb.state, db=wb.db)
        except (LookupError, FileNotFoundError) as e:
            raise UIError(409, str(e)) from None
        return RedirectResponse(url(f"/s/{sh['scan_id']}/shard", name=sh["name"], done=decision + "ed"),
                                status_code=303)

    # -- history ---------------------------------------------------------------------------------

    @app.get("/history", response_class=HTMLResponse)
    def history_page(request: Request):
        if wb.history is None:
            raise UIError(404, "no history: start `shardguard ui --state DIR` to see the service's history")
        scans = wb.history.scans(200)
        a, b = _q(request, "a"), _q(request, "b")
        diff = None
        if a and b:
            try:
                diff = wb.history.diff(a, b)
            except LookupError as e:
                raise UIError(404, str(e)) from None
        prev = {s["id"]: scans[i + 1]["id"] for i, s in enumerate(scans[:-1])}
        return render("history.html", scans=scans, prev=prev, decisions=list(reversed(wb.history.decisions())),
                      counts=wb.history.counts(), diff=diff, a=a, b=b)

    return app


__all__ = ["create_app", "Workbench", "CSP"]
