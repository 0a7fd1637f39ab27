#!/bin/sh
# The layering rule of src/ (docs/architecture.md): which third-party headers
# and which of our folders' headers each folder may include. Run by the build
# (target m2k_layering) and by ctest; prints every violation as file:line.
# Usage: check_layering.sh SOURCE_DIR
set -eu
src="${1:?usage: check_layering.sh SOURCE_DIR}"

# folder | third-party headers it owns (prefixes) | our folders it may include
rules='
util||util
mqtt||util mqtt config map kafka downlink
map||util mqtt config map
downlink||util downlink
kafka|librdkafka/|util kafka
config|yaml.h|util config map kafka downlink
auth|openssl/crypto.h openssl/evp.h openssl/rand.h|util auth mqtt config
ops|cjson/ http_parser.h|util ops config net
net|uv.h openssl/ssl.h openssl/err.h openssl/x509v3.h openssl/x509.h openssl/sha.h wslay/ http_parser.h|util net auth config
spool||util spool
'
# http_parser.h is the one header two folders own: ops/ (the HTTP endpoint)
# and net/ (the WebSocket upgrade request, net/ws.c); ops/ may not include
# wslay and net/ may not include cJSON.
third_party='uv.h uv/ librdkafka/ yaml.h cjson/ http_parser.h openssl/ wslay/'
ours='util mqtt map downlink kafka config auth ops net spool'

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
echo "$rules" | while IFS='|' read -r folder owns may; do
    [ -n "$folder" ] || continue
    for f in "$src/src/$folder"/*.c "$src/src/$folder"/*.h "$src/include/$folder"/*.h; do
        [ -f "$f" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include' "$f" | while IFS= read -r line; do
            n=${line%%:*}
            inc=$(printf '%s\n' "$line" | sed -n 's/.*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p')
            [ -n "$inc" ] || continue
            for tp in $third_party; do
                case "$inc" in "$tp"*)
                    ok=0
                    for o in $owns; do case "$inc" in "$o"*) ok=1 ;; esac; done
                    if [ $ok = 0 ]; then
                        echo "${f#"$src"/}:$n: $folder/ may not include <$inc> (a third-party header another folder owns)"
                        echo x >>"$tmp"
                    fi ;;
                esac
            done
            case "$inc" in */*)
                top=${inc%%/*}
                for o in $ours; do
                    if [ "$top" = "$o" ]; then
                        ok=0
                        for m in $may; do [ "$m" = "$top" ] && ok=1; done
                        if [ $ok = 0 ]; then
                            echo "${f#"$src"/}:$n: $folder/ may not include \"$inc\" ($top/ is not below $folder/ in the pipeline)"
                            echo x >>"$tmp"
                        fi
                    fi
                done ;;
            esac
        done
    done
done
if [ -s "$tmp" ]; then
    echo "layering: $(wc -l <"$tmp") violation(s)" >&2
    exit 1
fi
