#!/usr/bin/env python3
"""Replaces the section NAME of bench/RESULTS.md (between `<!-- NAME:begin -->` and
`<!-- NAME:end -->`) with the text of FILE, or appends it when the section is new.

Usage: bench/results_section.py NAME FILE
"""
import pathlib
import re
import sys

name, source = sys.argv[1], sys.argv[2]
results = pathlib.Path("bench/RESULTS.md")
section = pathlib.Path(source).read_text()
text = results.read_text() if results.exists() else "# Benchmark results\n"
pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->\n?", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text)
else:
    text = text.rstrip() + "\n\n" + section
results.write_text(text)
