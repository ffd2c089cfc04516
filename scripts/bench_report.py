"""bench_report.py: the work of scripts/bench-report and of scripts/bench-sign's
table (run those, not this).

  python3 bench_report.py table|plot|versus [--op OP] [--audit on|off] RESULTS.jsonl OUTDIR

table writes OUTDIR/matrix.md; plot writes the data files and the gnuplot
script OUTDIR/bench.gp that draws OUTDIR/bench.png; versus writes
OUTDIR/versus.md, each kmsd cell beside the raw HSM's cell of the same
operation at as many threads as it had requests in flight. The records are
those of docs/kms-bench.md ("The JSON line"), from kms-bench, bench_hsm
--ops and bench_fsync.
"""
import argparse
import json
import os
import sys

OP_ORDER = ["encrypt", "decrypt", "generate-data-key", "batch-decrypt", "sign-p256",
            "sign-ed25519", "generate-mac", "mixed"]
TRANSPORT_ORDER = ["ipc", "tls", "tcp"]
HSM_OPS = {"encrypt", "decrypt", "generate-data-key", "sign-ecdsa-p256", "generate-mac",
           "sign-ed25519"}
# bench_hsm --ops's name of a kms-bench operation's PKCS#11 work, where it
# differs (batch-decrypt's is decrypt's, item by item).
HSM_OP_OF = {"batch-decrypt": "decrypt", "sign-p256": "sign-ecdsa-p256"}
HSM_OP_ORDER = ["encrypt", "decrypt", "generate-data-key", "sign-ecdsa-p256", "sign-ed25519",
                "generate-mac"]
NUMBER_FIELDS = ["concurrency", "ops_per_s", "items_per_s", "p50_us", "p99_us", "p999_us"]


def hsm_op_of(op):
    return HSM_OP_OF.get(op, op)


class BadRecord(Exception):
    pass


def fail(message):
    print("bench-report: " + message, file=sys.stderr)
    sys.exit(1)


def check_record(r, where):
    if not isinstance(r, dict):
        raise BadRecord(where + ": not a JSON object")
    for field in ["tool", "op", "transport"]:
        if not isinstance(r.get(field), str):
            raise BadRecord(where + ": no string field \"" + field + "\"")
    for field in NUMBER_FIELDS:
        v = r.get(field)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise BadRecord(where + ": field \"" + field + "\" is not a number >= 0")
    if not isinstance(r.get("labels", {}), dict) or not isinstance(r.get("errors", {}), dict):
        raise BadRecord(where + ": \"labels\" and \"errors\" must be objects")


def read_records(path):
    """Every record of path; blank lines are skipped, anything else must parse."""
    records = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        fail("cannot read " + path + ": " + e.strerror)
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = path + " line " + str(n)
            try:
                r = json.loads(line)
            except ValueError as e:
                fail(where + ": not JSON (" + str(e) + "): every line must be one record")
            try:
                check_record(r, where)
            except BadRecord as e:
                fail(str(e))
            r.setdefault("labels", {})
            r.setdefault("errors", {})
            records.append(r)
    if not records:
        fail(path + " holds no records: run scripts/bench first")
    return records


class Results:
    """The records sorted into kmsd cells and the two baselines."""

    def __init__(self, records):
        self.cells = [r for r in records if r["tool"] == "kms-bench" and r["op"] != "echo"]
        self.echo = {}  # (transport, concurrency) -> best record
        self.hsm = {}  # op -> [records]
        self.disk = [r for r in records if r["tool"] == "bench_fsync"]
        for r in records:
            if r["tool"] == "kms-bench" and r["op"] == "echo":
                key = (r["transport"], r["concurrency"])
                if key not in self.echo or r["ops_per_s"] > self.echo[key]["ops_per_s"]:
                    self.echo[key] = r
            elif r["tool"] == "bench_hsm" and r["op"] in HSM_OPS:
                self.hsm.setdefault(r["op"], []).append(r)

    def echo_at(self, transport, concurrency):
        return self.echo.get((transport, concurrency))

    def hsm_at(self, op, concurrency):
        """The best bench_hsm record of op with threads <= concurrency."""
        usable = [r for r in self.hsm.get(op, []) if r["concurrency"] <= concurrency]
        return max(usable, key=lambda r: r["ops_per_s"]) if usable else None

    def single_decrypt(self, cell):
        """The decrypt cell at the batch cell's transport, concurrency and labels."""
        for r in self.cells:
            if (r["op"] == "decrypt" and r["transport"] == cell["transport"]
                    and r["concurrency"] == cell["concurrency"]
                    and label(r, "audit") == label(cell, "audit")
                    and label(r, "signed") == label(cell, "signed")):
                return r
        return None


