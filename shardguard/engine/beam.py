"""The Beam engine: the same detector methods as the local engine, as an Apache Beam pipeline of keyed
stages, so no worker holds every record's state.

    Create(row-group ids) ─ read a row group of records.parquet (on the worker) ─ observe ─┐
      ├─ (detector, partial) ─ CombinePerKey(merge, per detector) ─ finalize per detector ───┤ models
      │     (a detector that `requires` others joins only their models: CoGroupByKey)         │
      └─ minhash, keyed (numpy blocks, 16 partitions per key space): signatures and band keys →
            by record partition: first exact copy → by bucket partition (band, key): GroupByKey →
            candidate edges (bucket's first member, each other one) → by the low end's seq: join its
            signature → by the high end's seq: join, confirm (estimated Jaccard) → verified edges
            gathered (small) → connected components ──────────────────────────────────────────┤
    models ─ replicated per row group (minhash: only that row group's members) ─ GroupByKey(row group)
            ─ read the row group again, flag ─ findings/part-<row group>.parquet (written by the worker)
    models ─ discoveries ─ discoveries.json (written by a worker)

What is keyed and what still gathers: MinHash never gathers records (only the verified edges, for
connected components, and the model built from them: cluster members only). Every other dataset-wide
detector's merged state lives on one worker, under its own key (different detectors, different
workers), and its model goes to each row group's flag step (as a side input would); no detector has
per-key counters of its own in the pipeline yet (trigger n-grams, preference statistics).

Everything the workers read or write lives under `--shardguard_work` (default: the scan's work
folder); the driver writes records.parquet there before the run and reads the findings and
discoveries back after it (Beam's `FileSystems`: local paths, gs://, s3://, hdfs://).

Runners: the in-process `FnApiRunner` by default (add `--direct_num_workers=2
--direct_running_mode=multi_processing` for worker processes). `--runner=DaskRunner` without
`--dask_client_address` starts a `dask.distributed.LocalCluster` of `--shardguard_dask_workers`
(default 2) worker processes for the run; with it, the pipeline runs on that scheduler's workers.
Flink, Spark and Dataflow take their usual options (README, "Running on a cluster").
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardguard.core.schema import FINDING_SCHEMA, RECORD_SCHEMA
from shardguard.detectors import Detector
from shardguard.engine.driver import Driver
from shardguard.engine.local import iter_batches

DEFAULT_RUNNER = "FnApiRunner"
DEFAULT_DASK_WORKERS = 2
_ABSENT = "__shardguard_absent__"  # a detector that saw no rows: finalize(None, ...) as the local engine
_MAX_DASK_PARTITIONS = 64
MINHASH_PARTITIONS = 16  # keys of the MinHash stages: record, bucket and seq partitions (numpy blocks)
_LOG = logging.getLogger(__name__)


_OPTIONS_CLASS: list = []


def _options_class():
    if _OPTIONS_CLASS:
        return _OPTIONS_CLASS[0]
    from apache_beam.options.pipeline_options import PipelineOptions

    class ShardguardOptions(PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--shardguard_work", default=None,
                                help="Folder the workers read records from and write findings and discoveries "
                                     "to (shared storage on a cluster); default: the scan's work folder.")
            parser.add_argument("--shardguard_dask_workers", type=int, default=DEFAULT_DASK_WORKERS,
                                help="Worker processes of the LocalCluster started for --runner=DaskRunner "
                                     "when no --dask_client_address is given.")

    _OPTIONS_CLASS.append(ShardguardOptions)
    return ShardguardOptions


def pipeline_options(beam_options: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    _options_class()  # registers --shardguard_* so Beam does not discard them
    return PipelineOptions(list(beam_options))


def shardguard_options(options) -> dict[str, Any]:
    sg = options.view_as(_options_class())
    return {"work": sg.shardguard_work, "dask_workers": sg.shardguard_dask_workers}


def runner_name(options) -> str | None:
    from apache_beam.options.pipeline_options import StandardOptions

    r = options.view_as(StandardOptions).runner
    return r if r is None else (r if isinstance(r, str) else type(r).__name__)


def make_runner(options):
    runner = runner_name(options)
    if runner in (None, DEFAULT_RUNNER):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    if runner == "DaskRunner":  # not in Beam's list of runner names: build it here
        from apache_beam.runners.dask.dask_runner import DaskRunner

        return DaskRunner()
    return None  # let Beam resolve the named runner from the options


def records_to_parquet(records_path: Path, out: str, row_group_rows: int = 4096) -> int:
    """The Beam engine reads Parquet row groups (one per ingest batch). Returns the row-group count."""
    from apache_beam.io.filesystems import FileSystems

    n = 0
    with FileSystems.create(out) as fh:
        writer = None
        for b in iter_batches(records_path):
            if writer is None:
                writer = pq.ParquetWriter(fh, b.schema)
            writer.write_batch(b, row_group_size=row_group_rows)
        if writer is None:
            pq.write_table(RECORD_SCHEMA.empty_table(), fh)
        else:
            writer.close()
    with FileSystems.open(out) as fh:
        n = pq.ParquetFile(fh).num_row_groups
    return n


# -- what runs on the workers -------------------------------------------------------------------------

_DRIVERS: dict[str, Driver] = {}  # one set-up Driver per process and run (setup() loads models once)


def _driver(token: str, detectors: list[Detector]) -> Driver:
    d = _DRIVERS.get(token)
    if d is None:
        d = _DRIVERS[token] = Driver(detectors)
        d.setup()
    return d


def _read_row_group(path: str, rg: int) -> pa.RecordBatch | None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        t = pq.ParquetFile(fh).read_row_group(rg)
    if t.num_rows == 0:
        return None
    return t.combine_chunks().to_batches()[0]


def _write_bytes(path: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as fh:
        fh.write(data)


def _read_bytes(path: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return fh.read()


def _join(base: str, *parts: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(base, *parts)


def _absent(x) -> bool:
    return isinstance(x, str) and x == _ABSENT


def _combine_fn(token: str, detectors: list[Detector]):
    """Values are (detector name, row group, partial), so one CombinePerKey merges each detector's own
    states. The merge is the local engine's left fold over batches, exactly: a partial is folded into
    the prefix (row groups 0..k) once row group k+1 arrives, and partials after a gap wait unmerged. So a
    detector whose `merge` is not commutative (a state in input order) or not quite associative (a
    state pruned when it grows past a bound) merges as it does in the local engine."""
    import apache_beam as beam

    def fold(name, a, b):
        if _absent(a):
            return b
        if _absent(b):
            return a
        return _driver(token, detectors).detectors[_index(detectors)[name]].merge(a, b)

    def coalesce(name, runs):
        runs = sorted(runs, key=lambda r: r[0])
        if not runs or runs[0][0] != 0:
            return runs
        lo, hi, st = runs[0]
        k = 1
        while k < len(runs) and runs[k][0] == hi + 1:
            hi, st = runs[k][1], fold(name, st, runs[k][2])
            k += 1
        return [(lo, hi, st)] + runs[k:]

    class MergeStates(beam.CombineFn):
        def create_accumulator(self):
            return (None, [])

        def add_input(self, acc, value):
            name, rg, part = value
            if rg < 0:  # the seed that makes every detector's key exist
                return (name, acc[1])
            return (name, coalesce(name, acc[1] + [(rg, rg, part)]))

        def merge_accumulators(self, accs):
            accs = list(accs)
            name = next((a[0] for a in accs if a[0] is not None), None)
            return (name, coalesce(name, [r for a in accs for r in a[1]]))

        def extract_output(self, acc):
            name, runs = acc
            state = _ABSENT
            for _, _, st in sorted(runs, key=lambda r: r[0]):
                state = fold(name, state, st)
            return None if _absent(state) else state

    return MergeStates()


def _index(detectors: list[Detector]) -> dict[str, int]:
    return {d.name: i for i, d in enumerate(detectors)}


def _levels(detectors: list[Detector]) -> dict[str, int]:
    """Finalize level of each detector: 0 without requirements, else 1 + its requirements' deepest."""
    lv: dict[str, int] = {}
    names = {d.name for d in detectors}
    pending = list(detectors)
    while pending:
        rest = []
        for d in pending:
            req = [r for r in d.requires if r in names]
            if all(r in lv for r in req):
                lv[d.name] = 1 + max((lv[r] for r in req), default=-1)
            else:
                rest.append(d)
        if len(rest) == len(pending):
            raise ValueError(f"detectors with circular requirements: {[d.name for d in rest]}")
        pending = rest
    return lv


