#!/usr/bin/env python3
"""Find import circles between the Rust source files of this workspace.

Each file is a node; `use crate::a::b`, `use super::x` and paths written out in
code (`crate::a::f()`), resolved to the file that defines the module, make the
edges, within one crate (crates cannot form cycles: Cargo refuses them). A cycle of
two or more files is printed and the exit code is 1. So is an arrow the layering
forbids (LAYERS below: which code may not name which crate). Parent modules declaring children (`mod x;`) are not edges: a
module's file owning its children is layering, not a circle. Usage:

    python3 scripts/import-cycles.py [ROOT]
"""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
USE = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);", re.M)
# Paths written out in code (`crate::a::B::new()`), not only in `use`.
INLINE = re.compile(r"\b(?:crate|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+")


def module_path(src_dir, path):
    """The module path of a file: src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]."""
    rel = os.path.relpath(path, src_dir)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def crate_files(src_dir):
    files = {}
    for d, _, names in os.walk(src_dir):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(d, n)
                files[tuple(module_path(src_dir, p))] = p
    return files


def targets(use, here, files):
    """Files a `use` tree refers to (the longest module prefix that is a file)."""
    out = set()
    head = use.split("{", 1)[0].strip().rstrip(":")
    parts = [p for p in head.split("::") if p]
    if not parts:
        return out
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    elif parts[0] == "super":
        base = list(here)
        rest = parts
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    elif parts[0] == "self":
        base, rest = list(here), parts[1:]
    else:
        return out
    # Braces: crate::a::{b, c::d} -> each branch.
    branches = [rest]
    if "{" in use:
        inner = use.split("{", 1)[1].rsplit("}", 1)[0]
        branches = [rest + [x.strip() for x in b.split("::") if x.strip()] for b in inner.split(",")]
    for branch in branches:
        path = base + branch
        for n in range(len(path), -1, -1):
            key = tuple(path[:n])
            if key in files:
                out.add(files[key])
                break
    return out


# Arrows the layering forbids: (the code, by path prefix, the crates it may not name).
# The HTTP layer decides through the ledger, not the notifier; the block controller
# and the scheduler read through the stores' read model and decide through the
# ledger, so neither the notifier nor the HTTP crate is theirs to import.
LAYERS = [
    ("api/", ("portwatch_notify",)),
    ("ledger/", ("portwatch_notify", "portwatch_api")),
    ("notify/", ("portwatch_api",)),
    ("work/", ("portwatch_notify", "portwatch_api")),
]
CRATE_NAME = re.compile(r"\bportwatch_[a-z]+\b")


def layering(root):
    """Every forbidden arrow: (file, crate)."""
    found = []
    for prefix, banned in LAYERS:
        top = os.path.join(root, prefix)
        manifest = os.path.join(root, prefix.split("/")[0], "Cargo.toml")
        deps = open(manifest, encoding="utf-8").read() if os.path.exists(manifest) else ""
        if prefix.count("/") == 1:
            for crate in banned:
                if re.search(r"^" + crate.replace("_", "-") + r"\b", deps, re.M):
                    found.append((os.path.relpath(manifest, root), crate))
        for d, dirs, names in os.walk(top):
            dirs[:] = [x for x in dirs if x not in ("target",)]
            for n in names:
                if n.endswith(".rs"):
                    path = os.path.join(d, n)
                    named = set(CRATE_NAME.findall(open(path, encoding="utf-8").read()))
                    found += [(os.path.relpath(path, root), c) for c in banned if c in named]
    return found


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    bad = []
    crates = 0
    for d, dirs, names in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in ("target", ".git", "node_modules")]
        if "Cargo.toml" in names and os.path.isdir(os.path.join(d, "src")):
            crates += 1
            src = os.path.join(d, "src")
            files = crate_files(src)
            graph = {}
            for key, path in files.items():
                text = open(path, encoding="utf-8").read()
                text = text.split("#[cfg(test)]", 1)[0]  # tests may look anywhere
                edges = set()
                for m in USE.finditer(text):
                    edges |= targets(" ".join(m.group(1).split()), list(key), files)
                for m in INLINE.finditer(USE.sub("", text)):
                    edges |= targets(m.group(0), list(key), files)
                edges.discard(path)
                # A child using its ancestors' items is how Rust modules nest.
                graph[path] = {e for e in edges if not is_ancestor(e, path, src)}
            bad += cycles(graph)
    for comp in bad:
        print("import circle: " + " <-> ".join(os.path.relpath(p, ROOT) for p in comp))
    arrows = layering(ROOT)
    for path, crate in arrows:
        print(f"forbidden arrow: {path} names {crate}")
    print(f"{crates} crates checked, {len(bad)} import circle(s), {len(arrows)} forbidden arrow(s)")
    return 1 if bad or arrows else 0


def is_ancestor(candidate, path, src):
    """Whether `candidate` is the file of a module that (transitively) contains `path`."""
    c = module_path(src, candidate)
    p = module_path(src, path)
    return len(c) < len(p) and p[: len(c)] == c


if __name__ == "__main__":
    sys.exit(main())
