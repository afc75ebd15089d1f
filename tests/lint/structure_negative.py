#!/usr/bin/env python3
"""Negative control for tools/lint/structure.py: plants each kind of finding
in a copy of the registry and a few files, and asserts that every one is
reported (and that a clean copy passes)."""
import pathlib
import shutil
import subprocess
import sys
import tempfile

src = pathlib.Path(sys.argv[1]).resolve()
checker = src / "tools/lint/structure.py"


def check(root):
    p = subprocess.run([sys.executable, str(checker), str(root)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    (root / "services/names").mkdir(parents=True)
    shutil.copy(src / "services/names/names.h", root / "services/names/names.h")
    for d in ("base", "storage", "services/x"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "base/ok.h").write_text('#include "base/status.h"\n')
    (root / "services/x/ok.cc").write_text(
        '// "DisclosureRecorded" in a comment is prose.\n'
        'auto t = names::event::kDisclosureRecorded;  // "referral/" too\n')
    rc, out = check(root)
    if rc != 0:
        sys.exit(f"a clean tree was refused:\n{out}")
    planted = {
        "base/bad.h": '#include "storage/ledger.h"\n',
        "storage/bad.cc": '#include "services/common/grpc_edge.h"\n',
        "services/x/bad_type.cc": 'if (t == "DisclosureRecorded") {}\n',
        "services/x/bad_payload.cc": 'p[ "careloop.v1.GrantConsent" ] = 1;\n',
        "services/x/bad_stream.cc": 'auto s = absl::StrCat("referral/", id);\n',
        "services/x/bad_private.cc": '#include "services/consent/internal.h"\n',
    }
    for rel, text in planted.items():
        (root / rel).write_text(text)
    rc, out = check(root)
    missing = [rel for rel in planted if rel not in out]
    if rc != 1 or missing:
        sys.exit(f"structure.py missed {missing} (exit {rc}):\n{out}")
    print(out)
    print(f"structure negative control: all {len(planted)} planted findings reported")