def _take(blk: dict, idx) -> dict:
    return {k: v[idx] for k, v in blk.items()}


def _concat(blks) -> dict:
    blks = list(blks)
    return {k: np.concatenate([b[k] for b in blks]) for k in blks[0]}


def _meta(blk: dict, k: int) -> tuple:
    return (blk["shard"][k], int(blk["row"][k]), blk["url"][k], int(blk["rg"][k]))


def _keyed_minhash(detectors: list[Detector]) -> Detector | None:
    from shardguard.detectors.dedup import minhash as mh

    if not all(hasattr(mh, f) for f in ("band_keys", "confirm_edges", "model_from_edges")):
        return None
    for d in detectors:
        if isinstance(d, mh.MinHashNearDuplicates) and type(d).finalize is mh.MinHashNearDuplicates.finalize \
                and type(d).flag is mh.MinHashNearDuplicates.flag:
            return d
    return None


# -- the pipeline ---------------------------------------------------------------------------------------

def build_pipeline(p, records: str, n_rg: int, detectors: list[Detector], out_dir: str, token: str,
                   parts: int = MINHASH_PARTITIONS) -> None:
    import apache_beam as beam

    from shardguard.detectors.dedup import minhash as mhmod

    keyed_mh = _keyed_minhash(detectors)
    mh_name = keyed_mh.name if keyed_mh is not None else None
    idx = _index(detectors)
    names = [d.name for d in detectors]

    def observe(rg: int):
        drv = _driver(token, detectors)
        batch = _read_row_group(records, rg)
        if batch is None:
            return
        for d in drv.detectors:
            sel = d.select(batch)
            if not sel.num_rows:
                if d.name != mh_name:
                    yield ("s", d.name, (d.name, rg, _ABSENT))  # lets the neighbours' runs join up
                continue
            if d.name == mh_name:
                cfg = d.config
                sigs = mhmod.signatures(sel.column("text"), cfg)
                rids = sel.column("record_id").to_pylist()
                blk = {"seq": sel.column("seq").to_numpy().astype(np.int64), "rid": np.asarray(rids, object),
                       "sig": sigs, "bk": mhmod.band_keys(sigs, cfg),
                       "shard": np.asarray(sel.column("shard").to_pylist(), object),
                       "row": sel.column("row").to_numpy().astype(np.int64),
                       "url": np.asarray(sel.column("url").to_pylist(), object),
                       "rg": np.full(sel.num_rows, rg, np.int64)}
                part = np.asarray([zlib.crc32(r.encode("utf-8")) % parts for r in rids], np.int64)
                for q in np.unique(part).tolist():
                    yield ("m", q, _take(blk, part == q))
            else:
                yield ("s", d.name, (d.name, rg, d.observe(sel)))

    rgs = p | "row groups" >> beam.Create(list(range(n_rg)))
    observed = rgs | "read+observe" >> beam.FlatMap(observe)

    # -- per-detector states: one key per detector, merged by that detector's `merge`
    seeds = p | "every detector" >> beam.Create([(n, (n, -1, _ABSENT)) for n in names if n != mh_name])
    partials = (observed | "states" >> beam.Filter(lambda e: e[0] == "s")
                | "key by detector" >> beam.Map(lambda e: (e[1], e[2])))
    states = ((partials, seeds) | "with seeds" >> beam.Flatten()
              | "merge per detector" >> beam.CombinePerKey(_combine_fn(token, detectors)))

    # -- minhash as keyed stages
    mh_full = mh_rg = None
    if keyed_mh is not None:
        def first_copies(kv):
            """Exact copies (one record partition holds all of a record_id's): the first in input order
            stands for all. Emits band-key blocks by bucket partition and signature blocks by seq."""
            blk = _concat(kv[1])
            order = np.argsort(blk["seq"], kind="stable")
            blk = _take(blk, order)
            _, first = np.unique(blk["rid"].astype(str), return_index=True)
            rep = _take(blk, np.sort(first))
            nb = rep["bk"].shape[1]
            band = np.tile(np.arange(nb, dtype=np.int64), len(rep["seq"]))
            key = rep["bk"].ravel()
            seq = np.repeat(rep["seq"], nb)
            bpart = ((key ^ band.astype(np.uint64)) % np.uint64(parts)).astype(np.int64)
            for r in np.unique(bpart).tolist():
                m = bpart == r
                yield ("b", r), (band[m], key[m], seq[m])
            spart = rep["seq"] % parts
            for r in np.unique(spart).tolist():
                yield ("s", r), _take(rep, spart == r)

        def star_edges(kv):
            """Buckets of one partition: records sharing (band, key); the bucket's first member (input
            order) to each other one, as `lsh_pairs` does. Emitted by the low end's seq partition."""
            band = np.concatenate([x[0] for x in kv[1]])
            key = np.concatenate([x[1] for x in kv[1]])
            seq = np.concatenate([x[2] for x in kv[1]])
            order = np.lexsort((seq, key, band))
            band, key, seq = band[order], key[order], seq[order]
            new = np.r_[True, (band[1:] != band[:-1]) | (key[1:] != key[:-1])]
            head = seq[np.flatnonzero(new)[np.cumsum(new) - 1]]
            lo, hi = head[~new], seq[~new]
            lpart = lo % parts
            for r in np.unique(lpart).tolist():
                m = lpart == r
                yield r, (lo[m], hi[m])

        def join_low(kv):
            g = kv[1]
            if not g["p"] or not g["s"]:
                return
            pairs = np.unique(np.stack([np.concatenate([x[0] for x in g["p"]]),
                                        np.concatenate([x[1] for x in g["p"]])], 1), axis=0)
            sb = _concat(g["s"])
            order = np.argsort(sb["seq"])
            sb = _take(sb, order)
            at = np.searchsorted(sb["seq"], pairs[:, 0])
            lo_blk = _take(sb, at)
            lo_blk["hi"] = pairs[:, 1]
            hpart = pairs[:, 1] % parts
            for r in np.unique(hpart).tolist():
                yield r, _take(lo_blk, hpart == r)

        def join_high(kv):
            g = kv[1]
            if not g["c"] or not g["s"]:
                return
            lo_blk = _concat(g["c"])
            sb = _concat(g["s"])
            order = np.argsort(sb["seq"])
            sb = _take(sb, order)
            hi_blk = _take(sb, np.searchsorted(sb["seq"], lo_blk["hi"]))
            n = len(lo_blk["seq"])
            sigs = np.concatenate([lo_blk["sig"], hi_blk["sig"]])
            i, _, est = mhmod.confirm_edges(sigs, np.arange(n), np.arange(n, 2 * n), keyed_mh.config)
            for k, e in zip(i.tolist(), est.tolist()):
                yield 0, (int(lo_blk["seq"][k]), int(hi_blk["seq"][k]), e,
                          _meta(lo_blk, k), _meta(hi_blk, k))

        def components(kv):
            edges = [e for e in kv[1] if e is not None]
            edges.sort(key=lambda e: (e[0], e[1]))
            meta = {}
            rg_of = {}
            for lo, hi, _, ml, mh_ in edges:
                meta[lo], meta[hi] = ml[:3], mh_[:3]
                rg_of[(ml[0], ml[1])], rg_of[(mh_[0], mh_[1])] = (ml[3], lo), (mh_[3], hi)
            model = mhmod.model_from_edges(np.array([e[0] for e in edges], np.int64),
                                           np.array([e[1] for e in edges], np.int64),
                                           np.array([e[2] for e in edges], float), meta)
            yield model, rg_of

        def per_row_group(built):
            model, rg_of = built
            subs: dict[int, dict] = {}
            for key, m in model["members"].items():
                rg, seq = rg_of[key]
                s = subs.setdefault(rg, {"members": {}, "clusters": {}, "member_seqs": []})
                s["members"][key] = m
                s["clusters"][m["cluster"]] = model["clusters"][m["cluster"]]
                s["member_seqs"].append(seq)
            for rg, s in subs.items():
                s["member_seqs"] = np.sort(np.asarray(s["member_seqs"], np.int64))
                yield rg, (mh_name, s)

        recs = (observed | "minhash blocks" >> beam.Filter(lambda e: e[0] == "m")
                | "key by record partition" >> beam.Map(lambda e: (e[1], e[2])))
        firsts = recs | "group copies" >> beam.GroupByKey() | "first copies" >> beam.FlatMap(first_copies)
        sig_kv = (firsts | "signature blocks" >> beam.Filter(lambda kv: kv[0][0] == "s")
                  | "by seq partition" >> beam.Map(lambda kv: (kv[0][1], kv[1])))
        pairs = (firsts | "band key blocks" >> beam.Filter(lambda kv: kv[0][0] == "b")
                 | "by bucket partition" >> beam.Map(lambda kv: (kv[0][1], kv[1]))
                 | "buckets" >> beam.GroupByKey()
                 | "candidate edges" >> beam.FlatMap(star_edges))
        lo_side = ({"p": pairs, "s": sig_kv} | "join low end" >> beam.CoGroupByKey()
                   | "to high end" >> beam.FlatMap(join_low))
        verified = ({"c": lo_side, "s": sig_kv} | "join high end" >> beam.CoGroupByKey()
                    | "confirm" >> beam.FlatMap(join_high))
        no_edge = p | "no edges yet" >> beam.Create([(0, None)])
        built = ((verified, no_edge) | "all edges" >> beam.Flatten()
                 | "gather edges" >> beam.GroupByKey()
                 | "connected components" >> beam.FlatMap(components))
        mh_full = built | "minhash model" >> beam.Map(lambda b: (mh_name, b[0]))
        mh_rg = built | "minhash members per row group" >> beam.FlatMap(per_row_group)

    # -- finalize per detector, in dependency order; only required models are joined in
    lv = _levels(detectors)
    by_level: dict[int, list[Detector]] = {}
    for d in detectors:
        by_level.setdefault(lv[d.name], []).append(d)
    model_pcs = [mh_full] if mh_full is not None else []
    for level in sorted(by_level):
        dets = [d for d in by_level[level] if d.name != mh_name]
        if not dets:
            continue
        lnames = {d.name for d in dets}
        needs = {d.name: set(d.requires) for d in dets}
        st = states | f"states L{level}" >> beam.Filter(lambda kv, s=frozenset(lnames): kv[0] in s)

        def fin(name, state, ctx):
            drv = _driver(token, detectors)
            return name, drv.detectors[idx[name]].finalize(state, ctx)

        if level == 0 or not model_pcs:
            m = st | f"finalize L{level}" >> beam.Map(lambda kv: fin(kv[0], kv[1], {}))
        else:
            def route(kv, needs=needs):
                for d, req in needs.items():
                    if kv[0] in req:
                        yield d, kv

            prev = tuple(model_pcs) | f"models before L{level}" >> beam.Flatten()
            ctx = prev | f"required by L{level}" >> beam.FlatMap(route)
            m = ({"s": st, "c": ctx} | f"join requirements L{level}" >> beam.CoGroupByKey()
                 | f"finalize L{level}" >> beam.Map(
                     lambda kv: fin(kv[0], kv[1]["s"][0] if kv[1]["s"] else None, dict(kv[1]["c"]))))
        model_pcs.append(m)
    models = tuple(model_pcs) | "all models" >> beam.Flatten()

    # -- discoveries, written by a worker
    def write_discoveries(kv):
        drv = _driver(token, detectors)
        got = dict(kv[1])
        disc = {n: drv.detectors[idx[n]].discoveries(got[n]) for n in names}
        _write_bytes(_join(out_dir, "discoveries.json"), json.dumps(disc, default=str).encode("utf-8"))
        yield "discoveries"

    disc_done = (models | "one key" >> beam.Map(lambda kv: (0, kv))
                 | "gather models" >> beam.GroupByKey() | "write discoveries" >> beam.FlatMap(write_discoveries))

    # -- flag per row group: each row group joins the models it needs (minhash: only its members)
    def replicate(kv):
        if kv[0] == mh_name:
            return
        for rg in range(n_rg):
            yield rg, kv

    per_rg = models | "models per row group" >> beam.FlatMap(replicate)
    rg_keys = rgs | "row group keys" >> beam.Map(lambda rg: (rg, None))
    inputs = [per_rg, rg_keys] + ([mh_rg] if mh_rg is not None else [])

    def flag(kv):
        rg, got = kv
        drv = _driver(token, detectors)
        got = dict(g for g in got if g is not None)
        batch = _read_row_group(records, rg)
        tables = []
        if batch is not None:
            for d in drv.detectors:
                sel = d.select(batch)
                if not sel.num_rows:
                    continue
                model = got.get(d.name)
                if model is None and d.name == mh_name:
                    continue  # no near-duplicate in this row group
                found = d.flag(sel, model)
                if found:
                    tables.append(d.to_table(sel, found))
        if tables:
            t = pa.concat_tables(tables).cast(FINDING_SCHEMA)
            buf = io.BytesIO()
            pq.write_table(t, buf)
            _write_bytes(_join(out_dir, "findings", f"part-{rg:06d}.parquet"), buf.getvalue())
        yield "flagged"

    flag_done = (tuple(inputs) | "with row group keys" >> beam.Flatten()
                 | "models by row group" >> beam.GroupByKey() | "read+flag+write" >> beam.FlatMap(flag))
    # one terminal stage (the DaskRunner computes the graph of the last stage only)
    _ = ((flag_done, disc_done) | "outputs" >> beam.Flatten()
         | "done key" >> beam.Map(lambda x: (0, x)) | "done" >> beam.GroupByKey())


