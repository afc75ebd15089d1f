#!/usr/bin/env python3
"""Structural checks of the source tree, run by the test suite.

  layering  base/ includes nothing of careloop above it; storage/ includes
            nothing from services/ (DESIGN.md: storage depends on no service
            code); a folder's internal.h is included only from that folder.
  names     no event type, signed payload type or stream prefix is spelled as
            a string literal outside services/names/ (the registry) in
            services/, storage/ and tools/. Tests may spell them: they pin the
            wire names.

Usage: structure.py ROOT [layering|names]...   (default: both)
Prints one line per finding and exits 1 when there is any.
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
# What each folder may not include, and why.
FORBIDDEN = {
    "base": (("services/", "storage/", "tools/", "tests/"),
             "base/ depends on no other careloop folder"),
    "storage": (("services/", "tools/", "tests/"), "storage/ depends on no service code"),
}
REGISTRY = "services/names/names.h"
NOT_FORMAT_NAMES = {"hub", "hub-admin", "admin"}  # identities and roles


def sources(root, *folders):
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix in (".cc", ".h") and p.is_file():
                yield p


def layering(root):
    for folder, (banned, why) in FORBIDDEN.items():
        for path in sources(root, folder):
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if m and m.group(1).startswith(banned):
                    yield f"layering: {path.relative_to(root)}:{n}: includes {m.group(1)} ({why})"


def private_headers(root):
    """A service's internal.h is for its own files: nothing outside its
    folder includes it."""
    for path in sources(root, "base", "storage", "services", "tools", "tests"):
        rel = path.relative_to(root)
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or not m.group(1).endswith("/internal.h"):
                continue
            owner = pathlib.PurePosixPath(m.group(1)).parent
            if pathlib.PurePosixPath(rel.as_posix()).parent != owner:
                yield (f"layering: {rel.as_posix()}:{n}: includes {m.group(1)} "
                       f"(private to {owner}/)")


def registry_names(root):
    text = (root / REGISTRY).read_text()
    values = re.findall(r'^inline constexpr char k\w+\[\] = "([^"]+)";', text, re.M)
    exact = {v for v in values if not v.endswith("/") and v not in NOT_FORMAT_NAMES}
    prefixes = {v for v in values if v.endswith("/")}
    return exact, prefixes


def strip_comment(line):
    # Prose is not code: drop a // comment that is outside a string literal.
    out, in_str, i = [], False, 0
    while i < len(line):
        c = line[i]
        if in_str and c == "\\":
            out.append(line[i:i + 2])
            i += 2
            continue
        if c == '"':
            in_str = not in_str
        elif not in_str and line.startswith("//", i):
            break
        out.append(c)
        i += 1
    return "".join(out)


def names(root):
    if not (root / REGISTRY).is_file():
        yield f"names: {REGISTRY} is missing"
        return
    exact, prefixes = registry_names(root)
    literal = re.compile(r'"((?:[^"\\]|\\.)*)"')
    for path in sources(root, "services", "storage", "tools"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("services/names/"):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for lit in literal.findall(strip_comment(line)):
                bad = lit in exact or any(lit.startswith(p) for p in prefixes)
                if bad:
                    yield (f'names: {rel}:{n}: "{lit}" is a registered name '
                           f"(use {REGISTRY})")


def all_layering(root):
    yield from layering(root)
    yield from private_headers(root)


CHECKS = {"layering": all_layering, "names": names}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1]).resolve()
    wanted = argv[2:] or list(CHECKS)
    findings = []
    for name in wanted:
        if name not in CHECKS:
            print(f"structure.py: unknown check {name}", file=sys.stderr)
            return 2
        findings.extend(CHECKS[name](root))
    for f in findings:
        print(f)
    if findings:
        print(f"structure: {len(findings)} finding(s)")
        return 1
    print(f"structure: {' '.join(wanted)} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
