#!/usr/bin/env python3
"""Static checks the test suite runs, all with Debian's clang tools.

  thread-safety BUILD_DIR [FILE...]
      clang's thread-safety analysis (-Wthread-safety as errors) over every
      careloop source in BUILD_DIR/compile_commands.json (generated code
      left out), parsing only (-fsyntax-only): the ABSL_GUARDED_BY and
      ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations are checked, not just
      written. FILEs narrow it to those sources.
  format ROOT [FILE...]
      clang-format --dry-run -Werror over every .cc and .h under ROOT's
      source folders (or the FILEs): the tree is formatted as .clang-format
      says.
  tidy BUILD_DIR ROOT
      clang-tidy with the repository's .clang-tidy (a fixed, curated set of
      checks, warnings as errors) over the product's sources (base, storage,
      services, tools) changed since the newest commit a day older than HEAD
      (or since $CARELOOP_TIDY_BASE; CARELOOP_TIDY_BASE=<first commit> for
      all of them).

Exit 1 when a check finds anything; each finding names its file and line.
"""
import concurrent.futures
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

SOURCE_DIRS = ("base", "storage", "services", "tools", "tests")
# The negative controls: files that must fail a check, given to it by name.
NEGATIVE = "tests/lint/negative/"
# g++-only flags that clang rejects or that only matter for code generation.
DROP_PREFIXES = ("-fsanitize", "-fno-sanitize", "-o", "-MD", "-MT", "-MF", "-c", "-g", "-O")


def jobs():
    return max(1, os.cpu_count() or 1)


def ours(path, root):
    try:
        rel = pathlib.Path(path).resolve().relative_to(root)
    except ValueError:
        return False
    return bool(rel.parts) and rel.parts[0] in SOURCE_DIRS and not rel.as_posix().startswith(NEGATIVE)


def compile_entries(build_dir):
    db = json.loads((pathlib.Path(build_dir) / "compile_commands.json").read_text())
    for entry in db:
        args = entry.get("arguments") or shlex.split(entry["command"])
        yield entry["directory"], entry["file"], args


def clang_args(args):
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MT", "-MF", "-c"):
            skip = a != "-c"
            continue
        if a.startswith(DROP_PREFIXES) and not a.startswith(("-I", "-D")):
            continue
        out.append(a)
    return out


LOCKS = re.compile(r"Mutex|ABSL_(GUARDED|PT_GUARDED|EXCLUSIVE|SHARED|LOCKS|NO_THREAD|ACQUIRE|RELEASE|ASSERT)")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def mentions_locks(path, root, seen=None):
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return False
    seen.add(path)
    text = path.read_text(errors="replace")
    if LOCKS.search(text):
        return True
    return any(mentions_locks(root / inc, root, seen) for inc in INCLUDE.findall(text))


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def parallel(items, fn):
    """Runs fn (returning (exit code, output)) over items on every core;
    prints the output of each that failed and returns how many did."""
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(jobs()) as pool:
        for rc, out in pool.map(fn, items):
            if rc != 0:
                failed += 1
                print(out.rstrip())
    return failed


def thread_safety(argv):
    build_dir = pathlib.Path(argv[0]).resolve()
    only = {str(pathlib.Path(f).resolve()) for f in argv[1:]}
    root = pathlib.Path(__file__).resolve().parents[2]
    work = []
    for directory, file, args in compile_entries(build_dir):
        path = str(pathlib.Path(directory, file).resolve())
        if only and path not in only:
            continue
        if not only and not ours(path, root):
            continue
        flags = [a for a in clang_args(args) if a != path and a != file]
        work.append((directory, path, flags))
    if not only:
        # A source can hold a finding only if it, or a careloop header it
        # includes (transitively), mentions a mutex or a lock annotation:
        # every annotated definition is analysed in at least one of those.
        work = [w for w in work if mentions_locks(pathlib.Path(w[1]), root)]
    if not work:
        print("thread-safety: no sources to analyse")
        return 2

    def one(item):
        directory, path, flags = item
        cmd = ["clang++", "-fsyntax-only", "-Wno-everything", "-Wthread-safety",
               "-Werror=thread-safety"] + [f for f in flags if f.startswith(("-I", "-D", "-std", "-isystem"))] + [path]
        return run(cmd, cwd=directory)

    failed = parallel(work, one)
    print(f"thread-safety: {len(work)} sources, {failed} with findings")
    return 1 if failed else 0


def tracked_sources(root):
    rc, out = run(["git", "ls-files", "--", *SOURCE_DIRS], cwd=root)
    if rc == 0 and out.strip():
        files = out.split()
    else:
        files = [str(p.relative_to(root)) for d in SOURCE_DIRS for p in (root / d).rglob("*")]
    return [f for f in files
            if f.endswith((".cc", ".h")) and (root / f).is_file() and not f.startswith(NEGATIVE)]


def format_check(argv):
    root = pathlib.Path(argv[0]).resolve()
    files = argv[1:] or tracked_sources(root)
    rc, out = run(["clang-format", "--dry-run", "-Werror", "--style=file", *files], cwd=root)
    if rc != 0:
        print(out.rstrip())
        print(f"format: files differ from .clang-format (fix: clang-format -i FILE)")
        return 1
    print(f"format: {len(files)} files ok")
    return 0


def tidy_base(root):
    """Where "changed" starts: $CARELOOP_TIDY_BASE, else the newest commit
    made at least a day before HEAD (by commit time, so a given commit always
    checks the same files), else none (a young history: every file)."""
    base = os.environ.get("CARELOOP_TIDY_BASE")
    if base:
        return base
    rc, head_time = run(["git", "log", "-1", "--format=%ct", "HEAD"], cwd=root)
    if rc != 0:
        return None
    rc, out = run(["git", "rev-list", "-1", f"--before={int(head_time) - 86400}", "HEAD"], cwd=root)
    if rc != 0 or not out.strip():
        return None
    return out.strip()


def changed_sources(root, base):
    """The .cc files changed since `base`, and those whose own header did."""
    rc, out = run(["git", "diff", "--name-only", base, "--"], cwd=root)
    if rc != 0:
        return None
    changed = set(out.split())
    return {str((root / f).resolve()) for f in changed if f.endswith(".cc")} | {
        str((root / f[:-2]).resolve()) + ".cc" for f in changed if f.endswith(".h")}


def tidy(argv):
    build_dir = pathlib.Path(argv[0]).resolve()
    root = pathlib.Path(argv[1]).resolve()
    # The product's sources; tests are held to their own purpose (they set
    # the environment, read errno, build inputs in loops) and not to these.
    files = sorted(str(pathlib.Path(d, f).resolve()) for d, f, _ in compile_entries(build_dir)
                   if ours(pathlib.Path(d, f), root)
                   and pathlib.Path(d, f).resolve().relative_to(root).parts[0] != "tests")
    base = tidy_base(root)
    changed = changed_sources(root, base) if base else None
    if changed is not None:
        files = [f for f in files if f in changed]
    scope = f"changed since {base[:12]}" if changed is not None else "all"
    if not files:
        print(f"tidy: no product sources {scope}")
        return 0

    def one(path):
        return run(["clang-tidy", "--quiet", "-p", str(build_dir), path], cwd=root)

    failed = parallel(files, one)
    print(f"tidy: {len(files)} sources ({scope}), {failed} with findings")
    return 1 if failed else 0


def main(argv):
    commands = {"thread-safety": thread_safety, "format": format_check, "tidy": tidy}
    if len(argv) < 3 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