def label(r, name):
    return r["labels"].get(name, "-")


def rank(order, value):
    return order.index(value) if value in order else len(order)


def cell_order(r):
    return (rank(OP_ORDER, r["op"]), r["op"], rank(TRANSPORT_ORDER, r["transport"]),
            r["transport"], rank(["on", "off"], label(r, "audit")),
            label(r, "signed"), r["concurrency"])


def figure(v):
    """A rate or a latency for a table: whole numbers from 100 up."""
    if v is None:
        return "-"
    return "%.0f" % v if v >= 100 else "%.1f" % v


def ratio(num, den):
    return "%.2f" % (num / den) if num is not None and den else "-"


def errors_text(r):
    errors = {k: v for k, v in r["errors"].items() if v}
    if not errors:
        return "0"
    return ", ".join("%s %s" % (k, errors[k]) for k in sorted(errors))


def matrix_row(res, r):
    batch = r["op"] == "batch-decrypt"
    rate = r["items_per_s"] if batch else r["ops_per_s"]
    echo = res.echo_at(r["transport"], r["concurrency"])
    echo_rate = echo["ops_per_s"] if echo else None
    hsm = res.hsm_at(hsm_op_of(r["op"]), r["concurrency"])
    hsm_rate = hsm["ops_per_s"] if hsm else None
    if batch:
        # A batch request carries many items: the echo of one small request
        # is no limit on items, the HSM's decrypt is.
        efficiency = ratio(rate, hsm_rate)
        single = res.single_decrypt(r)
        vs_single = ratio(rate, single["ops_per_s"] if single else None)
    else:
        limits = [v for v in (hsm_rate, echo_rate) if v]
        efficiency = ratio(rate, min(limits)) if hsm_rate and echo_rate else "-"
        vs_single = ""
    op = r["op"] + (" x%d" % r.get("batch_items", 0) if batch else "")
    return [op, r["transport"], label(r, "audit"), label(r, "signed"), str(r["concurrency"]),
            figure(rate), figure(r["p50_us"]), figure(r["p99_us"]), figure(r["p999_us"]),
            errors_text(r), figure(echo_rate), figure(hsm_rate), efficiency, vs_single]


MATRIX_HEAD = ["op", "transport", "audit", "signed", "in flight", "ops/s", "p50 us", "p99 us",
               "p99.9 us", "errors", "echo ops/s", "HSM ops/s", "efficiency",
               "batch / single"]


def table(head, rows, right_from):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < right_from else "--:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def baselines_md(res):
    out = ["\n## The limits\n\nThe echo server (kms-bench --serve-echo: the transport alone, "
           "the same bytes each way):\n\n"]
    rows = [[t, str(c), figure(r["ops_per_s"]), figure(r["p50_us"]), figure(r["p99_us"])]
            for (t, c), r in sorted(res.echo.items(),
                                    key=lambda kv: (rank(TRANSPORT_ORDER, kv[0][0]), kv[0]))]
    out.append(table(["transport", "in flight", "ops/s", "p50 us", "p99 us"], rows, 1)
               if rows else "(no echo records)\n")
    out.append("\nThe HSM (bench_hsm --ops: the PKCS#11 calls of the operation on a cached "
               "wrapped key version, Ed25519 on a token pair, each thread its own "
               "session):\n\n")
    rows = []
    for op in HSM_OP_ORDER:
        for r in sorted(res.hsm.get(op, []), key=lambda r: r["concurrency"]):
            rows.append([op, str(r["concurrency"]), figure(r["ops_per_s"]),
                         figure(r["p50_us"]), figure(r["p99_us"]),
                         figure(r.get("cpu_us_per_op"))])
    out.append(table(["op", "threads", "ops/s", "p50 us", "p99 us", "cpu us/op"], rows, 1)
               if rows else "(no bench_hsm records)\n")
    out.append("\nThe disk (bench_fsync in kmsd's data dir: an audit entry's append and "
               "fdatasync, one at a time; the floor of a request's latency with the audit "
               "log on, at one in flight):\n\n")
    rows = [[r["op"], figure(r["ops_per_s"]), figure(r["p50_us"]), figure(r["p99_us"]),
             figure(r["p999_us"])] for r in res.disk]
    out.append(table(["op", "per s", "p50 us", "p99 us", "p99.9 us"], rows, 1)
               if rows else "(no bench_fsync records)\n")
    return "".join(out)


