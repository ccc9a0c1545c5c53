"""Writes PyTorch reference data for bnlab's C++ tests.

Format (read by tests/support/reference_data.cpp): `<name>.json` holds the
metadata, with every tensor replaced by {"dtype", "shape", "offset"}, and
`<name>.bin` holds the tensors' raw little-endian values, contiguous, at those
byte offsets. Written atomically (temporary file + rename).
"""
import json
import os

import torch

_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64",
           torch.bool: "bool", torch.bfloat16: "bfloat16"}


class ReferenceWriter:
    def __init__(self):
        self._chunks = []
        self._offset = 0

    def tensor(self, t):
        """Stores a tensor's values and returns its JSON descriptor."""
        t = t.detach().cpu()
        # numpy has no bfloat16: store its raw 16-bit patterns
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        desc = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "offset": self._offset}
        self._chunks.append(raw)
        self._offset += len(raw)
        return desc

    def save(self, directory, name, meta):
        os.makedirs(directory, exist_ok=True)
        for suffix, payload, mode in ((".bin", b"".join(self._chunks), "wb"),
                                      (".json", json.dumps(meta, indent=1), "w")):
            path = os.path.join(directory, name + suffix)
            tmp = path + ".tmp"
            with open(tmp, mode) as f:
                f.write(payload)
            os.replace(tmp, path)


def with_layout(t, layout):
    """The same values as `t` in the memory layout named `layout`."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        fmt = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
        return t.contiguous(memory_format=fmt)
    if layout == "noncontiguous":
        # every other element of a buffer twice as long in the last dim
        shape = list(t.shape)
        shape[-1] *= 2
        big = torch.zeros(shape, dtype=t.dtype)
        view = big[..., ::2]
        view.copy_(t)
        return view
    if layout == "transposed":
        # column-major: the dims' strides in reverse order
        order = list(range(t.dim()))[::-1]
        return t.permute(order).contiguous().permute(order)
    raise ValueError(f"unknown layout {layout}")
