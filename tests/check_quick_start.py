#!/usr/bin/env python3
"""The README's quick start has exactly two commands, and .ci/run runs the second."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
readme = (root / "README.md").read_text(encoding="utf-8")
section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
ci = [line for line in (root / ".ci/run").read_text(encoding="utf-8").splitlines()
      if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
errors = []
if len(commands) != 2:
    errors.append(f"the quick start has {len(commands)} commands, expected exactly 2: {commands}")
elif not commands[0].rstrip().endswith("bnlab-train study"):
    errors.append(f"the first command should end by running the main job, bnlab-train study: {commands[0]!r}")
elif ci != [commands[1]]:
    errors.append(f".ci/run runs {ci}, expected the README's test command {commands[1]!r}")
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("ok: two quick-start commands; .ci/run runs the second")
