#!/usr/bin/env python3
"""Helpers for bench/run.sh: corpus preparation and modification, result
collection and the markdown report written into docs/benchmarks.md.

Subcommands:
  randfile PATH MIB SEED        write MIB MiB of deterministic incompressible bytes
  modify-tree DIR UNDO          append a line to every 100th regular file (sorted order)
  image-blocks IMG              print the 4 MiB block numbers to overwrite (1 %)
  patch-block OUT BLOCK         write 4 MiB of deterministic bytes for one block
  revert-tree UNDO              undo modify-tree (truncate back, restore mtimes)
  collect ...                   merge a run's measurements into results.json and
                                render the report (see --help of the subcommand)
"""

import argparse
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys

MIB = 1 << 20
BLOCK = 4 * MIB
MODIFY_EVERY = 100
MODIFY_LINE = b"/* cairn bench: modified */\n"

# Order and labels of the per-tool operations in the report.
OPS = [
    ("full", "full backup"),
    ("unchanged", "unchanged re-run"),
    ("changed", "re-run after 1 % change"),
    ("restore", "restore (latest)"),
    ("verify", "verify / check all data"),
    ("gc", "gc / prune / compact (nothing to free)"),
]
TOOLS = ["cairn", "restic", "borg"]
REFERENCE_LABELS = {
    "statwalk": "stat walk: `find -printf '%s %T@'` (lower bound for an unchanged re-run)",
    "tartar": "`tar -cf - . \\| tar -xf -` to a fresh directory",
    "zstd": "`zstd -3 -T2 -c image > /dev/null`",
    "copy": "`cp --sparse=never image copy` (lower bound for a restore)",
}


# ---------------------------------------------------------------- corpus ----

def det_bytes(seed, n):
    return random.Random(seed).randbytes(n)


def cmd_randfile(a):
    rng = random.Random(a.seed)
    with open(a.path, "wb") as f:
        for _ in range(a.mib):
            f.write(rng.randbytes(MIB))


def regular_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    out.sort()
    return out


def cmd_modify_tree(a):
    files = regular_files(a.dir)
    chosen = files[MODIFY_EVERY - 1 :: MODIFY_EVERY]
    undo = {"root": os.path.abspath(a.dir), "files": []}
    for rel in chosen:
        st = os.stat(os.path.join(a.dir, rel))
        undo["files"].append([rel, st.st_size, st.st_atime_ns, st.st_mtime_ns])
    # Write the undo record before touching anything so an interrupted run
    # can still be reverted.
    with open(a.undo + ".tmp", "w") as f:
        json.dump(undo, f)
    os.replace(a.undo + ".tmp", a.undo)
    for rel, *_ in undo["files"]:
        with open(os.path.join(a.dir, rel), "ab") as f:
            f.write(MODIFY_LINE)
    print(f"modified {len(chosen)} of {len(files)} files", file=sys.stderr)


def cmd_revert_tree(a):
    with open(a.undo) as f:
        undo = json.load(f)
    for rel, size, atime, mtime in undo["files"]:
        p = os.path.join(undo["root"], rel)
        os.truncate(p, size)
        os.utime(p, ns=(atime, mtime))


