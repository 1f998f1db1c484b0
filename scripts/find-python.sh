#!/usr/bin/env bash
# Print the path of the first Python >= 3.12 that actually runs: python3.13,
# python3.12, then pyenv's installs (whose shims refuse when pyenv's default is
# older). Exit 1 with a message when there is none.
set -u
works() { "$@" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && works "$candidate"; then
        "$candidate" -c 'import sys; print(sys.executable)'
        exit 0
    fi
done
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for candidate in "$root"/versions/3.1[2-9]*/bin/python3 "$root"/versions/3.[2-9][0-9]*/bin/python3; do
        if [ -x "$candidate" ] && works "$candidate"; then
            echo "$candidate"
            exit 0
        fi
    done
fi
echo "vapsr-video needs Python >= 3.12 (VapourSynth's wheels need it) and none was found:" >&2
echo "install python3.12 or newer (e.g. 'pyenv install 3.12') and run this again." >&2
exit 1
