#!/bin/sh
# The settings table of docs/configuration.md is generated from the settings
# table in src/config/settings.c (`mqtt2kafka --settings-markdown`); this
# fails, with the difference, when one was changed without the other.
# Usage: check_settings_doc.sh MQTT2KAFKA DOC
set -eu
bin="${1:?usage: check_settings_doc.sh MQTT2KAFKA DOC}"
doc="${2:?usage: check_settings_doc.sh MQTT2KAFKA DOC}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The lines between the end of the "<!-- settings table" comment and
# "<!-- end of the settings table -->".
awk '/^<!-- end of the settings table -->/ { on = 0 }
     on == 2 { print }
     on == 1 && /-->/ { on = 2 }
     /^<!-- settings table/ { on = /-->/ ? 2 : 1 }' "$doc" >"$tmp/doc"
"$bin" --settings-markdown >"$tmp/table"
if ! [ -s "$tmp/doc" ]; then
    echo "$doc: no settings table between '<!-- settings table' and '<!-- end of the settings table -->'" >&2
    exit 1
fi
if ! diff -u "$tmp/doc" "$tmp/table" >"$tmp/diff"; then
    sed "s|$tmp/doc|$doc|; s|$tmp/table|mqtt2kafka --settings-markdown|" "$tmp/diff" >&2
    echo "$doc: the settings table differs from src/config/settings.c; regenerate it (docs/development.md)" >&2
    exit 1
fi