def run_labels(records):
    runs = sorted({r["labels"]["run"] for r in records if "run" in r["labels"]})
    return ", ".join(runs) if runs else "-"


def write_matrix(records, path_in, outdir):
    res = Results(records)
    rows = [matrix_row(res, r) for r in sorted(res.cells, key=cell_order)]
    text = ["# kmsd beside its limits\n\n",
            "From `%s` (run %s).\n" % (os.path.basename(path_in), run_labels(records))]
    if any(r["labels"].get("fixture") == "yes" for r in records):
        text.append("\n**These records are a test fixture (made-up figures), not a measurement.**\n")
    text.append(
        "\nefficiency = kmsd ops/s / min(HSM ops/s, echo ops/s): the echo server's ops/s at "
        "the same transport and requests in flight, the HSM's the best bench_hsm --ops "
        "figure for the operation with threads <= requests in flight. batch-decrypt: "
        "items/s, its efficiency items/s / HSM decrypt ops/s, and batch / single its items/s "
        "over single Decrypt's ops/s at the same transport, in flight, audit and signing. "
        "Latencies are per request (a whole batch). `-`: no such record.\n\n")
    text.append(table(MATRIX_HEAD, rows, 4) if rows else "(no kms-bench records against kmsd)\n")
    text.append(baselines_md(res))
    path = os.path.join(outdir, "matrix.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(text))


# ---- kmsd beside the raw HSM, cell by cell (scripts/bench-sign) ----

def hsm_same(res, op, cell):
    """The bench_hsm record of op at exactly as many threads as cell had in
    flight, of the same run (label run; the best if several), else None."""
    same = [r for r in res.hsm.get(op, []) if r["concurrency"] == cell["concurrency"]
            and label(r, "run") == label(cell, "run")]
    return max(same, key=lambda r: r["ops_per_s"]) if same else None


VERSUS_HEAD = ["op", "transport", "in flight", "kmsd ops/s", "p50 us", "p99 us", "errors",
               "HSM op", "threads", "HSM ops/s", "HSM p50 us", "HSM p99 us", "kmsd / HSM"]


def versus_row(res, r):
    hsm_op = hsm_op_of(r["op"])
    hsm = hsm_same(res, hsm_op, r)
    hsm_rate = hsm["ops_per_s"] if hsm else None
    rate = rate_of(r)
    return [r["op"], r["transport"], str(r["concurrency"]), figure(rate),
            figure(r["p50_us"]), figure(r["p99_us"]), errors_text(r), hsm_op,
            str(hsm["concurrency"]) if hsm else "-", figure(hsm_rate),
            figure(hsm["p50_us"] if hsm else None), figure(hsm["p99_us"] if hsm else None),
            ratio(rate, hsm_rate)]


def write_versus(records, path_in, outdir):
    res = Results(records)
    cells = sorted(res.cells, key=lambda r: (label(r, "run"), cell_order(r)))
    runs = sorted({label(r, "run") for r in cells})
    text = ["# kmsd beside the raw HSM\n\n",
            "From `%s` (run %s).\n" % (os.path.basename(path_in), run_labels(records))]
    if any(r["labels"].get("fixture") == "yes" for r in records):
        text.append("\n**These records are a test fixture (made-up figures), not a measurement.**\n")
    text.append(
        "\nEach kms-bench cell against kmsd beside the bench_hsm --ops cell of the same "
        "PKCS#11 work at as many threads as the cell had requests in flight, in the same "
        "run (label run); kmsd / HSM is the ratio of their ops/s (batch-decrypt: items/s "
        "against decrypt). Latencies: kmsd's per request, from packing to the reply; the "
        "HSM's per operation. `-`: no such record.\n\n")
    head, rows = VERSUS_HEAD, [versus_row(res, r) for r in cells]
    if len(runs) > 1:
        head = ["run"] + head
        rows = [[label(r, "run")] + row for r, row in zip(cells, rows)]
    text.append(table(head, rows, len(head) - 11) if rows
                else "(no kms-bench records against kmsd)\n")
    path = os.path.join(outdir, "versus.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(text))


# ---- the picture ----

def write_dat(path, points):
    """points: [(x, y_rate, y_p99)], sorted by x."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("# in-flight ops_per_s p99_us\n")
        for x, rate, p99 in points:
            f.write("%d %.3f %.3f\n" % (x, rate, p99))


def rate_of(r):
    return r["items_per_s"] if r["op"] == "batch-decrypt" else r["ops_per_s"]


def plot_series(res, op, audit):
    """[(title, file stem, style, points)] for the picture."""
    series = []
    transports = sorted({r["transport"] for r in res.cells} | {t for t, _ in res.echo},
                        key=lambda t: (rank(TRANSPORT_ORDER, t), t))
    levels = sorted({r["concurrency"] for r in res.cells if r["op"] == op})
    for i, t in enumerate(transports):
        cells = {}
        for r in res.cells:
            if r["op"] == op and r["transport"] == t and label(r, "audit") in (audit, "-"):
                if r["concurrency"] not in cells or rate_of(r) > rate_of(cells[r["concurrency"]]):
                    cells[r["concurrency"]] = r
        pts = [(c, rate_of(r), r["p99_us"]) for c, r in sorted(cells.items())]
        if pts:
            series.append(("kmsd %s, %s, audit %s" % (op, t, audit), "kmsd-" + t,
                           "lw 2 dt 1 lc %d" % (i + 1), pts))
        pts = [(c, r["ops_per_s"], r["p99_us"]) for (tt, c), r in sorted(res.echo.items())
               if tt == t]
        if pts:
            series.append(("echo, %s" % t, "echo-" + t, "lw 1.5 dt 2 lc %d" % (i + 1), pts))
    hsm_op = hsm_op_of(op)
    pts = []
    for c in levels or sorted({r["concurrency"] for r in res.hsm.get(hsm_op, [])}):
        r = res.hsm_at(hsm_op, c)
        if r:
            pts.append((c, r["ops_per_s"], r["p99_us"]))
    if pts:
        series.append(("HSM %s (best at threads <= in flight)" % hsm_op, "hsm",
                       "lw 1.5 dt 4 lc rgb 'black'", pts))
    return series


def write_plot(records, outdir, op, audit):
    res = Results(records)
    series = plot_series(res, op, audit)
    if not series:
        fail("no records to draw for op %s, audit %s" % (op, audit))
    plots = []
    for title, stem, style, pts in series:
        dat = os.path.join(outdir, "bench-%s.dat" % stem)
        write_dat(dat, pts)
        plots.append((title, dat, style))
    png = os.path.join(outdir, "bench.png")

    def plot_cmd(column):
        return "plot " + ", \\\n     ".join(
            "'%s' using 1:%d with linespoints %s title '%s'" % (dat, column, style, title)
            for title, dat, style in plots)

    unit = "items/s" if op == "batch-decrypt" else "ops/s"
    script = [
        "set terminal pngcairo size 1400,560 font 'sans,10'",
        "set output '%s'" % png,
        "set multiplot layout 1,2 title 'kmsd %s beside its limits (solid: kmsd; dashed: "
        "echo server, HSM)'" % op,
        "set logscale x 2",
        "set logscale y",
        "set grid",
        "set key top left opaque box font ',9'",
        "set xlabel 'requests in flight (HSM: threads)'",
        "set ylabel '%s'" % unit,
        "set title 'throughput'",
        plot_cmd(2),
        "set ylabel 'p99 latency (us)'",
        "set title 'p99 latency per request'",
        plot_cmd(3),
        "unset multiplot",
    ]
    with open(os.path.join(outdir, "bench.gp"), "w", encoding="utf-8") as f:
        f.write("\n".join(script) + "\n")


def main():
    p = argparse.ArgumentParser(prog="bench-report")
    p.add_argument("mode", choices=["table", "plot", "versus"])
    p.add_argument("--op", default="encrypt", choices=OP_ORDER)
    p.add_argument("--audit", default="on", choices=["on", "off"])
    p.add_argument("results")
    p.add_argument("outdir")
    a = p.parse_args()
    records = read_records(a.results)
    try:
        if a.mode == "table":
            write_matrix(records, a.results, a.outdir)
        elif a.mode == "versus":
            write_versus(records, a.results, a.outdir)
        else:
            write_plot(records, a.outdir, a.op, a.audit)
    except OSError as e:
        fail("cannot write into %s: %s" % (a.outdir, e.strerror))


if __name__ == "__main__":
    main()
