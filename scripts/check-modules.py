#!/usr/bin/env python3
"""No module circles inside a crate.

For every crate under appliance/ (a directory with a Cargo.toml and a src/),
build the graph of its modules and print every circle in it: a set of
modules that depend on each other, directly or through others (a strongly
connected component of more than one module). Exits 1 when any crate has
one.

A module is a file's module path: `server::api` for src/server/api.rs,
`foo` for src/foo.rs or src/foo/mod.rs. The crate root (lib.rs, main.rs) is
the crate's facade and not a module of the graph: a reference to an item
defined or re-exported there (`crate::Engine`) is no edge. Module A depends
on module B when A's code names B, in a `use` declaration or in a path in
code: `crate::b::...`, `super::b` (from A's parent), `self::b`, or `b::...`
where b is a module A declares. A path is resolved to the longest prefix
that is a module. Declaring a child (`mod b;`) is not a dependency; a
module's own inline modules (`mod bindings { ... }`) are part of it.

Test code is left out: files named tests.rs or *_tests.rs, files declared
under `#[cfg(test)]`, and items under `#[cfg(test)]` (the `mod tests { }`
at the end of a file).

Usage: scripts/check-modules.py [--crate NAME]... [--skip NAME]...
"""

import argparse
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

IDENT = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*")


class Token:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind, text, line):
        self.kind = kind  # "id", "str", "punct"
        self.text = text
        self.line = line

    def __repr__(self):
        return f"{self.kind}:{self.text}@{self.line}"


def tokenize(src):
    """Identifiers, string literals and punctuation (`::` as one token);
    comments, numbers, characters and lifetimes dropped."""
    out = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
        elif (m := re.compile(r'b?r(#*)"').match(src, i)) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = '"' + m.group(1)
            j = src.find(end, m.end())
            j = n if j < 0 else j
            text = src[m.end() : j]
            out.append(Token("str", text, line))
            line += text.count("\n")
            i = j + len(end)
        elif c == '"' or (c == "b" and src.startswith('b"', i)):
            start = line
            i += 1 if c == '"' else 2
            buf = []
            while i < n and src[i] != '"':
                if src[i] == "\\":
                    buf.append(src[i : i + 2])
                    line += src[i + 1 : i + 2] == "\n"
                    i += 2
                else:
                    line += src[i] == "\n"
                    buf.append(src[i])
                    i += 1
            out.append(Token("str", "".join(buf), start))
            i += 1
        elif c == "'":
            # A character literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if src.startswith("\\", i + 1):
                j = src.find("'", i + 3)
                i = n if j < 0 else j + 1
            elif i + 2 < n and src[i + 2] == "'":
                i += 3
            else:
                i += 1
                m = IDENT.match(src, i)
                if m:
                    i = m.end()
        elif c.isdigit():
            m = re.compile(r"[0-9][0-9A-Za-z_]*(\.[0-9][0-9A-Za-z_]*)?").match(src, i)
            i = m.end()
        elif m := IDENT.match(src, i):
            text = m.group(0)
            if text.startswith("r#"):
                text = text[2:]
            out.append(Token("id", text, line))
            i = m.end()
        elif src.startswith("::", i):
            out.append(Token("punct", "::", line))
            i += 2
        else:
            out.append(Token("punct", c, line))
            i += 1
    return out


class Module:
    def __init__(self, path, file, test):
        self.path = path  # tuple of names; () is the crate root
        self.file = file
        self.test = test
        self.children = {}  # name -> Module


def child_file(parent_file, is_dir_owner, name, path_attr):
    base = os.path.dirname(parent_file)
    if path_attr is not None:
        return os.path.normpath(os.path.join(base, path_attr))
    if not is_dir_owner:
        base = os.path.join(base, os.path.splitext(os.path.basename(parent_file))[0])
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.isfile(cand):
            return cand
    return None


def skip_group(toks, i):
    """From an opening bracket at toks[i], the index after its match."""
    opening = toks[i].text
    closing = {"{": "}", "(": ")", "[": "]"}[opening]
    depth = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct":
            if t.text == opening:
                depth += 1
            elif t.text == closing:
                depth -= 1
                if depth == 0:
                    return i + 1
        i += 1
    return i


def skip_item(toks, i):
    """Skip one item starting at toks[i] (after its attributes): up to its
    `;` or the end of its first `{ }` block, whichever comes first."""
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct" and t.text == ";":
            return i + 1
        if t.kind == "punct" and t.text in "([":
            i = skip_group(toks, i)
            continue
        if t.kind == "punct" and t.text == "{":
            return skip_group(toks, i)
        i += 1
    return i


