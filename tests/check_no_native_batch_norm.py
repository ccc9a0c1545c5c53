#!/usr/bin/env python3
"""Fails if code (not comments) under the given folders calls PyTorch's own batch norm:
any at::/torch:: batch-norm function (forward, backward, stats, elemt, ...), the
torch::nn BatchNorm modules and functional, or the native/cudnn/miopen entry points.
bnlab's own kernels are unqualified or bnlab::kernels::-qualified and do not match."""
import pathlib
import re
import sys

FORBIDDEN = re.compile(
    r"\b(?:at|torch|F)(?:::native|::nn::functional(?:::detail)?)?::\w*batch_norm\w*"
    r"|\btorch::nn::BatchNorm\w*"
    r"|\b(?:native|cudnn|miopen|mkldnn)_batch_norm\w*"
    r"|\b_batch_norm_impl_index\w*")


def code_lines(text):
    """Yields (line number, code) with // comments and /* */ blocks removed."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for number, line in enumerate(text.splitlines(), 1):
        yield number, re.sub(r"//.*", "", line)


def main(folders):
    bad = []
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("*")):
            if path.suffix not in {".h", ".hpp", ".cpp", ".cc", ".cu"}:
                continue
            for number, code in code_lines(path.read_text(encoding="utf-8")):
                if FORBIDDEN.search(code):
                    bad.append(f"{path}:{number}: {code.strip()}")
    if bad:
        print("PyTorch's batch norm is used in bnlab's sources (bnlab writes its own):")
        print("\n".join(bad))
        return 1
    print(f"ok: no use of PyTorch's batch norm under {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