def image_blocks(size):
    n = size // BLOCK
    k = max(1, round(n / 100))
    # Spread evenly over the image; the half-step offset keeps block 0
    # (superblock) out of the set.
    step = n // k
    return sorted({(i * step + step // 2) % n for i in range(k)})


def cmd_image_blocks(a):
    for b in image_blocks(os.stat(a.image).st_size):
        print(b)


def cmd_patch_block(a):
    with open(a.out, "wb") as f:
        f.write(det_bytes(1000003 + a.block, BLOCK))


# --------------------------------------------------------------- results ----

def sh(*args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0].strip("* ") if text else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"


def machine_info(work, cairn):
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = "?"
    try:
        out = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout
        fs = out.splitlines()[1].split()[1]
    except (OSError, IndexError):
        pass
    versions = {
        "restic": sh("restic", "version"),
        "borg": sh("borg", "--version"),
        "zstd": sh("zstd", "--version"),
        "tar": sh("tar", "--version"),
        "mkfs.ext4": sh("mkfs.ext4", "-V"),
    }
    if cairn and os.access(cairn, os.X_OK):
        versions["cairn"] = sh(cairn, "--version")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram": mem,
        "kernel": platform.release(),
        "os": sh("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "work_fs": fs,
        "restore_fs": os.environ.get("CAIRN_BENCH_OUT_FS", "disk"),
        "versions": versions,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def cmd_collect(a):
    rows = load_jsonl(a.measurements)
    results = {"corpora": {}}
    if not a.fresh and os.path.exists(a.results):
        with open(a.results) as f:
            results = json.load(f)
    results["quick"] = a.quick
    info = machine_info(a.work, a.cairn)
    results["machine"] = info
    tools_run = [t for t in a.tools.split(",") if t]
    now = info["date"]

    corpora = results.setdefault("corpora", {})
    for corpus in a.corpora.split(","):
        if not corpus:
            continue
        desc = {}
        for r in rows:
            if r["kind"] == "corpus" and r["corpus"] == corpus:
                desc[r["key"]] = r["value"]
        old = corpora.get(corpus, {})
        entry = {"description": desc, "measured_at": now, "reference": {}, "tools": {}}
        if old.get("description") == desc:
            # Same corpus: keep other tools' figures from earlier runs.
            entry["tools"] = {t: v for t, v in old.get("tools", {}).items() if t not in tools_run}
        for r in rows:
            if r["corpus"] != corpus:
                continue
            if r["kind"] == "time" and r["tool"] == "reference":
                entry["reference"][r["op"]] = timing(r)
        for tool in tools_run:
            t = {"measured_at": now, "version": info["versions"].get(tool, "?"), "ops": {}}
            for r in rows:
                if r["corpus"] != corpus or r.get("tool") != tool:
                    continue
                if r["kind"] == "time":
                    t["ops"][r["op"]] = timing(r)
                elif r["kind"] == "fact":
                    t[r["key"]] = r["value"]
            entry["tools"][tool] = t
        corpora[corpus] = entry

    with open(a.results + ".tmp", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(a.results + ".tmp", a.results)

    md = render(results)
    with open(a.markdown, "w") as f:
        f.write(md)
    if a.doc:
        replace_between_markers(a.doc, md)


def timing(r):
    return {
        "wall_s": float(r["wall"]),
        "user_s": float(r["user"]),
        "sys_s": float(r["sys"]),
        "cpu_s": round(float(r["user"]) + float(r["sys"]), 2),
        "peak_rss_mib": round(int(r["rss_kib"]) / 1024, 1),
        "rc": int(r["rc"]),
        "ok": bool(r.get("ok", True)),
    }


# ---------------------------------------------------------------- render ----

def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def fmt_mib(x):
    return "—" if x is None else f"{x:.0f}"


def fmt_bytes(n):
    if n is None:
        return "—"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / MIB:.1f} MiB"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def render(results):
    out = []
    m = results.get("machine", {})
    quick = results.get("quick")
    out.append("")
    if quick:
        out.append("**Smoke run (`--quick`): reduced corpora, figures not representative.**")
        out.append("")
    out.append(f"Measured {m.get('date', '?')} on {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), "
               f"{m.get('ram', '?')} RAM, Linux {m.get('kernel', '?')}, {m.get('os', '?')}, "
               f"work directory on {m.get('work_fs', '?')}; restores (and the tar/cp references) "
               f"written to {'a tmpfs' if m.get('restore_fs') == 'tmpfs' else 'the work disk'}.")
    out.append("")
    vers = m.get("versions", {})
    out.append("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in sorted(vers.items())) + ".")
    out.append("")

    for corpus in ("tree", "image"):
        c = results.get("corpora", {}).get(corpus)
        if not c:
            continue
        d = c["description"]
        tools = [t for t in TOOLS if t in c["tools"]]
        out.append(f"### {d.get('title', corpus)}")
        out.append("")
        out.append(d.get("summary", ""))
        out.append("")
        dates = sorted({c["tools"][t]["measured_at"] for t in tools} | {c["measured_at"]})
        if len(dates) > 1:
            out.append("Figures combine runs made at: " + ", ".join(
                f"{t} {c['tools'][t]['measured_at']}" for t in tools) + ".")
            out.append("")
        missing = [t for t in TOOLS if t not in tools]
        if missing:
            out.append("Not measured yet: " + ", ".join(missing) + ".")
            out.append("")
        head = "| operation |" + "".join(f" {t} wall s | {t} CPU s | {t} RSS MiB |" for t in tools)
        out.append(head)
        out.append("|---|" + "---:|---:|---:|" * len(tools))
        for op, label in OPS:
            cells = []
            for t in tools:
                r = c["tools"][t]["ops"].get(op)
                if r is None:
                    cells += ["—"] * 3
                elif not r["ok"]:
                    cells += [f"failed (rc {r['rc']})", "—", "—"]
                else:
                    cells += [fmt_s(r["wall_s"]), fmt_s(r["cpu_s"]), fmt_mib(r["peak_rss_mib"])]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")

        # Reference points.
        if c["reference"]:
            out.append("| reference point | wall s | CPU s | RSS MiB |")
            out.append("|---|---:|---:|---:|")
            for op, r in c["reference"].items():
                out.append(f"| {REFERENCE_LABELS.get(op, op)} | {fmt_s(r['wall_s'])} | "
                           f"{fmt_s(r['cpu_s'])} | {fmt_mib(r['peak_rss_mib'])} |")
            out.append("")

        # Repository sizes and checks.
        src = d.get("bytes")
        out.append("| tool | repository size | repository / corpus | restore identical to source |")
        out.append("|---|---:|---:|---|")
        for t in tools:
            tr = c["tools"][t]
            rb = tr.get("repo_bytes")
            rok = tr.get("restore_ok")
            rok_s = "—" if rok is None else ("yes" if rok else "**no**")
            out.append(f"| {t} | {fmt_bytes(rb)} | {ratio(rb, src)} | {rok_s} |")
        out.append("")

        if "cairn" in tools and len(tools) > 1:
            others = [t for t in tools if t != "cairn"]
            out.append("| ratio (wall time; repository size) | " + " | ".join(f"cairn / {t}" for t in others) + " |")
            out.append("|---|" + "---:|" * len(others))
            for op, label in OPS:
                row = []
                for t in others:
                    a_ = c["tools"]["cairn"]["ops"].get(op)
                    b_ = c["tools"][t]["ops"].get(op)
                    ok = a_ and b_ and a_["ok"] and b_["ok"]
                    row.append(ratio(a_["wall_s"], b_["wall_s"]) if ok else "—")
                out.append(f"| {label} | " + " | ".join(row) + " |")
            row = [ratio(c["tools"]["cairn"].get("repo_bytes"), c["tools"][t].get("repo_bytes")) for t in others]
            out.append("| repository size | " + " | ".join(row) + " |")
            out.append("")
    return "\n".join(out) + "\n"


def replace_between_markers(path, body):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    with open(path) as f:
        text = f.read()
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < 0 or j < i:
        sys.exit(f"{path}: markers {begin} / {end} not found")
    text = text[: i + len(begin)] + "\n" + body + text[j:]
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("randfile"); s.add_argument("path"); s.add_argument("mib", type=int); s.add_argument("seed", type=int)
    s.set_defaults(fn=cmd_randfile)
    s = sub.add_parser("modify-tree"); s.add_argument("dir"); s.add_argument("undo"); s.set_defaults(fn=cmd_modify_tree)
    s = sub.add_parser("revert-tree"); s.add_argument("undo"); s.set_defaults(fn=cmd_revert_tree)
    s = sub.add_parser("image-blocks"); s.add_argument("image"); s.set_defaults(fn=cmd_image_blocks)
    s = sub.add_parser("patch-block"); s.add_argument("out"); s.add_argument("block", type=int); s.set_defaults(fn=cmd_patch_block)
    s = sub.add_parser("collect")
    s.add_argument("--measurements", required=True, help="this run's JSON lines")
    s.add_argument("--results", required=True, help="results.json to merge into")
    s.add_argument("--markdown", required=True, help="where to write the rendered report")
    s.add_argument("--doc", help="markdown file whose marked section is replaced")
    s.add_argument("--corpora", required=True)
    s.add_argument("--tools", required=True)
    s.add_argument("--work", required=True)
    s.add_argument("--cairn")
    s.add_argument("--quick", action="store_true")
    s.add_argument("--fresh", action="store_true")
    s.set_defaults(fn=cmd_collect)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