def is_cfg_test(attr):
    """Whether the attribute tokens (between `#[` and `]`) are cfg(test)."""
    names = [t.text for t in attr if t.kind == "id"]
    return bool(names) and names[0] == "cfg" and "test" in names and "not" not in names


def parse_use_tree(toks, i, prefix, out):
    """Parse a use tree at toks[i]; append the full paths (lists of segment
    tokens) to out; return the index after the tree."""
    path = list(prefix)
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct" and t.text == "::":
            i += 1
            continue
        if t.kind == "punct" and t.text == "*":
            out.append(path)
            return i + 1
        if t.kind == "punct" and t.text == "{":
            i += 1
            while i < len(toks) and not (toks[i].kind == "punct" and toks[i].text == "}"):
                if toks[i].kind == "punct" and toks[i].text == ",":
                    i += 1
                    continue
                i = parse_use_tree(toks, i, path, out)
            return i + 1
        if t.kind == "id":
            if t.text == "self" and path:
                out.append(path)
            else:
                path = path + [t]
            i += 1
            if i < len(toks) and toks[i].kind == "id" and toks[i].text == "as":
                i += 2
                out.append(path)
                return i
            if i < len(toks) and toks[i].kind == "punct" and toks[i].text == "::":
                continue
            if not (path and path[-1].text == "self"):
                out.append(path)
            return i
        # Anything else ends the tree.
        if path:
            out.append(path)
        return i
    return i


class Crate:
    def __init__(self, name, root_file):
        self.name = name
        self.root_file = root_file
        self.modules = {}  # path tuple -> Module
        self.refs = defaultdict(list)  # path tuple -> [(segments, line)]

    def load(self):
        root = Module((), self.root_file, False)
        self.modules[()] = root
        self._scan(root)

    def _scan(self, module):
        """Read a module's file: its child declarations and, unless it is a
        test module, the paths it names."""
        with open(module.file, encoding="utf-8") as f:
            toks = tokenize(f.read())
        is_dir_owner = module.path == () or os.path.basename(module.file) == "mod.rs"
        # Inline modules open around the current token: (name, depth).
        inline = []
        depth = 0
        pending_test = False
        path_attr = None
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "punct" and t.text == "#":
                j = i + 1
                if j < len(toks) and toks[j].text == "!":
                    j += 1
                if j < len(toks) and toks[j].text == "[":
                    end = skip_group(toks, j)
                    attr = toks[j + 1 : end - 1]
                    if is_cfg_test(attr):
                        pending_test = True
                    if attr and attr[0].text == "path" and any(a.kind == "str" for a in attr):
                        path_attr = next(a.text for a in attr if a.kind == "str")
                    i = end
                    continue
            if t.kind == "punct" and t.text == "{":
                depth += 1
                i += 1
                continue
            if t.kind == "punct" and t.text == "}":
                depth -= 1
                if inline and inline[-1][1] == depth:
                    inline.pop()
                i += 1
                continue
            # Visibility: `pub`, `pub(crate)`, `pub(in crate::x)`.
            if t.kind == "id" and t.text == "pub":
                i += 1
                if i < len(toks) and toks[i].text == "(":
                    i = skip_group(toks, i)
                continue
            if pending_test:
                pending_test = False
                if t.kind == "id" and t.text == "mod" and i + 2 < len(toks) and toks[i + 2].text == ";":
                    if not inline:
                        self._declare(module, toks[i + 1].text, is_dir_owner, path_attr, test=True)
                    path_attr = None
                    i += 3
                    continue
                path_attr = None
                i = skip_item(toks, i)
                continue
            if t.kind == "id" and t.text == "mod" and i + 2 < len(toks) and toks[i + 1].kind == "id":
                name, after = toks[i + 1].text, toks[i + 2].text
                if after == ";":
                    if not inline:
                        self._declare(module, name, is_dir_owner, path_attr, test=module.test)
                    path_attr = None
                    i += 3
                    continue
                if after == "{":
                    inline.append((name, depth))
                    depth += 1
                    path_attr = None
                    i += 3
                    continue
            path_attr = None
            here = module.path + tuple(name for name, _ in inline)
            if t.kind == "id" and t.text == "use" and (i == 0 or toks[i - 1].text != "::"):
                paths = []
                j = parse_use_tree(toks, i + 1, [], paths)
                for p in paths:
                    self._refer(module, here, [s.text for s in p], t.line, in_use=True)
                while j < len(toks) and toks[j].text != ";":
                    j += 1
                i = j + 1
                continue
            if t.kind == "id" and i + 1 < len(toks) and toks[i + 1].text == "::":
                prev = toks[i - 1].text if i else ""
                if prev not in ("::", ".") and not (prev == "in" and i >= 2 and toks[i - 2].text == "("):
                    segs = [t.text]
                    j = i + 1
                    while j + 1 < len(toks) and toks[j].text == "::" and toks[j + 1].kind == "id":
                        segs.append(toks[j + 1].text)
                        j += 2
                    self._refer(module, here, segs, t.line, in_use=False)
                    i = j
                    continue
            i += 1
        for child in list(module.children.values()):
            self._scan(child)

    def _declare(self, module, name, is_dir_owner, path_attr, test):
        file = child_file(module.file, is_dir_owner, name, path_attr)
        if file is None:
            return
        base = os.path.basename(file)
        test = test or module.test or base == "tests.rs" or base.endswith("_tests.rs")
        child = Module(module.path + (name,), file, test)
        module.children[name] = child
        self.modules[child.path] = child

    def _refer(self, module, here, segs, line, in_use):
        if module.test:
            return
        first = segs[0]
        if first == "crate":
            absolute = segs[1:]
        elif first in ("super", "self"):
            base = list(here)
            k = 0
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super":
                    if not base:
                        return
                    base.pop()
                k += 1
            absolute = base + segs[k:]
        elif len(here) == len(module.path) and first in module.children:
            absolute = list(module.path) + segs
        else:
            return
        self.refs[module.path].append((tuple(absolute), line, "::".join(segs)))

    def resolve(self, absolute):
        for k in range(len(absolute), -1, -1):
            if tuple(absolute[:k]) in self.modules:
                return tuple(absolute[:k])
        return ()

    def graph(self):
        """Nodes (non-test modules but the root) and edges, each edge with
        its first evidence (file, line, path)."""
        nodes = sorted(p for p, m in self.modules.items() if p and not m.test)
        edges = defaultdict(dict)
        for src, refs in self.refs.items():
            if not src or self.modules[src].test:
                continue
            for absolute, line, text in refs:
                dst = self.resolve(absolute)
                if not dst or dst == src or self.modules[dst].test:
                    continue
                if dst not in edges[src]:
                    edges[src][dst] = (self.modules[src].file, line, text)
        return nodes, edges


def strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, {})))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                out.append(sorted(component))
    return out


def name(path):
    return "::".join(path)


def crates(only, skip):
    base = os.path.join(ROOT, "appliance")
    found = []
    for entry in sorted(os.listdir(base)):
        d = os.path.join(base, entry)
        if not (os.path.isfile(os.path.join(d, "Cargo.toml")) and os.path.isdir(os.path.join(d, "src"))):
            continue
        if (only and entry not in only) or entry in skip:
            continue
        roots = [f for f in ("lib.rs", "main.rs") if os.path.isfile(os.path.join(d, "src", f))]
        for r in roots:
            label = entry if len(roots) == 1 else f"{entry} ({r})"
            found.append(Crate(label, os.path.join(d, "src", r)))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crate", action="append", default=[], metavar="NAME", help="check only this crate (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave this crate out (repeatable)")
    args = ap.parse_args()
    todo = crates(set(args.crate), set(args.skip))
    if args.crate and not todo:
        print(f"check-modules: no crate named {', '.join(args.crate)} under appliance/", file=sys.stderr)
        return 2
    circles_total = 0
    for crate in todo:
        crate.load()
        nodes, edges = crate.graph()
        circles = [c for c in strongly_connected(nodes, edges) if len(c) > 1]
        circles.sort()
        if not circles:
            print(f"{crate.name}: {len(nodes)} modules, no circle")
            continue
        circles_total += len(circles)
        noun = "circle" if len(circles) == 1 else "circles"
        print(f"{crate.name}: {len(nodes)} modules, {len(circles)} {noun}:")
        for c in circles:
            members = set(c)
            print(f"  circle: {', '.join(name(m) for m in c)}")
            for src in c:
                for dst, (file, line, text) in sorted(edges.get(src, {}).items()):
                    if dst in members:
                        rel = os.path.relpath(file, ROOT)
                        print(f"    {name(src)} -> {name(dst)}  ({rel}:{line}: {text})")
    return 1 if circles_total else 0


if __name__ == "__main__":
    sys.exit(main())
