#!/usr/bin/python3
"""Renders a bnlab HTML report in headless Chromium and checks that it drew.

Either builds the report from the template and a JSON file:

    render_report.py --template src/report/report_template.html \
                     --data tests/report/sample_report_data.json --out /tmp/report.html

or checks an existing report:

    render_report.py --html /tmp/report.html

Checks: the DOM Chromium dumps after running the page's scripts carries the
status the page sets when it has finished drawing, with zero errors; and a
1280x2400 screenshot is not blank (at least 2% of the pixels differ from the
most common colour and there are at least 50 distinct colours).

Exit status: 0 when every check passes, 1 otherwise. Standard library only,
for Debian's /usr/bin/python3.
"""

import argparse
import collections
import html as html_text
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

PLACEHOLDER = "/*BNLAB_DATA*/null"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_S = 60
WINDOW_SIZE = "1280,2400"
MIN_NON_BACKGROUND = 0.02
MIN_COLOURS = 50


class CheckFailed(Exception):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors exit 1 like every other failure."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(1, f"FAIL: {message}\n")


def embed_data(template_path, data_path, out_path):
    """Writes the report the way bnlab does: the JSON object in place of the placeholder."""
    template = Path(template_path).read_text(encoding="utf-8")
    found = template.count(PLACEHOLDER)
    if found != 1:
        raise CheckFailed(f"{template_path}: placeholder {PLACEHOLDER!r} occurs {found} times, expected once")
    try:
        data = json.loads(Path(data_path).read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckFailed(f"{data_path}: not valid JSON: {error}") from error
    # '<' escaped so that a string such as "</script>" cannot end the script
    # element; U+2028/9 escaped for older JavaScript parsers. NaN and Infinity
    # (which Python's json accepts) stay as the JavaScript literals.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(template.replace(PLACEHOLDER, text), encoding="utf-8")
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes) from {template_path} + {data_path}")


def run_chromium(html_path, extra_args):
    """Runs one headless Chromium with a fresh profile; returns its stdout."""
    profile = tempfile.mkdtemp(prefix="bnlab-chromium-")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000",
        *extra_args, Path(html_path).resolve().as_uri(),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s: {' '.join(command)}") from error
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace")[-3000:]
        raise CheckFailed(f"chromium exited with {result.returncode}: {' '.join(command)}\n{stderr}")
    return result.stdout.decode("utf-8", "replace")


def check_dom(dom):
    body = re.search(r"<body\b[^>]*>", dom)
    if not body:
        raise CheckFailed("the dumped DOM has no <body> element")
    status = re.search(r'\bdata-render-status="([^"]*)"', body.group(0))
    errors = re.search(r'\bdata-errors="([^"]*)"', body.group(0))
    if not status or not errors:
        raise CheckFailed("the page never set its render status on <body> (did its main script run to the end?)")
    box = re.search(r'<div id="render-status"[^>]*>([^<]*)</div>', dom)
    box_text = box.group(1).strip() if box else None
    print(f"DOM: <body data-render-status=\"{status.group(1)}\" data-errors=\"{errors.group(1)}\">, "
          f"#render-status text {box_text!r}")
    expected_text = "render-status: ok, errors: 0"
    if status.group(1) != "ok" or errors.group(1) != "0" or box_text != expected_text:
        details = re.search(r'<pre id="render-errors"[^>]*>(.*?)</pre>', dom, re.S)
        message = f"the page reports status {status.group(1)!r} with {errors.group(1)} error(s)"
        if details and details.group(1).strip():
            message += ":\n" + html_text.unescape(details.group(1).strip())
        raise CheckFailed(message)
    svgs = len(re.findall(r"<svg\b", dom))
    print(f"DOM: {svgs} SVG charts, {len(dom)} characters")


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(path):
    """Returns (width, height, channels, pixel bytes) of an 8-bit RGB or RGBA PNG."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CheckFailed(f"{path}: not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    if header is None:
        raise CheckFailed(f"{path}: no IHDR chunk")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in (2, 6) or interlace != 0:
        raise CheckFailed(f"{path}: unsupported PNG (bit depth {depth}, colour type {colour_type}, "
                          f"interlace {interlace}); expected 8-bit RGB or RGBA, not interlaced")
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise CheckFailed(f"{path}: image data is {len(raw)} bytes, expected {height * (stride + 1)}")

    pixels = bytearray(height * stride)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:  # Up
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                if i >= channels:
                    line[i] = (line[i] + paeth(line[i - channels], previous[i], previous[i - channels])) & 0xFF
                else:
                    line[i] = (line[i] + previous[i]) & 0xFF
        elif kind != 0:
            raise CheckFailed(f"{path}: row {y} has unknown filter type {kind}")
        pixels[y * stride:(y + 1) * stride] = line
        previous = line
    return width, height, channels, bytes(pixels)


def check_screenshot(path):
    width, height, channels, pixels = decode_png(path)
    colours = collections.Counter(pixels[i:i + channels] for i in range(0, len(pixels), channels))
    total = width * height
    background, background_count = colours.most_common(1)[0]
    other = 1 - background_count / total
    print(f"screenshot: {width}x{height}, {len(colours)} distinct colours, "
          f"{100 * other:.2f}% of pixels differ from the most common colour #{background.hex()}")
    if other < MIN_NON_BACKGROUND:
        raise CheckFailed(f"{path}: looks blank: only {100 * other:.2f}% of the pixels differ from the "
                          f"most common colour (need {100 * MIN_NON_BACKGROUND:.0f}%)")
    if len(colours) < MIN_COLOURS:
        raise CheckFailed(f"{path}: looks blank: {len(colours)} distinct colours (need {MIN_COLOURS})")


def main():
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", help="report template containing the data placeholder")
    parser.add_argument("--data", help="JSON report data to embed in the template")
    parser.add_argument("--out", help="where to write the built report HTML")
    parser.add_argument("--html", help="check this existing report instead of building one")
    parser.add_argument("--screenshot", help="where to write the PNG (default: next to the HTML, .png)")
    args = parser.parse_args()

    building = args.template or args.data or args.out
    if args.html and building:
        parser.error("give either --html or --template/--data/--out, not both")
    if not args.html and not (args.template and args.data and args.out):
        parser.error("give --template, --data and --out, or --html")

    try:
        if args.html:
            html = args.html
            if not Path(html).is_file():
                raise CheckFailed(f"{html}: no such file")
        else:
            html = args.out
            embed_data(args.template, args.data, html)
        screenshot = args.screenshot or str(Path(html).with_suffix(".png"))
        if os.path.exists(screenshot):
            os.remove(screenshot)

        check_dom(run_chromium(html, ["--dump-dom"]))
        run_chromium(html, [f"--screenshot={screenshot}", f"--window-size={WINDOW_SIZE}"])
        if not os.path.exists(screenshot):
            raise CheckFailed(f"chromium wrote no screenshot to {screenshot}")
        print(f"screenshot: {screenshot}")
        check_screenshot(screenshot)
    except CheckFailed as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    print(f"PASS: {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