class _DaskCluster:
    """A LocalCluster for `--runner=DaskRunner` without a scheduler address (closed client first)."""

    def __init__(self, workers: int):
        from distributed import LocalCluster

        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                     "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=logging.ERROR)

    @property
    def address(self) -> str:
        return self.cluster.scheduler_address

    def close(self) -> None:
        self.cluster.close()


def run_beam(records_path: Path, detectors: list[Detector], beam_options: list[str]):
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    t0 = time.perf_counter()
    opts = list(beam_options)
    options = pipeline_options(opts)
    sg = shardguard_options(options)
    runner = runner_name(options)
    base = sg["work"] or str(records_path.parent)
    token = uuid.uuid4().hex[:12]
    work = _join(base, f"beam-{token}")
    if not FileSystems.exists(work):
        FileSystems.mkdirs(work)
    parquet_path = _join(work, "records.parquet")
    n_rg = records_to_parquet(records_path, parquet_path)
    try:
        FileSystems.mkdirs(_join(work, "findings"))
    except OSError:
        pass  # object stores have no folders
    cluster = None
    if runner == "DaskRunner":
        from apache_beam.runners.dask.dask_runner import DaskOptions

        all_opts = options.view_as(DaskOptions).get_all_options()
        if not all_opts.get("address") and not all_opts.get("scheduler_file"):
            cluster = _DaskCluster(max(1, sg["dask_workers"]))
            opts.append(f"--dask_client_address={cluster.address}")
        if not all_opts.get("npartitions") and not all_opts.get("partition_size"):
            # Beam's default puts up to 128 elements (row groups) in one partition: no parallelism
            cap = 2 * sg["dask_workers"] if cluster is not None else _MAX_DASK_PARTITIONS
            opts.append(f"--dask_npartitions={max(1, min(n_rg, cap))}")
        options = pipeline_options(opts)
    try:
        p = beam.Pipeline(runner=make_runner(options), options=options)
        build_pipeline(p, parquet_path, n_rg, detectors, work, token)
        t1 = time.perf_counter()
        result = p.run()
        try:
            result.wait_until_finish()
            _LOG.debug("beam run %.1fs (after %.1fs of setup)", time.perf_counter() - t1, t1 - t0)
        finally:
            client = getattr(result, "client", None)
            if client is not None:
                client.close()  # the client first, then the cluster (else tracebacks at exit)
    finally:
        _DRIVERS.pop(token, None)  # the in-process runner set detectors up in this process
        if cluster is not None:
            cluster.close()
    parts = sorted(m.path for m in FileSystems.match([_join(work, "findings", "part-*.parquet")])[0].metadata_list)
    tables = [pq.read_table(io.BytesIO(_read_bytes(x))) for x in parts]
    findings = pa.concat_tables(tables).cast(FINDING_SCHEMA) if tables else FINDING_SCHEMA.empty_table()
    discoveries = json.loads(_read_bytes(_join(work, "discoveries.json")).decode("utf-8"))
    FileSystems.delete([work])
    timings = {"beam_pipeline": time.perf_counter() - t0}
    return findings, discoveries, timings


def describe(beam_options: list[str]) -> str:
    return json.dumps(pipeline_options(beam_options).get_all_options(drop_default=True))
