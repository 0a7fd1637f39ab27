#!/usr/bin/python3
"""Generates man/mqtt2kafka.yaml.5 from its template and the settings table
the daemon prints (`mqtt2kafka --settings-markdown`, the same table as
docs/configuration.md's), so the man page cannot drift from the binary.

    scripts/gen-yaml-man.py BUILD/mqtt2kafka            # rewrite the man page
    scripts/gen-yaml-man.py --check BUILD/mqtt2kafka    # exit 1 when it differs
"""
import difflib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "man", "mqtt2kafka.yaml.5.in")
OUTPUT = os.path.join(ROOT, "man", "mqtt2kafka.yaml.5")


def roff_text(md):
    """One Markdown table cell as roff running text: `code` and **bold** in
    bold, [text](link) as its text, backslashes and leading dots escaped."""
    md = md.replace("\\|", "|")
    out = []
    # Split on code spans first: nothing inside them is Markdown.
    for i, part in enumerate(re.split(r"`([^`]*)`", md)):
        part = part.replace("\\", "\\e")
        if i % 2:
            out.append(r"\fB" + part.replace("-", r"\-") + r"\fR")
            continue
        part = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", part)
        part = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", part)
        out.append(part)
    text = "".join(out)
    return re.sub(r"^([.'])", r"\\&\1", text)


def settings_roff(markdown):
    rows = [l for l in markdown.splitlines() if l.startswith("| `")]
    if not rows:
        raise SystemExit("gen-yaml-man: no settings in the table")
    out = []
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        if len(cells) != 5:
            raise SystemExit(f"gen-yaml-man: a row without 5 cells: {row}")
        name, default, allowed, sighup, meaning = cells
        out += [".TP", r".B " + name.strip("`"),
                roff_text(meaning.rstrip(".") + "."),
                ".br",
                r"Default: " + roff_text(default) + r"; allowed: " + roff_text(allowed)
                + r"; on SIGHUP: \fB" + sighup + r"\fR."]
    return "\n".join(out)


def generate(binary):
    table = subprocess.run([binary, "--settings-markdown"], check=True, capture_output=True,
                           text=True).stdout
    version = subprocess.run([binary, "--version"], check=True, capture_output=True,
                             text=True).stdout.split()[-1]
    text = open(TEMPLATE).read()
    return text.replace("@SETTINGS@", settings_roff(table)).replace("@VERSION@", version)


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    text = generate(args[0])
    if check:
        have = open(OUTPUT).read() if os.path.exists(OUTPUT) else ""
        if have != text:
            sys.stderr.writelines(difflib.unified_diff(
                have.splitlines(True), text.splitlines(True), OUTPUT, "generated"))
            print(f"{OUTPUT} differs from what scripts/gen-yaml-man.py generates; run it",
                  file=sys.stderr)
            return 1
        return 0
    with open(OUTPUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
